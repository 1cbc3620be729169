package fusefs

import (
	"container/list"
	"context"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/usmtkit/usmtkit/store"
)

// Opening files without OPEN requests (archive mounts).
//
// Reading a small file through FUSE costs a LOOKUP, an OPEN, the READs, a
// FLUSH and a RELEASE, each a round trip between the kernel and this
// process; for the small files that make up most of a profile the round
// trips, not the decoding, are most of the time. The kernel can skip two
// of them (three without FOPEN_NOFLUSH): when a file system answers OPEN
// with ENOSYS and the kernel offered FUSE_NO_OPEN_SUPPORT (Linux 4.20+,
// go-fuse passes the flag on), the kernel takes the open as successful
// with FOPEN_KEEP_CACHE, never sends OPEN for a regular file of that
// connection again, and sends no RELEASE for files opened that way; their
// READs carry file handle 0, which go-fuse hands to the node's Read
// (fs.NodeReader) with a nil FileHandle. FLUSH is turned off the same way:
// its first ENOSYS sets the kernel's no_flush for the connection (the
// handle-less open does not carry FOPEN_NOFLUSH).
//
// The switch is per connection: the first ENOSYS turns OPEN off for every
// regular file of the mount. So it is used only when no file needs OPEN:
// every store of the mount is an archive (a directory store's files need
// their descriptor registered at OPEN for passthrough), and only when the
// kernel offered the capability (FS.noOpen, set by Mount).
//
// Without a handle the node serves its reads itself: it opens the store
// file on its first read and keeps it in a bounded LRU (openFiles), so a
// file read in many requests opens once and keeps the archive reader's
// state (sequential walk detection, decodes ahead). Opening an archive
// file is cheap (a TOC lookup of the path and one small slice), so a file
// pushed out of the LRU costs little when it is read again.
//
// What users see is unchanged: open(2) for writing (O_WRONLY, O_RDWR,
// O_TRUNC) is refused by the kernel with EROFS before any request, since
// the mount is read-only (MS_RDONLY); data stays in the page cache across
// opens as before. Differences: an error opening the store file is
// reported by the first read instead of by open(2), an entry that is not a
// regular file in the store (FIFO, socket, device: shown as an empty file)
// opens and reads as empty instead of failing with EACCES, and a
// read-only open with O_APPEND succeeds (nothing can be written anyway).

// maxOpenFiles bounds the store files kept open for handle-less reads:
// an archive file costs about 100 bytes plus 8 per chunk, and the kernel
// may keep millions of inodes.
const maxOpenFiles = 1024

// openFiles is an LRU of the store files opened for handle-less reads,
// keyed by node (all names of a hard-link group are one node).
type openFiles struct {
	mu    sync.Mutex
	max   int
	order list.List // of *openFile, most recently used first
	byN   map[*node]*list.Element
}

type openFile struct {
	n  *node
	f  store.File
	fr freshReader // f when it reports what it decodes, else nil
}

// get returns n's store file, opening it on first use and closing the
// least recently used file when the LRU is full. A file pushed out while
// a read still uses it keeps working (archive files allow reads after
// Close; Close only stops decodes ahead).
func (o *openFiles) get(n *node) (*openFile, error) {
	o.mu.Lock()
	if el, ok := o.byN[n]; ok {
		o.order.MoveToFront(el)
		of := el.Value.(*openFile)
		o.mu.Unlock()
		return of, nil
	}
	o.mu.Unlock()
	// Open outside the lock: two first reads of one file may both open
	// it; the loser's file is closed below.
	sf, err := n.t.st.Open(n.e)
	if err != nil {
		return nil, err
	}
	of := &openFile{n: n, f: sf}
	of.fr, _ = sf.(freshReader)
	var evicted []*openFile
	o.mu.Lock()
	if el, ok := o.byN[n]; ok {
		o.order.MoveToFront(el)
		won := el.Value.(*openFile)
		o.mu.Unlock()
		n.fsys.closeStoreFile(n.sp, sf)
		return won, nil
	}
	if o.byN == nil {
		o.byN = map[*node]*list.Element{}
	}
	o.byN[n] = o.order.PushFront(of)
	for o.order.Len() > max(o.max, 1) {
		old := o.order.Remove(o.order.Back()).(*openFile)
		delete(o.byN, old.n)
		evicted = append(evicted, old)
	}
	o.mu.Unlock()
	for _, old := range evicted {
		n.fsys.closeStoreFile(old.n.sp, old.f)
	}
	return of, nil
}

