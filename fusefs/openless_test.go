package fusefs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// archiveFiles lists the regular files of an archive with their paths in
// the windows view.
func storeFiles(t *testing.T, a store.Store) (es []*store.Entry, vps []string) {
	t.Helper()
	m := newViewMap(a, ViewWindows)
	_ = a.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err != nil || e.Type != store.TypeFile {
			return nil
		}
		if vp, ok := m.of(e.StorePath); ok {
			c := *e
			es, vps = append(es, &c), append(vps, vp)
		}
		return nil
	})
	if len(es) < 5 {
		t.Fatalf("only %d files in the fixture", len(es))
	}
	return es, vps
}

// TestMountArchiveNoOpen: on an archive mount the kernel opens files
// without OPEN (and sends no RELEASE, and at most one FLUSH), reads come
// without a handle and return the right bytes, and opens for writing
// still fail with EROFS.
func TestMountArchiveNoOpen(t *testing.T) {
	requireFUSE(t)
	a := archiveOf(t, fixtures.USMT4(t, t.TempDir()))
	f := adapt(t, a, Options{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
	mnt, srv := mountFS(t, f)
	if !srv.NoOpen() {
		t.Skip("this kernel does not offer FUSE_NO_OPEN_SUPPORT")
	}
	es, vps := storeFiles(t, a)
	for round := 0; round < 2; round++ { // the second round opens files already read
		for i, e := range es {
			want := sourceBytes(t, a, e)
			got, err := os.ReadFile(filepath.Join(mnt, vps[i]))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("reading %s: %d bytes (want %d), %v", vps[i], len(got), len(want), err)
			}
		}
	}
	if n := f.handles.Load(); n != 0 {
		t.Errorf("%d OPEN requests were answered with a handle; want none", n)
	}
	if n := f.flushes.Load(); n > 1 {
		t.Errorf("%d FLUSH requests; the first ENOSYS should stop them", n)
	}
	if f.ReadCount() == 0 {
		t.Errorf("no READ reached the server")
	}
	if n := f.KeptFiles(); n == 0 || n > maxOpenFiles {
		t.Errorf("%d store files kept open", n)
	}

	// Writes are refused by the kernel (read-only mount) before any request.
	p := filepath.Join(mnt, vps[0])
	for _, fl := range []int{os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND} {
		h, err := os.OpenFile(p, fl, 0)
		if err == nil {
			h.Close()
		}
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("open %s with flags %#x: %v, want EROFS", vps[0], fl, err)
		}
	}
	// Without OPEN a read-only open with O_APPEND succeeds (nothing can
	// be written through it); docs/mount.md says so.
	if h, err := os.OpenFile(p, os.O_RDONLY|os.O_APPEND, 0); err != nil {
		t.Errorf("read-only O_APPEND open on an archive mount: %v, want success", err)
	} else {
		h.Close()
	}
	// A read-only open still works and reads, also through a second
	// descriptor at the same time.
	h1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	h2, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	want := sourceBytes(t, a, es[0])
	for _, h := range []*os.File{h1, h2} {
		b := make([]byte, len(want)+1)
		n, _ := h.ReadAt(b, 0)
		if !bytes.Equal(b[:n], want) {
			t.Errorf("read-only open of %s: %d bytes differ", vps[0], n)
		}
	}
	// The whole behaviour suite (contents, hard links, xattrs, EROFS)
	// holds with opens turned off.
	runBehaviour(t, osFS{mnt}, a, ViewWindows, behaviourOpts{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), checkNlink: true})
	if n := f.handles.Load(); n != 0 {
		t.Errorf("%d OPEN requests were answered with a handle after the suite; want none", n)
	}
}

// TestMountDirKeepsOpen: a directory store needs OPEN (passthrough
// registers its descriptors there), so opens are never turned off.
func TestMountDirKeepsOpen(t *testing.T) {
	requireFUSE(t)
	vol := fixtures.USMT4(t, t.TempDir())
	s := openStore(t, vol)
	f := adapt(t, s, Options{NoPassthrough: true})
	mnt, srv := mountFS(t, f)
	if srv.NoOpen() {
		t.Fatalf("a directory store's mount turned OPEN off")
	}
	_, vps := storeFiles(t, s)
	if _, err := os.ReadFile(filepath.Join(mnt, vps[0])); err != nil {
		t.Fatal(err)
	}
	if f.handles.Load() == 0 {
		t.Errorf("no OPEN reached the server")
	}
	// With OPEN on, the server refuses a read-only open with O_APPEND
	// (EROFS); without it (archives) the same open succeeds: both as
	// docs/mount.md says.
	h, err := os.OpenFile(filepath.Join(mnt, vps[0]), os.O_RDONLY|os.O_APPEND, 0)
	if err == nil {
		h.Close()
	}
	if !errors.Is(err, syscall.EROFS) {
		t.Errorf("read-only O_APPEND open on a folder mount: %v, want EROFS", err)
	}
}

