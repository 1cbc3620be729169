package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
)

// requirePassthrough fails under CI, and skips elsewhere, unless srv reads
// the store's files through FUSE passthrough (root, Linux 6.9+).
func requirePassthrough(t *testing.T, srv *Server) {
	t.Helper()
	if os.Geteuid() != 0 || srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 || !srv.Passthrough {
		fixtures.Unavailable(t, "needs root and a kernel with FUSE passthrough")
	}
}

// backingStore writes a plain folder of files whose contents all differ
// (each is its own name repeated), so a read of the wrong file shows.
func backingStore(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), contentOf(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func contentOf(name string) []byte {
	return bytes.Repeat([]byte(name+"/"), 20000/(len(name)+1))
}

// readMounted reads a file of the mount and checks it against want.
func readMounted(t *testing.T, mnt, name string, want []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, name))
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("%s: read %d bytes starting %q; want %d bytes starting %q", name, len(b), b[:min(len(b), 16)], len(want), want[:16])
	}
}

// settled waits until busy handles are open (RELEASE is sent in the
// background after close(2)) and returns the counts then.
func (b *backings) settled(t *testing.T, busy int) (kept, gotBusy int, registered, unregistered int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		kept, gotBusy, registered, unregistered = b.counts()
		if gotBusy == busy || time.Now().After(deadline) {
			return
		}
	}
}

// keeps reports whether the file at store path sp has a kept id.
func (b *backings) keeps(sp string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n := range b.byN {
		if n.sp == sp {
			return true
		}
	}
	return false
}

func (b *backings) counts() (kept, busy int, registered, unregistered int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, el := range b.byN {
		if el.Value.(*backing).open > 0 {
			busy++
		}
	}
	return len(b.byN), busy, b.registered.Load(), b.unregistered.Load()
}

// TestPassthroughBackingKept: a file opened many times is registered with
// the kernel once and read correctly every time, also while another open
// of it is held; the kept ids are bounded, an id whose file is open is
// never dropped (a second id for an open inode would fail with EBUSY),
// and a dropped one is registered again at the next open.
func TestPassthroughBackingKept(t *testing.T) {
	requireFUSE(t)
	names := []string{"a.txt", "b.txt", "c.txt", "d.txt", "e.txt"}
	dir := backingStore(t, names...)
	mnt, _, srv := mountStore(t, Options{View: ViewStore}, dir)
	requirePassthrough(t, srv)
	b := srv.fsys.backings
	b.mu.Lock()
	b.max = 2
	b.mu.Unlock()

	for i := 0; i < 5; i++ {
		readMounted(t, mnt, "a.txt", contentOf("a.txt"))
	}
	if kept, busy, reg, unreg := b.settled(t, 0); reg != 1 || unreg != 0 || kept != 1 || busy != 0 {
		t.Fatalf("after 5 opens of one file: kept %d busy %d registered %d unregistered %d; want 1 0 1 0", kept, busy, reg, unreg)
	}

	// Held open while others push it to the back of the LRU.
	held, err := os.Open(filepath.Join(mnt, "a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := os.ReadFile(filepath.Join(mnt, "a.txt"))
			if err != nil || !bytes.Equal(b, contentOf("a.txt")) {
				t.Errorf("concurrent open of a.txt: %d bytes, %v", len(b), err)
			}
		}()
	}
	wg.Wait()
	for _, n := range names[1:] {
		readMounted(t, mnt, n, contentOf(n))
	}
	kept, busy, reg, unreg := b.settled(t, 1)
	if reg != 5 || busy != 1 || kept > 3 || unreg != reg-int64(kept) {
		t.Fatalf("after opening all 5 files with a.txt held, max 2: kept %d busy %d registered %d unregistered %d; want a.txt kept (busy), at most 3 kept, 5 registered", kept, busy, reg, unreg)
	}
	srv.fsys.open.mu.Lock()
	withFd := len(srv.fsys.open.m)
	srv.fsys.open.mu.Unlock()
	if withFd != 0 {
		t.Errorf("%d handles hold a store file; handles of kept ids hold none (the kernel holds the file)", withFd)
	}
	if !b.keeps("a.txt") {
		t.Fatalf("a.txt, open, was dropped from the kept ids")
	}
	// A second id for the held inode would make this open fail (EBUSY).
	readMounted(t, mnt, "a.txt", contentOf("a.txt"))
	got := make([]byte, 10)
	if _, err := held.ReadAt(got, 0); err != nil || !bytes.Equal(got, contentOf("a.txt")[:10]) {
		t.Fatalf("held a.txt after evictions: %q, %v", got, err)
	}
	// b.txt was dropped: it is registered again, and reads right.
	readMounted(t, mnt, "b.txt", contentOf("b.txt"))
	if _, _, reg2, _ := b.counts(); reg2 != reg+1 {
		t.Errorf("reopening an evicted file: %d registrations; want %d", reg2, reg+1)
	}
	held.Close()
	readMounted(t, mnt, "a.txt", contentOf("a.txt"))
	if n := srv.fsys.ReadCount(); n != 0 {
		t.Errorf("%d READ requests reached the server; passthrough serves them in the kernel", n)
	}
}

