package fusefs

import (
	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// Every go-fuse interface this package implements, checked at compile
// time (gocryptfs node_api_check.go). Add a line when a method is added.

// Nodes.
var (
	_ gofs.InodeEmbedder      = (*node)(nil)
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.NodeReader         = (*node)(nil) // reads without a handle (openless.go)
	_ gofs.NodeFlusher        = (*node)(nil)
	_ gofs.NodeOnForgetter    = (*node)(nil)

	// Writes, all answered with EROFS.
	_ gofs.NodeSetattrer     = (*node)(nil)
	_ gofs.NodeSetxattrer    = (*node)(nil)
	_ gofs.NodeRemovexattrer = (*node)(nil)
	_ gofs.NodeMkdirer       = (*node)(nil)
	_ gofs.NodeMknoder       = (*node)(nil)
	_ gofs.NodeLinker        = (*node)(nil)
	_ gofs.NodeSymlinker     = (*node)(nil)
	_ gofs.NodeCreater       = (*node)(nil)
	_ gofs.NodeUnlinker      = (*node)(nil)
	_ gofs.NodeRmdirer       = (*node)(nil)
	_ gofs.NodeRenamer       = (*node)(nil)
)

// File handles.
var (
	_ gofs.FileReader          = (*fileHandle)(nil)
	_ gofs.FileReleaser        = (*fileHandle)(nil)
	_ gofs.FilePassthroughFder = (*fileHandle)(nil)
	_ gofs.FileReader          = (*textHandle)(nil)
)

// Directory handles.
var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
	_ gofs.FileLookuper     = (*dirHandle)(nil)
	_ gofs.FileReleasedirer = (*dirHandle)(nil)
)

// Not implemented (TODO when needed):
//   - NodeStatxer: would expose the Windows creation time as statx btime
//     (today it is the user.usmtkit.crtime xattr).
//   - NodeLseeker: SEEK_DATA/SEEK_HOLE; store files have no holes.
//   - NodeAccesser: default_permissions makes the kernel check modes.
//   - NodeLookupNoder / NodeLookupParenter: only for NFS export.
//   - NodeTmpfiler: O_TMPFILE is refused by the read-only mount already.
