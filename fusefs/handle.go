package fusefs

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/store"
)

// fileHandle is an open store file.
type fileHandle struct {
	f    store.File
	fr   freshReader // f, when it reports what it decodes (archives); else nil
	n    *node
	fsys *FS
	sp   string
	fd   int // descriptor for passthrough, -1 when there is none
}

// freshReader is a store file that decodes in large units (an archive
// decodes a whole chunk, or the part of it up to a read's end) and hands
// over the decoded bytes it did not need for the read (compress's
// archiveFile): they go to the kernel's page cache, so that the next read
// in that range is a page cache hit instead of a request and a decode.
//
// ReadSpan may answer with a slice of its own decoded data instead of
// filling p (compress's archiveFile does when the read lies in one chunk):
// the reply is then written from that slice, which is never modified, and
// p (go-fuse's 1 MiB request buffer) is not even touched, which saves a
// copy per request and keeps go-fuse's pooled buffers out of memory.
type freshReader interface {
	ReadSpan(p []byte, off int64, fresh func(off int64, data []byte)) ([]byte, error)
}

// PassthroughFd implements fs.FilePassthroughFder. go-fuse registers the
// descriptor with the kernel (root only, Linux 6.9+); when that fails it
// turns passthrough off for the mount and Read below serves every read.
func (h *fileHandle) PassthroughFd() (int, bool) { return h.fd, h.fd >= 0 }

// Read implements fs.FileReader. Reads may run concurrently on one handle:
// store files are io.ReaderAt, which allows that.
func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.fsys.readStore(h.n, h.f, h.fr, dest, off, nil)
}

// tracedReader is a freshReader that says where a read's time went
// (compress's archiveFile), for --stats.
type tracedReader interface {
	ReadSpanTraced(p []byte, off int64, fresh func(off int64, data []byte), tr *compress.ReadTrace) ([]byte, error)
}

// readStore serves a READ of node n from its open store file sf (fr is
// sf when it is a freshReader, else nil), with a handle or without one
// (openless.go). rs is the request's statistics when --stats is on and
// the caller started them (a handle-less read that opened the file), else
// nil.
func (f *FS) readStore(n *node, sf store.File, fr freshReader, dest []byte, off int64, rs *readStart) (fuse.ReadResult, syscall.Errno) {
	f.reads.Add(1)
	if s := f.opts.Stats; s != nil {
		if rs == nil {
			rs = s.startRead()
		}
		defer s.endRead(rs, n.sp, off, len(dest))
	}
	if fr != nil {
		var fresh func(int64, []byte)
		if f.mounted.Load() {
			fresh = func(doff int64, data []byte) {
				if rs != nil {
					t := time.Now()
					defer func() { rs.feed += time.Since(t) }()
				}
				f.feedCache(n, doff, data, off, off+int64(len(dest)))
			}
		}
		var b []byte
		var err error
		if tf, ok := fr.(tracedReader); ok && rs != nil {
			b, err = tf.ReadSpanTraced(dest, off, fresh, &rs.tr)
		} else {
			b, err = fr.ReadSpan(dest, off, fresh)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, f.errno("reading", n.sp, err)
		}
		return fuse.ReadResultData(b), 0
	}
	c, err := sf.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, f.errno("reading", n.sp, err)
	}
	return fuse.ReadResultData(dest[:c]), 0
}

// Release implements fs.FileReleaser.
func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	if h.fsys.open.remove(h) {
		h.close()
	}
	return 0
}

func (h *fileHandle) close() {
	if err := h.f.Close(); err != nil {
		h.fsys.logf("closing %s: %v", h.sp, err)
	}
}

// openHandles are the file handles the kernel has not released. When a
// mount ends while files are being closed, the kernel can drop their
// RELEASE requests with the connection; Server.Wait then closes what is
// left, so no store file stays open in this process (an ntfs-3g volume
// under a finished mount could not be unmounted until a garbage
// collection ran the files' finalizers: seen as "target is busy" in a
// test). Whoever takes a handle out of the set closes it: once.
type openHandles struct {
	mu sync.Mutex
	m  map[*fileHandle]struct{}
}

func (o *openHandles) add(h *fileHandle) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[*fileHandle]struct{}{}
	}
	o.m[h] = struct{}{}
}

// remove takes h out of the set; false if it was not there (closed
// already).
func (o *openHandles) remove(h *fileHandle) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.m[h]
	delete(o.m, h)
	return ok
}

// closeAll closes every handle still in the set and returns how many.
func (o *openHandles) closeAll() int {
	o.mu.Lock()
	left := o.m
	o.m = nil
	o.mu.Unlock()
	for h := range left {
		h.close()
	}
	return len(left)
}

// textHandle serves a file of our own (README.txt).
type textHandle struct{ data string }

func (h *textHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return readText(h.data, dest, off), 0
}

func readText(data string, dest []byte, off int64) fuse.ReadResult {
	if off >= int64(len(data)) {
		return fuse.ReadResultData(nil)
	}
	return fuse.ReadResultData(dest[:copy(dest, data[off:])])
}

// dirHandle is an open directory: its listing, read once at open.
type dirHandle struct {
	n    *node
	kids []kid
	next int
}

// Readdirent implements fs.FileReaddirenter.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if d.next >= len(d.kids) {
		return nil, 0
	}
	k := &d.kids[d.next]
	d.next++
	return &fuse.DirEntry{Name: k.name, Mode: k.mode, Ino: k.ino, Off: uint64(d.next)}, 0
}

// Seekdir implements fs.FileSeekdirer; offsets are entry indexes + 1.
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off > uint64(len(d.kids)) {
		return syscall.EINVAL
	}
	d.next = int(off)
	return 0
}

// Lookup implements fs.FileLookuper for READDIRPLUS: the entry was just
// listed, so it is taken from the listing instead of a second Stat.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if i := d.next - 1; i >= 0 && i < len(d.kids) && d.kids[i].name == name {
		return d.n.adopt(ctx, d.kids[i], out), 0
	}
	for i := range d.kids {
		if d.kids[i].name == name {
			return d.n.adopt(ctx, d.kids[i], out), 0
		}
	}
	return d.n.Lookup(ctx, name, out)
}

// Releasedir implements fs.FileReleasedirer.
func (d *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}