// TestPassthroughBackingReplaced: a file replaced in the store after the
// mount opened it reads as the file first opened (the kernel holds it);
// one replaced before its first open fails to open. Never the data of
// another file.
func TestPassthroughBackingReplaced(t *testing.T) {
	requireFUSE(t)
	dir := backingStore(t, "kept.txt", "fresh.txt")
	mnt, _, srv := mountStore(t, Options{View: ViewStore}, dir)
	requirePassthrough(t, srv)

	readMounted(t, mnt, "kept.txt", contentOf("kept.txt"))
	if _, err := os.Stat(filepath.Join(mnt, "fresh.txt")); err != nil {
		t.Fatal(err) // looked up (its entry is listed) but never opened
	}
	for _, n := range []string{"kept.txt", "fresh.txt"} {
		tmp := filepath.Join(dir, n+".new")
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("another file, replacing %s", n)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	readMounted(t, mnt, "kept.txt", contentOf("kept.txt"))
	if b, err := os.ReadFile(filepath.Join(mnt, "fresh.txt")); err == nil {
		t.Errorf("fresh.txt, replaced before its first open, read %d bytes %q; want an error", len(b), b[:min(len(b), 24)])
	}
}

// TestFolderMountFewReaders: serving a directory store leaves more Ps
// than go-fuse's request readers (readers.go), unless GOMAXPROCS is set
// in the environment.
func TestFolderMountFewReaders(t *testing.T) {
	requireFUSE(t)
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set: the mount leaves it alone")
	}
	mnt, _, _ := mountStore(t, Options{View: ViewStore}, backingStore(t, "x.txt"))
	readMounted(t, mnt, "x.txt", contentOf("x.txt"))
	if n := runtime.GOMAXPROCS(0); n < minServingProcs {
		t.Errorf("GOMAXPROCS %d after mounting a folder; want at least %d", n, minServingProcs)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		rel  string
		want bool
	}{{"6.18.44-fc-v1272", true}, {"6.9.0", true}, {"6.8.12-generic", false}, {"7.0", true}, {"5.15.0", false}, {"junk", false}, {"", false}} {
		if got := kernelAtLeast(c.rel, 6, 9); got != c.want {
			t.Errorf("kernelAtLeast(%q, 6, 9) = %v; want %v", c.rel, got, c.want)
		}
	}
}

// TestPassthroughExpected: 128 KiB requests only where reads are meant to
// bypass the server: a directory store as root on a kernel with
// passthrough, not with NoPassthrough, not for archives.
func TestPassthroughExpected(t *testing.T) {
	dir := backingStore(t, "x.txt")
	if adapt(t, openStore(t, dir), Options{NoPassthrough: true}).passthroughExpected() {
		t.Errorf("NoPassthrough: passthrough expected")
	}
	if adapt(t, archiveOf(t, dir), Options{}).passthroughExpected() {
		t.Errorf("archive: passthrough expected")
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	want := os.Geteuid() == 0 && kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 9)
	if got := adapt(t, openStore(t, dir), Options{}).passthroughExpected(); got != want {
		t.Errorf("directory store, uid %d, kernel %s: passthroughExpected %v; want %v", os.Geteuid(), unix.ByteSliceToString(u.Release[:]), got, want)
	}
}

// A file the kernel forgets (here: handed back by the inode cap) has its
// kept backing id dropped at FORGET, not when the LRU reaches it; the
// files read again afterwards read right through new ids.
func TestPassthroughBackingDroppedAtForget(t *testing.T) {
	requireFUSE(t)
	var names []string
	for i := 0; i < 400; i++ {
		names = append(names, fmt.Sprintf("f%03d.txt", i))
	}
	dir := backingStore(t, names...)
	const limit = 100
	mnt, _, srv := mountStore(t, Options{View: ViewStore, MaxInodes: limit}, dir)
	requirePassthrough(t, srv)
	for _, n := range names {
		readMounted(t, mnt, n, contentOf(n))
	}
	b, f := srv.fsys.backings, srv.fsys
	deadline := time.Now().Add(5 * time.Second)
	for {
		kept, busy, _, unreg := b.counts()
		live := f.inodes.Live()
		if live <= limit && kept <= live && busy == 0 || time.Now().After(deadline) {
			if kept > limit || unreg == 0 {
				t.Errorf("after reading %d files with an inode limit of %d: %d ids kept, %d inodes live, %d dropped", len(names), limit, kept, f.inodes.Live(), unreg)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, n := range names[:50] {
		readMounted(t, mnt, n, contentOf(n))
	}
}
