package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// requireFUSE stops a test that needs a real mount when FUSE is missing
// (fixtures policy: a failure on CI, a skip with a hint elsewhere).
func requireFUSE(t testing.TB) { t.Helper(); fixtures.RequireFUSE(t) }

// testLogger fails nothing but shows the FS log in the test output.
func testLogger(t testing.TB) *log.Logger {
	return log.New(tWriter{t}, "", 0)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openStore(t testing.TB, paths ...string) store.Store {
	t.Helper()
	s, err := store.Open(paths...)
	if err != nil {
		t.Fatalf("opening %v: %v", paths, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func adapt(t testing.TB, s store.Store, o Options) *FS {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	f, err := New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// mountFS mounts f on a fresh directory and unmounts it at cleanup,
// lazily if it is busy, checking that nothing is left in mountinfo.
func mountFS(t testing.TB, f *FS) (string, *Server) {
	t.Helper()
	requireFUSE(t)
	mnt := t.TempDir()
	srv, err := f.Mount(mnt, MountConfig{
		FsName: "test",
		Direct: os.Geteuid() == 0,
		Debug:  testing.Verbose() && os.Getenv("USMTKIT_FUSE_DEBUG") != "",
		PanicHandler: func(v any) fuse.Status {
			t.Errorf("panic in a FUSE handler: %v", v)
			return fuse.EIO
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v (detaching lazily)", mnt, err)
			_ = LazyUnmount(mnt)
		}
		if _, ok := MountAt(mnt); ok {
			t.Errorf("%s still in /proc/self/mountinfo after unmount", mnt)
		}
	})
	return mnt, srv
}

// fileInfo is what the behaviour suite checks of a stat.
type fileInfo struct {
	Mode     uint32
	Size     int64
	Ino      uint64
	Nlink    uint32
	Uid, Gid uint32
	MtimeNs  int64
	Blocks   int64
}

func (i fileInfo) isDir() bool  { return i.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (i fileInfo) isReg() bool  { return i.Mode&syscall.S_IFMT == syscall.S_IFREG }
func (i fileInfo) isLink() bool { return i.Mode&syscall.S_IFMT == syscall.S_IFLNK }

// fsLike is the small file-system interface the behaviour suite runs
// against: the adapter called directly (nodeFS) and a real mount (osFS).
// Paths are slash-separated and relative to the root ("" is the root).
type fsLike interface {
	Stat(p string) (fileInfo, error)
	ReadDir(p string) ([]string, error)
	ReadFile(p string) ([]byte, error)
	ReadAt(p string, off int64, n int) ([]byte, error)
	Getxattr(p, name string) (string, error)
	Listxattr(p string) ([]string, error)
	Readlink(p string) (string, error)
	// Writes: each must fail with EROFS.
	Create(p string) error
	OpenWrite(p string) error
	Unlink(p string) error
	Mkdir(p string) error
	Chmod(p string) error
	Utimes(p string) error
}

// osFS is a real mount.
type osFS struct{ root string }

func (o osFS) path(p string) string {
	if p == "" {
		return o.root
	}
	return o.root + "/" + p
}

func (o osFS) Stat(p string) (fileInfo, error) {
	var st unix.Stat_t
	if err := unix.Lstat(o.path(p), &st); err != nil {
		return fileInfo{}, err
	}
	return fileInfo{Mode: st.Mode, Size: st.Size, Ino: st.Ino, Nlink: uint32(st.Nlink), Uid: st.Uid, Gid: st.Gid,
		MtimeNs: st.Mtim.Sec*1e9 + st.Mtim.Nsec, Blocks: st.Blocks}, nil
}

func (o osFS) ReadDir(p string) ([]string, error) {
	d, err := os.Open(o.path(p))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1) // in the order the file system gives
}

func (o osFS) ReadFile(p string) ([]byte, error) { return os.ReadFile(o.path(p)) }

func (o osFS) ReadAt(p string, off int64, n int) ([]byte, error) {
	f, err := os.Open(o.path(p))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := f.ReadAt(b, off)
	if err == io.EOF {
		err = nil
	}
	return b[:m], err
}

func (o osFS) Getxattr(p, name string) (string, error) {
	b := make([]byte, 4096)
	n, err := unix.Lgetxattr(o.path(p), name, b)
	if err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

func (o osFS) Listxattr(p string) ([]string, error) {
	n, err := unix.Llistxattr(o.path(p), nil)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	n, err = unix.Llistxattr(o.path(p), b)
	if err != nil {
		return nil, err
	}
	return splitNul(b[:n]), nil
}

func (o osFS) Readlink(p string) (string, error) { return os.Readlink(o.path(p)) }

func (o osFS) Create(p string) error {
	f, err := os.OpenFile(o.path(p), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
	if err == nil {
		f.Close()
	}
	return err
}

func (o osFS) OpenWrite(p string) error {
	f, err := os.OpenFile(o.path(p), os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	return err
}
func (o osFS) Unlink(p string) error { return os.Remove(o.path(p)) }
func (o osFS) Mkdir(p string) error  { return os.Mkdir(o.path(p), 0o755) }
func (o osFS) Chmod(p string) error  { return os.Chmod(o.path(p), 0o777) }
func (o osFS) Utimes(p string) error {
	return os.Chtimes(o.path(p), time.Unix(1, 0), time.Unix(1, 0))
}

func splitNul(b []byte) []string {
	var out []string
	for _, s := range strings.Split(string(b), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// nodeFS calls the adapter's node methods directly, with go-fuse's node
// bridge set up by NewNodeFS but no kernel and no mount.
type nodeFS struct {
	root *node
	ctx  context.Context
}

func newNodeFS(t testing.TB, f *FS) *nodeFS {
	t.Helper()
	root := f.Root()
	timeout := time.Hour
	gofs.NewNodeFS(root, &gofs.Options{EntryTimeout: &timeout, AttrTimeout: &timeout, RootStableAttr: &gofs.StableAttr{Ino: rootIno}})
	return &nodeFS{root: root.(*node), ctx: context.Background()}
}

func (nf *nodeFS) walk(p string) (*node, error) {
	cur := nf.root
	if p == "" {
		return cur, nil
	}
	for _, c := range strings.Split(p, "/") {
		var out fuse.EntryOut
		in, errno := cur.Lookup(nf.ctx, c, &out)
		if errno != 0 {
			return nil, errno
		}
		cur = in.Operations().(*node)
	}
	return cur, nil
}

func (nf *nodeFS) parent(p string) (*node, string, error) {
	dir, name := store.SplitPath(p)
	n, err := nf.walk(dir)
	return n, name, err
}

func (nf *nodeFS) Stat(p string) (fileInfo, error) {
	n, err := nf.walk(p)
	if err != nil {
		return fileInfo{}, err
	}
	var out fuse.AttrOut
	if errno := n.Getattr(nf.ctx, nil, &out); errno != 0 {
		return fileInfo{}, errno
	}
	a := out.Attr
	return fileInfo{Mode: a.Mode, Size: int64(a.Size), Ino: n.StableAttr().Ino, Nlink: a.Nlink, Uid: a.Uid, Gid: a.Gid,
		MtimeNs: int64(a.Mtime)*1e9 + int64(a.Mtimensec), Blocks: int64(a.Blocks)}, nil
}

func (nf *nodeFS) ReadDir(p string) ([]string, error) {
	n, err := nf.walk(p)
	if err != nil {
		return nil, err
	}
	fh, _, errno := n.OpendirHandle(nf.ctx, 0)
	if errno != 0 {
		return nil, errno
	}
	d := fh.(*dirHandle)
	var names []string
	for {
		de, errno := d.Readdirent(nf.ctx)
		if errno != 0 {
			return nil, errno
		}
		if de == nil {
			return names, nil
		}
		names = append(names, de.Name)
	}
}

func (nf *nodeFS) open(p string) (gofs.FileHandle, error) {
	n, err := nf.walk(p)
	if err != nil {
		return nil, err
	}
	fh, _, errno := n.Open(nf.ctx, syscall.O_RDONLY)
	if errno == syscall.ENOSYS && n.fsys.noOpen.Load() {
		// Opened without a handle, as the kernel does (openless.go).
		return nodeReadHandle{n}, nil
	}
	if errno != 0 {
		return nil, errno
	}
	return fh, nil
}

// nodeReadHandle reads a file opened without a handle: through the node,
// with a nil FileHandle, as go-fuse does for READs with file handle 0.
type nodeReadHandle struct{ n *node }

func (h nodeReadHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return h.n.Read(ctx, nil, dest, off)
}

func release(fh gofs.FileHandle) {
	if r, ok := fh.(gofs.FileReleaser); ok {
		r.Release(context.Background())
	}
}

func (nf *nodeFS) ReadAt(p string, off int64, n int) ([]byte, error) {
	fh, err := nf.open(p)
	if err != nil {
		return nil, err
	}
	defer release(fh)
	return readHandle(nf.ctx, fh, off, n)
}

// readHandle reads like the kernel does: requests of at most 128 KiB.
func readHandle(ctx context.Context, fh gofs.FileHandle, off int64, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 128<<10)
	for len(out) < n {
		want := min(len(buf), n-len(out))
		rr, errno := fh.(gofs.FileReader).Read(ctx, buf[:want], off)
		if errno != 0 {
			return nil, errno
		}
		b, st := rr.Bytes(buf[:want])
		if !st.Ok() {
			return nil, fmt.Errorf("read result: %v", st)
		}
		out = append(out, b...)
		off += int64(len(b))
		if len(b) < want {
			break
		}
	}
	return out, nil
}

func (nf *nodeFS) ReadFile(p string) ([]byte, error) {
	st, err := nf.Stat(p)
	if err != nil {
		return nil, err
	}
	return nf.ReadAt(p, 0, int(st.Size)+1)
}

func (nf *nodeFS) Getxattr(p, name string) (string, error) {
	n, err := nf.walk(p)
	if err != nil {
		return "", err
	}
	b := make([]byte, 4096)
	sz, errno := n.Getxattr(nf.ctx, name, b)
	if errno != 0 {
		return "", errno
	}
	return string(b[:sz]), nil
}

func (nf *nodeFS) Listxattr(p string) ([]string, error) {
	n, err := nf.walk(p)
	if err != nil {
		return nil, err
	}
	sz, errno := n.Listxattr(nf.ctx, nil)
	if errno != 0 && errno != syscall.ERANGE {
		return nil, errno
	}
	b := make([]byte, sz)
	sz, errno = n.Listxattr(nf.ctx, b)
	if errno != 0 {
		return nil, errno
	}
	return splitNul(b[:sz]), nil
}

func (nf *nodeFS) Readlink(p string) (string, error) {
	n, err := nf.walk(p)
	if err != nil {
		return "", err
	}
	b, errno := n.Readlink(nf.ctx)
	if errno != 0 {
		return "", errno
	}
	return string(b), nil
}

func errOf(errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

func (nf *nodeFS) Create(p string) error {
	n, name, err := nf.parent(p)
	if err != nil {
		return err
	}
	_, _, _, errno := n.Create(nf.ctx, name, syscall.O_WRONLY|syscall.O_CREAT, 0o644, &fuse.EntryOut{})
	return errOf(errno)
}

func (nf *nodeFS) OpenWrite(p string) error {
	n, err := nf.walk(p)
	if err != nil {
		return err
	}
	_, _, errno := n.Open(nf.ctx, syscall.O_WRONLY)
	return errOf(errno)
}

func (nf *nodeFS) Unlink(p string) error {
	n, name, err := nf.parent(p)
	if err != nil {
		return err
	}
	return errOf(n.Unlink(nf.ctx, name))
}

func (nf *nodeFS) Mkdir(p string) error {
	n, name, err := nf.parent(p)
	if err != nil {
		return err
	}
	_, errno := n.Mkdir(nf.ctx, name, 0o755, &fuse.EntryOut{})
	return errOf(errno)
}

func (nf *nodeFS) Chmod(p string) error {
	n, err := nf.walk(p)
	if err != nil {
		return err
	}
	return errOf(n.Setattr(nf.ctx, nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MODE, Mode: 0o777}}, &fuse.AttrOut{}))
}

func (nf *nodeFS) Utimes(p string) error {
	n, err := nf.walk(p)
	if err != nil {
		return err
	}
	return errOf(n.Setattr(nf.ctx, nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{Valid: fuse.FATTR_MTIME}}, &fuse.AttrOut{}))
}

// isErrno reports whether err carries errno.
func isErrno(err error, errno syscall.Errno) bool { return errors.Is(err, errno) }
