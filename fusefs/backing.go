package fusefs

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Passthrough backings kept across opens.
//
// To let the kernel read a directory store's file itself (FUSE
// passthrough, Linux 6.9+), the file is registered with the kernel
// (FUSE_DEV_IOC_BACKING_OPEN gives a backing id) and every OPEN reply
// names that id. go-fuse registers a file at its first OPEN and
// unregisters it when the last handle of the inode is released, so a file
// opened again and again (a file manager, a script sampling files) paid
// open(2), fstat, the registration, close(2) and the unregistration each
// time. Here the id is kept per inode after the last close, up to
// maxBackings of them; an OPEN of a kept inode does no system call, and a
// RELEASE none either.
//
// What the kernel allows (fs/fuse/backing.c, passthrough.c and iomode.c,
// Linux 6.9-6.18): BACKING_OPEN takes its own reference to the open
// file, so the descriptor is closed at once and kept ids hold no
// descriptor of this process; every OPEN that names an id opens its own
// file on the backing path, so one id serves any number of opens, also
// at the same time; BACKING_CLOSE only drops the id (files open through it
// keep working). An inode can be bound to one backing at a time while it
// has open files: an OPEN naming a second id for the same inode fails
// with EIO (tested; "fuse: implement open in passthrough mode", the
// commit that added passthrough opens, asks servers to reuse one id per
// inode), so an id is dropped only when no handle of its inode is open:
// the eviction skips busy entries, which may hold the cache above
// maxBackings while their files are open (an OPEN answered but never
// released would keep its entry busy, as it kept go-fuse's own count).
// An inode the kernel forgets has its id dropped then (OnForget): a
// later LOOKUP of the name makes a new kernel inode, which gets an id of
// its own, so the old one is never named again. When the connection ends
// the kernel drops every id.
//
// The first OPEN checks the file against the entry listed at LOOKUP
// (store.Open: inode, size, mtime), as every OPEN did; later OPENs of the
// same inode read that same file, even if it was replaced in the store
// since: the old data or, at the first OPEN, an error, never another
// file's data.

// maxBackings is how many backing ids are kept per mount: about 0.5 KiB
// of kernel memory each (an open file and the backing), and 100 bytes
// here.
const maxBackings = 1024

// backings is the kept backing ids of one mount.
type backings struct {
	srv atomic.Pointer[fuse.Server] // set by Init; nil until then

	mu    sync.Mutex
	max   int
	byN   map[*node]*list.Element // of *backing
	lru   list.List               // front: most recently opened
	off   bool                    // registration failed once: go-fuse's path from now on
	slots sync.Map                // OPEN request (its cancel channel) -> *openSlot

	logf func(format string, a ...any)

	registered   atomic.Int64 // BACKING_OPEN calls made here (tests)
	unregistered atomic.Int64 // BACKING_CLOSE calls made here (tests)
}

type backing struct {
	n    *node
	id   int32
	open int // handles of n open with this id
}

// openSlot carries a backing id from node.Open back to rawFS.Open,
// which writes it into the OPEN reply (go-fuse's NodeOpener has no way to
// set it).
type openSlot struct{ id int32 }

// rawFS is go-fuse's request bridge with the OPEN reply extended by the
// kept backing id.
type rawFS struct {
	fuse.RawFileSystem
	b *backings
}

// Init implements fuse.RawFileSystem: the server is where backing ids are
// registered.
func (r *rawFS) Init(s *fuse.Server) {
	r.b.srv.Store(s)
	r.RawFileSystem.Init(s)
}

// Open implements fuse.RawFileSystem.
func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	slot := &openSlot{}
	r.b.slots.Store(cancel, slot)
	st := r.RawFileSystem.Open(cancel, in, out)
	r.b.slots.Delete(cancel)
	if st.Ok() && slot.id > 0 {
		out.BackingID = slot.id
		out.OpenFlags |= fuse.FOPEN_PASSTHROUGH
		// The page cache of a passthrough file is the backing file's.
		out.OpenFlags &^= fuse.FOPEN_KEEP_CACHE
	}
	return st
}

