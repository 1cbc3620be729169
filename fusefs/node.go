package fusefs

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/usmtkit/usmtkit/store"
)

// node is every inode of the mount. Its fields never change after
// creation, so methods need no lock; the links of the inode list
// (capPrev, capNext, capLive) are the inodeCap's, under its lock.
type node struct {
	gofs.Inode
	fsys   *FS
	kind   nodeKind
	t      *tree        // nil for kindShareRoot, kindNote, kindText
	sp     string       // store path (kindEntry, kindControl)
	e      *store.Entry // kindEntry, kindControl, kindWinRoot (the store root)
	mp     string       // path below the tree's top as the kernel spelled it; member name for kindNote
	folded bool         // reached through a case-insensitive match
	note   string       // kindNote: why; kindText: the content

	capPrev, capNext *node // inodeCap's list, oldest first
	capLive          bool  // in inodeCap's list
}

// childKid makes the kid for a store entry below n.
func (n *node) childKid(name string, e *store.Entry, foldedHere bool) kid {
	k := n.t.entryKid(name, e, n.mp)
	if n.folded || foldedHere {
		k.folded = true
		k.ino = n.t.entryIno(e, k.mp, true)
	}
	return k
}

// list returns the children in listing order (sorted by name).
func (n *node) list() ([]kid, syscall.Errno) {
	switch n.kind {
	case kindShareRoot:
		return n.fsys.rootKids, 0
	case kindWinRoot:
		return n.t.winKids, 0
	case kindNote:
		return []kid{n.readmeKid()}, 0
	case kindEntry, kindControl:
		if n.e.Type != store.TypeDir {
			return nil, syscall.ENOTDIR
		}
		es, err := n.t.st.ReadDir(n.sp)
		if err != nil {
			if len(es) == 0 {
				return nil, n.fsys.errno("listing", n.sp, err)
			}
			// Some children could not be read: show the others.
			n.fsys.logf("listing %s: %v (the entries that could be read are shown)", n.sp, err)
		}
		kids := make([]kid, 0, len(es))
		for i := range es {
			if n.kind == kindControl && es[i].StorePath == n.t.fileDir {
				continue
			}
			e := es[i] // a copy, so a node keeps one entry alive and not the listing
			kids = append(kids, n.childKid(e.Name(), &e, false))
		}
		return kids, 0
	}
	return nil, syscall.ENOTDIR
}

func (n *node) readmeKid() kid {
	return kid{name: ReadmeName, kind: kindText, note: readme(n.mp, n.note), mode: syscall.S_IFREG,
		ino: inoOf(inoVirtual, n.mp, ReadmeName)}
}

func readme(member, why string) string {
	return fmt.Sprintf(`usmtkit cannot show the files of store %s.

Why: %s

Nothing was changed. The store's own files are still in the share copy;
run usmtkit info on the store's folder for details. A USMT.MIG file can
only be read on Windows (usmtutils /extract, or loadstate).
`, member, why)
}

// lookupKid finds one child by name.
func (n *node) lookupKid(name string) (kid, syscall.Errno) {
	fold := n.fsys.opts.CaseInsensitive
	switch n.kind {
	case kindShareRoot:
		return findKid(n.fsys.rootKids, name, false, n)
	case kindWinRoot:
		return findKid(n.t.winKids, name, fold, n)
	case kindNote:
		if name == ReadmeName {
			return n.readmeKid(), 0
		}
		return kid{}, syscall.ENOENT
	case kindEntry, kindControl:
		if n.e.Type != store.TypeDir {
			return kid{}, syscall.ENOTDIR
		}
		sp := store.JoinPath(n.sp, name)
		if n.kind == kindControl && sp == n.t.fileDir {
			return kid{}, syscall.ENOENT
		}
		e, err := n.t.st.Stat(sp)
		if err == nil {
			return n.childKid(name, e, false), 0
		}
		if !isNotExist(err) {
			return kid{}, n.fsys.errno("looking up", sp, err)
		}
		if !fold {
			return kid{}, syscall.ENOENT
		}
		kids, errno := n.list()
		if errno != 0 {
			return kid{}, errno
		}
		return findKid(kids, name, true, n)
	}
	return kid{}, syscall.ENOTDIR
}

// findKid picks name from kids: exactly, or with fold by a unique
// case-insensitive match (two candidates: no match, never a guess).
func findKid(kids []kid, name string, fold bool, parent *node) (kid, syscall.Errno) {
	for i := range kids {
		if kids[i].name == name {
			return kids[i], 0
		}
	}
	if !fold {
		return kid{}, syscall.ENOENT
	}
	found := -1
	for i := range kids {
		if strings.EqualFold(kids[i].name, name) {
			if found >= 0 {
				return kid{}, syscall.ENOENT // ambiguous
			}
			found = i
		}
	}
	if found < 0 {
		return kid{}, syscall.ENOENT
	}
	k := kids[found]
	if k.mode == syscall.S_IFDIR && k.t != nil {
		// A directory gets its own inode per spelling: the kernel allows one
		// dentry per directory inode (TECH-NOTES 2.7).
		k.folded = true
		k.mp = joinMP(parent.mp, name)
		k.ino = inoOf(inoFolded, k.t.member, k.mp)
	}
	return k, 0
}

