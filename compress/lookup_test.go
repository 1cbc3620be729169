package compress

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// TestLookupFromLastFolder: a lookup that starts at the folder of the
// previous one finds exactly what a walk from the root finds, in any
// order of lookups, and misses stay misses.
func TestLookupFromLastFolder(t *testing.T) {
	dir := t.TempDir()
	tree := fixtures.Tree{}
	for _, p := range []string{"a/b/c/f1", "a/b/c/f2", "a/b/g", "a/bb/c/f1", "a/b/c/d/e/f3", "ab/c/f1", "a/b/cc"} {
		tree[p] = fixtures.File{Data: []byte(p)}
	}
	fixtures.Build(t, dir+"/src", tree)
	src := openPlain(t, dir+"/src")
	path, _ := writeArchive(t, src, WriteOptions{})
	a := openArchive(t, path)
	var paths []string
	for _, e := range walkAll(t, a) {
		paths = append(paths, e.StorePath)
	}
	paths = append(paths, "a/b/c/nope", "a/b/c/f1/under-a-file", "a/bz", "ab/c/f1x")
	want := map[string]uint32{}
	for _, p := range paths {
		a.lastDir.Store(nil)
		i, err := a.lookup("test", p)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s: %v", p, err)
			}
			i = ^uint32(0)
		}
		want[p] = i
	}
	// Folders above the last one (going back up), then below again.
	for _, p := range []string{"a/b/c/d/e/f3", "a/b/c/d/e", "a/b/c/d", "a/b/c", "a/b", "a", "a/b/c/d/e", "a/b/c/d/e/f3", "a/bb/c", "a/bb"} {
		if i, err := a.lookup("test", p); err != nil || i != want[p] {
			t.Fatalf("lookup %s: %d, %v; want %d", p, i, err, want[p])
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 2000; n++ {
		p := paths[r.IntN(len(paths))]
		i, err := a.lookup("test", p)
		if err != nil {
			i = ^uint32(0)
		}
		if i != want[p] {
			t.Fatalf("lookup %s after %v: %d, want %d", p, a.lastDir.Load(), i, want[p])
		}
	}
	if e, err := a.Stat("a/b/c/d/e/f3"); err != nil || e.Type != store.TypeFile {
		t.Errorf("Stat: %v", err)
	}
}