// slotOf returns the slot of the OPEN request whose handler got ctx, or
// nil (not through rawFS: tests calling Open directly).
func (b *backings) slotOf(cancel <-chan struct{}) *openSlot {
	if cancel == nil {
		return nil
	}
	v, ok := b.slots.Load(cancel)
	if !ok {
		return nil
	}
	return v.(*openSlot)
}

// kept returns n's kept backing id for one more open handle, or 0 when
// there is none (or registration is off).
func (b *backings) kept(n *node) int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byN[n]; ok {
		bk := el.Value.(*backing)
		bk.open++
		b.lru.MoveToFront(el)
		return bk.id
	}
	return 0
}

// enabled reports whether ids are registered here (false once the kernel
// refused one).
func (b *backings) enabled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.off && b.srv.Load() != nil
}

// acquire registers fd (a descriptor of n's store file, which the caller
// closes afterwards) and returns its backing id for one open handle, or
// the one another OPEN of n registered meanwhile. 0 when the kernel
// refused: the caller falls back to go-fuse's registration (which then
// turns passthrough off for the mount).
func (b *backings) acquire(n *node, fd int) int32 {
	srv := b.srv.Load()
	if srv == nil || fd < 0 {
		return 0
	}
	id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 || id <= 0 {
		b.mu.Lock()
		b.off = true
		b.mu.Unlock()
		return 0
	}
	b.registered.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byN[n]; ok {
		// Another OPEN of n registered it meanwhile: use that one.
		b.unregister(id)
		bk := el.Value.(*backing)
		bk.open++
		b.lru.MoveToFront(el)
		return bk.id
	}
	if b.byN == nil {
		b.byN = map[*node]*list.Element{}
	}
	b.byN[n] = b.lru.PushFront(&backing{n: n, id: id, open: 1})
	b.evict()
	return id
}

// release is the RELEASE of one handle opened with n's kept id.
func (b *backings) release(n *node) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byN[n]; ok {
		if bk := el.Value.(*backing); bk.open > 0 {
			bk.open--
		}
	}
	b.evict()
}

// forgot drops n's kept id when the kernel has forgotten n (its files
// are then all closed): a later LOOKUP of the name makes a new inode,
// which never names the old id, so keeping it would only hold the node
// (about 1 KiB) and the kernel's backing until the eviction reached it.
func (b *backings) forgot(n *node) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if el, ok := b.byN[n]; ok {
		if bk := el.Value.(*backing); bk.open == 0 {
			delete(b.byN, n)
			b.lru.Remove(el)
			b.unregister(bk.id)
		}
	}
}

// evict drops the least recently opened ids beyond max whose files are
// all closed. Called with mu held.
func (b *backings) evict() {
	for el := b.lru.Back(); el != nil && len(b.byN) > b.max; {
		prev := el.Prev()
		if bk := el.Value.(*backing); bk.open == 0 {
			delete(b.byN, bk.n)
			b.lru.Remove(el)
			b.unregister(bk.id)
		}
		el = prev
	}
}

// unregister drops one id in the kernel. Failures are only logged: the
// kernel frees every id when the connection ends.
func (b *backings) unregister(id int32) {
	srv := b.srv.Load()
	if srv == nil {
		return
	}
	b.unregistered.Add(1)
	if errno := srv.UnregisterBackingFd(id); errno != 0 && errno != syscall.EBADF && errno != syscall.ENODEV {
		// EBADF/ENODEV: the connection is ending, which drops every id.
		b.logf("dropping passthrough backing %d: %v", id, errno)
	}
}

// passHandle is an open file of a directory store whose reads the
// kernel does itself through a kept backing id. It holds no descriptor;
// should a READ arrive anyway, node.Read serves it without a handle
// (openless.go).
type passHandle struct {
	n *node
}

// Release implements fs.FileReleaser.
func (h *passHandle) Release(ctx context.Context) syscall.Errno {
	h.n.fsys.backings.release(h.n)
	return 0
}