// countingStore counts the files opened and closed, and fails opens of
// the store path failPath.
type countingStore struct {
	store.Store
	opened, closed atomic.Int64
	failPath       string
}

func (c *countingStore) Open(e *store.Entry) (store.File, error) {
	if e.StorePath == c.failPath {
		return nil, &store.PathError{Op: "opening", Path: e.StorePath, Err: store.ErrCorrupt}
	}
	f, err := c.Store.Open(e)
	if err != nil {
		return nil, err
	}
	c.opened.Add(1)
	return &countingFile{File: f, c: c}, nil
}

type countingFile struct {
	store.File
	c *countingStore
}

func (f *countingFile) Close() error {
	f.c.closed.Add(1)
	return f.File.Close()
}

// TestOpenlessNodes: without handles, nodes read by themselves, keep at
// most kept.max store files open and close the ones they push out, and
// an error opening the store file is reported by the read.
func TestOpenlessNodes(t *testing.T) {
	a := archiveOf(t, fixtures.USMT4(t, t.TempDir()))
	es, vps := storeFiles(t, a)
	cs := &countingStore{Store: a, failPath: es[len(es)-1].StorePath}
	f := adapt(t, cs, Options{})
	if !f.archivesOnly() {
		t.Fatalf("an archive store is not taken for one")
	}
	f.noOpen.Store(true)
	f.kept.max = 3
	nf := newNodeFS(t, f)
	for round := 0; round < 2; round++ {
		for i, e := range es[:len(es)-1] {
			n, err := nf.walk(vps[i])
			if err != nil {
				t.Fatal(err)
			}
			if _, _, errno := n.Open(nf.ctx, syscall.O_RDONLY); errno != syscall.ENOSYS {
				t.Fatalf("Open %s: %v, want ENOSYS", vps[i], errno)
			}
			got, err := nf.ReadFile(vps[i])
			if want := sourceBytes(t, a, e); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("reading %s without a handle: %d bytes (want %d), %v", vps[i], len(got), len(want), err)
			}
			if k := f.KeptFiles(); k > 3 {
				t.Fatalf("%d files kept open, bound 3", k)
			}
			if open := cs.opened.Load() - cs.closed.Load(); open != int64(f.KeptFiles()) {
				t.Fatalf("%d store files open, %d kept: pushed-out files must be closed", open, f.KeptFiles())
			}
		}
	}
	// Reading one node many times opens it once. (nf.walk makes a new
	// node per call; a mount has one per inode.)
	n, err := nf.walk(vps[0])
	if err != nil {
		t.Fatal(err)
	}
	before := cs.opened.Load()
	for range 5 {
		if _, err := readHandle(nf.ctx, nodeReadHandle{n}, 0, int(es[0].Size)+1); err != nil {
			t.Fatal(err)
		}
	}
	if d := cs.opened.Load() - before; d != 1 {
		t.Errorf("5 reads of a node opened its file %d times, want 1", d)
	}
	// A forgotten node's file is closed at once.
	k := f.KeptFiles()
	n.OnForget()
	if f.KeptFiles() != k-1 {
		t.Errorf("OnForget left the node's file open")
	}
	// Open errors surface at the first read (EIO for a damaged store).
	eio := f.EIOCount()
	if _, err := nf.ReadFile(vps[len(vps)-1]); !isErrno(err, syscall.EIO) {
		t.Errorf("read of a file that cannot be opened: %v, want EIO", err)
	}
	if f.EIOCount() != eio+1 {
		t.Errorf("the EIO was not counted")
	}
	// Opens for writing are still refused first.
	if _, _, errno := n.Open(nf.ctx, syscall.O_WRONLY); errno != syscall.EROFS {
		t.Errorf("Open for writing: %v, want EROFS", errno)
	}
}

// TestMountOpenlessBound: on a real mount the kept files stay within the
// bound, and the page cache feeding of random reads still works on reads
// without a handle.
func TestMountOpenlessBound(t *testing.T) {
	requireFUSE(t)
	a := archiveOf(t, fixtures.USMT4(t, t.TempDir()))
	es, vps := storeFiles(t, a)
	f := adapt(t, a, Options{})
	f.kept.max = 2
	mnt, srv := mountFS(t, f)
	if !srv.NoOpen() {
		t.Skip("this kernel does not offer FUSE_NO_OPEN_SUPPORT")
	}
	for i, e := range es {
		got, err := os.ReadFile(filepath.Join(mnt, vps[i]))
		if want := sourceBytes(t, a, e); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reading %s: %d bytes (want %d), %v", vps[i], len(got), len(want), err)
		}
		if k := f.KeptFiles(); k > 2 {
			t.Fatalf("%d files kept open, bound 2", k)
		}
	}
}