// adopt turns a kid into a live Inode (or finds the live one with the same
// number: every name of a hard-link group) and fills out.Attr.
func (n *node) adopt(ctx context.Context, k kid, out *fuse.EntryOut) *gofs.Inode {
	child := &node{fsys: n.fsys, kind: k.kind, t: k.t, sp: k.sp, e: k.e, mp: k.mp, folded: k.folded, note: k.note}
	if k.kind == kindNote {
		child.mp = k.name
	}
	if child.e == nil && child.t != nil {
		child.e = child.t.rootE
	}
	in := n.NewInode(ctx, child, gofs.StableAttr{Mode: k.mode, Ino: k.ino})
	if in.Operations() == child {
		n.fsys.inodes.add(child) // a new inode, not a live one found again
	}
	in.Operations().(*node).fillAttr(&out.Attr)
	return in
}

// Lookup implements fs.NodeLookuper.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if s := n.fsys.opts.Stats; s != nil {
		defer s.record(opLookup, time.Now())
	}
	k, errno := n.lookupKid(name)
	if errno != 0 {
		return nil, errno
	}
	return n.adopt(ctx, k, out), 0
}

// OpendirHandle implements fs.NodeOpendirHandler: the listing is read
// once per open and kept by the handle, which also answers the lookups
// READDIRPLUS makes for each entry (no second Stat per entry).
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if s := n.fsys.opts.Stats; s != nil {
		defer s.record(opOpendir, time.Now())
	}
	kids, errno := n.list()
	if errno != 0 {
		return nil, 0, errno
	}
	return &dirHandle{n: n, kids: kids}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// Getattr implements fs.NodeGetattrer.
func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if s := n.fsys.opts.Stats; s != nil {
		defer s.record(opGetattr, time.Now())
	}
	n.fillAttr(&out.Attr)
	return 0
}

// blksize is the preferred I/O size reported to programs (cp, cat use it
// for their buffers).
const blksize = 128 << 10

func (n *node) fillAttr(a *fuse.Attr) {
	o := &n.fsys.opts
	a.Ino = n.StableAttr().Ino
	a.Uid, a.Gid = o.UID, o.GID
	a.Blksize = blksize
	a.Nlink = 1
	dirMode := syscall.S_IFDIR | (0o555 &^ o.Umask)
	fileMode := syscall.S_IFREG | (0o444 &^ o.Umask)
	var mt, at, ct int64
	switch n.kind {
	case kindShareRoot, kindNote, kindText:
		mt = n.fsys.born.UnixNano()
		at, ct = mt, mt
		a.Mode = dirMode
		if n.kind == kindText {
			a.Mode = fileMode
			a.Size = uint64(len(n.note))
		}
	default:
		e := n.e
		mt, at, ct = e.MtimeNs, e.AtimeNs, e.CtimeNs
		if at == 0 {
			at = mt
		}
		if ct == 0 {
			ct = mt
		}
		switch {
		case n.kind != kindEntry || e.Type == store.TypeDir:
			a.Mode = dirMode
		case e.Type == store.TypeFile:
			a.Mode = fileMode
			a.Size = uint64(max(e.Size, 0))
			a.Nlink = max(e.Nlink, 1)
		case e.Type == store.TypeSymlink:
			a.Mode = syscall.S_IFLNK | 0o777
			a.Size = uint64(len(e.LinkTarget))
			a.Nlink = max(e.Nlink, 1)
		default:
			a.Mode = syscall.S_IFREG // FIFO, socket, device: empty and unreadable
		}
	}
	a.Blocks = (a.Size + 511) / 512
	a.Mtime, a.Mtimensec = splitNs(mt)
	a.Atime, a.Atimensec = splitNs(at)
	a.Ctime, a.Ctimensec = splitNs(ct)
}

// splitNs splits ns since the epoch into seconds and nanoseconds, for
// times before 1970 too (the kernel reads the seconds as signed).
func splitNs(ns int64) (uint64, uint32) {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return uint64(sec), uint32(nsec)
}

