package fusefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
)

// A walk over more files than MaxInodes leaves about MaxInodes inodes in
// the server, not one per file: the oldest are handed back to the kernel,
// which forgets them; every file still reads back right afterwards (each
// name is looked up again), also while a file stays open across the
// pruning.
func TestInodeCapBoundsLiveInodes(t *testing.T) {
	dir := t.TempDir()
	tree := fixtures.Tree{}
	for d := 0; d < 20; d++ {
		for f := 0; f < 100; f++ {
			tree[fmt.Sprintf("d%02d/f%03d.txt", d, f)] = fixtures.File{Data: []byte(fmt.Sprintf("file %d/%d\n", d, f))}
		}
	}
	if err := tree.Build(dir); err != nil {
		t.Fatal(err)
	}
	const limit = 200
	f := adapt(t, openStore(t, dir), Options{View: ViewStore, MaxInodes: limit})
	mnt, srv := mountFS(t, f)
	t.Logf("kernel FUSE 7.%d, NOTIFY_PRUNE: %v", srv.KernelSettings().Minor, srv.KernelSettings().Minor >= 45)

	held, err := os.Open(filepath.Join(mnt, "d00/f000.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	readAll := func() {
		for p, want := range tree {
			b, err := os.ReadFile(filepath.Join(mnt, p))
			if err != nil || !bytes.Equal(b, want.(fixtures.File).Data) {
				t.Fatalf("%s: %q, %v", p, b, err)
			}
		}
	}
	readAll()
	deadline := time.Now().Add(5 * time.Second)
	for f.inodes.Live() > limit && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if live := f.inodes.Live(); live > limit {
		t.Errorf("after reading %d files with MaxInodes %d: %d inodes live", len(tree), limit, live)
	}
	if f.inodes.Pruned() == 0 {
		t.Errorf("nothing was handed back")
	}
	readAll()
	b := make([]byte, 64)
	if n, err := held.ReadAt(b, 0); string(b[:n]) != "file 0/0\n" {
		t.Errorf("the file held open across the pruning reads %q, %v", b[:n], err)
	}
	t.Logf("live %d, handed back %d", f.inodes.Live(), f.inodes.Pruned())

	// With no limit every inode looked up stays.
	f2 := adapt(t, openStore(t, dir), Options{View: ViewStore, MaxInodes: -1})
	mnt2, _ := mountFS(t, f2)
	for p := range tree {
		if _, err := os.Stat(filepath.Join(mnt2, p)); err != nil {
			t.Fatal(err)
		}
	}
	if live := f2.inodes.Live(); live < len(tree) {
		t.Errorf("no limit: %d inodes live after %d lookups", live, len(tree))
	}
}