// drop closes n's file, if one is kept.
func (o *openFiles) drop(n *node) {
	o.mu.Lock()
	el, ok := o.byN[n]
	if ok {
		o.order.Remove(el)
		delete(o.byN, n)
	}
	o.mu.Unlock()
	if ok {
		n.fsys.closeStoreFile(n.sp, el.Value.(*openFile).f)
	}
}

// len is the number of kept files.
func (o *openFiles) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.order.Len()
}

func (f *FS) closeStoreFile(sp string, sf store.File) {
	if err := sf.Close(); err != nil {
		f.logf("closing %s: %v", sp, err)
	}
}

// KeptFiles is the number of store files kept open for reads that come
// without an OPEN (at most maxOpenFiles).
func (f *FS) KeptFiles() int { return f.kept.len() }

// NoOpen reports whether the mount asked the kernel to stop sending OPEN
// for files (archive mounts on kernels with FUSE_NO_OPEN_SUPPORT).
func (s *Server) NoOpen() bool { return s.fsys.noOpen.Load() }

// archivesOnly reports whether every store of f is an archive, whose
// files are read through this process and need no OPEN (see above).
func (f *FS) archivesOnly() bool {
	for _, t := range f.trees {
		if t.passthrough || t.st.Info().Kind != store.KindArchive {
			return false
		}
	}
	return true
}

// Read implements fs.NodeReader. go-fuse calls it for every READ: with the
// handle Open returned, or with none when the kernel opened the file
// without an OPEN request (see above).
func (n *node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if r, ok := fh.(gofs.FileReader); ok {
		return r.Read(ctx, dest, off)
	}
	switch {
	case n.kind == kindText:
		return readText(n.note, dest, off), 0
	case n.kind != kindEntry || n.e.Type == store.TypeDir:
		return nil, syscall.EISDIR
	case n.e.Type != store.TypeFile:
		// FIFO, socket, device: shown as an empty file and never opened.
		return fuse.ReadResultData(nil), 0
	}
	var rs *readStart
	if s := n.fsys.opts.Stats; s != nil {
		rs = s.startRead()
	}
	of, err := n.fsys.kept.get(n)
	if err != nil {
		n.fsys.reads.Add(1)
		return nil, n.fsys.errno("opening", n.sp, err)
	}
	if rs != nil {
		rs.open = time.Since(rs.t0)
	}
	return n.fsys.readStore(n, of.f, of.fr, dest, off, rs)
}

// Flush implements fs.NodeFlusher. Nothing is ever written, so there is
// nothing to flush: ENOSYS tells the kernel to stop sending FLUSH on this
// connection (it is sent only for files opened without an OPEN request,
// the others carry FOPEN_NOFLUSH).
func (n *node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	n.fsys.flushes.Add(1)
	return syscall.ENOSYS
}

// OnForget implements fs.NodeOnForgetter: a node the kernel has forgotten
// is never read again, so its kept file is closed now rather than when
// the LRU pushes it out.
func (n *node) OnForget() {
	n.fsys.inodes.forget(n)
	if b := n.fsys.backings; b != nil {
		b.forgot(n)
	}
	if n.kind == kindEntry && n.e != nil && n.e.Type == store.TypeFile {
		n.fsys.kept.drop(n)
	}
}