// Open implements fs.NodeOpener.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&(syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	if s := n.fsys.opts.Stats; s != nil {
		defer s.record(opOpen, time.Now())
	}
	if n.fsys.noOpen.Load() && (n.kind == kindText || n.kind == kindEntry && n.e.Type != store.TypeDir) {
		// No handle: the kernel opens this and every later file of the
		// mount by itself, and Read serves them (openless.go).
		return nil, 0, syscall.ENOSYS
	}
	switch {
	case n.kind == kindText:
		return &textHandle{data: n.note}, openFlags, 0
	case n.kind != kindEntry || n.e.Type == store.TypeDir:
		return nil, 0, syscall.EISDIR
	case n.e.Type != store.TypeFile:
		return nil, 0, syscall.EACCES // never open FIFOs, sockets or devices
	}
	// A kept backing id goes back to rawFS.Open in the request's slot
	// (backing.go); the kernel then reads the file itself.
	var slot *openSlot
	passOpen := func(id int32) (gofs.FileHandle, uint32, syscall.Errno) {
		slot.id = id
		n.fsys.handles.Add(1)
		return &passHandle{n: n}, openFlags, 0
	}
	if b := n.fsys.backings; b != nil && n.t.passthrough {
		if slot = b.slotOf(ctx.Done()); slot != nil {
			if id := b.kept(n); id > 0 {
				return passOpen(id)
			}
			if !b.enabled() {
				slot = nil
			}
		}
	}
	sf, err := n.t.st.Open(n.e)
	if err != nil {
		return nil, 0, n.fsys.errno("opening", n.sp, err)
	}
	if slot != nil {
		if d, ok := sf.(interface{ Fd() uintptr }); ok {
			if id := n.fsys.backings.acquire(n, int(d.Fd())); id > 0 {
				// The kernel holds the file now (backing.go).
				if err := sf.Close(); err != nil {
					n.fsys.logf("closing %s: %v", n.sp, err)
				}
				return passOpen(id)
			}
		}
	}
	n.fsys.handles.Add(1)
	h := &fileHandle{f: sf, n: n, fsys: n.fsys, sp: n.sp, fd: -1}
	n.fsys.open.add(h)
	if n.t.passthrough {
		if d, ok := sf.(interface{ Fd() uintptr }); ok {
			h.fd = int(d.Fd())
		}
	}
	if fr, ok := sf.(freshReader); ok && h.fd < 0 {
		h.fr = fr
	}
	return h, openFlags, 0
}

// openFlags are the OPEN reply flags of every file: the data never
// changes, so the kernel keeps its page cache across opens
// (FOPEN_KEEP_CACHE), and nothing is ever written, so close(2) need not
// send a FLUSH request (FOPEN_NOFLUSH, Linux 5.17+; older kernels ignore
// it and send FLUSH, which is answered at once).
const openFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH

// Readlink implements fs.NodeReadlinker.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.kind != kindEntry || n.e.Type != store.TypeSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(n.e.LinkTarget), 0
}

// Statfs implements fs.NodeStatfser. When every store of the mount knows
// its size without a walk (archives: store.Totaler), df shows it as the
// space used, with nothing free, as squashfuse shows an image; a folder
// store's size would need a walk, so a mount holding one shows zero
// blocks.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize, out.Frsize, out.NameLen = 4096, 4096, 255
	if entries, bytes, ok := n.fsys.totals(); ok {
		out.Blocks = uint64((bytes + 4095) / 4096)
		out.Files = uint64(entries)
	}
	return 0
}

// Extended attributes (see the package comment).
const (
	XattrWinPath    = "user.usmtkit.winpath"
	XattrAttrs      = "user.usmtkit.attrs"
	XattrCrtime     = "user.usmtkit.crtime"
	XattrStorePath  = "user.usmtkit.storepath"
	XattrUnreadable = "user.usmtkit.unreadable"
)

// FormatCrtime is the user.usmtkit.crtime value of a creation time.
func FormatCrtime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}

type xattr struct{ name, value string }

func (n *node) xattrs() []xattr {
	var xs []xattr
	switch n.kind {
	case kindNote:
		return []xattr{{XattrUnreadable, n.note}}
	case kindEntry, kindControl, kindWinRoot:
		e := n.e
		if e.HasWinAttr {
			xs = append(xs, xattr{XattrAttrs, fmt.Sprintf("%08x", e.WinAttrs)})
		}
		if e.HasBtime {
			xs = append(xs, xattr{XattrCrtime, FormatCrtime(e.BtimeNs)})
		}
		if n.kind != kindWinRoot {
			xs = append(xs, xattr{XattrStorePath, e.StorePath})
			if e.WinPath != "" {
				xs = append(xs, xattr{XattrWinPath, e.WinPath})
			}
		}
	}
	return xs
}

// Getxattr implements fs.NodeGetxattrer.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	for _, x := range n.xattrs() {
		if x.name == attr {
			if len(dest) < len(x.value) {
				return uint32(len(x.value)), syscall.ERANGE
			}
			return uint32(copy(dest, x.value)), 0
		}
	}
	return 0, syscall.ENODATA
}

// Listxattr implements fs.NodeListxattrer.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for _, x := range n.xattrs() {
		b = append(b, x.name...)
		b = append(b, 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

// Every change is refused. The kernel already refuses most of them on a
// read-only mount; these make the adapter read-only on its own too.

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno { return syscall.EROFS }
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }
func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}
