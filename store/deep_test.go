package store_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

func openFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestWalkDeepHoldsFewDescriptors walks a chain far deeper than the
// folders a walk keeps open, with a sibling folder at every level that
// is walked after the chain below it: the walk must reopen each level
// (through "..") and still list every entry once, in order.
func TestWalkDeepHoldsFewDescriptors(t *testing.T) {
	const levels = 400
	tree := fixtures.Tree{}
	p := "top"
	for i := 0; i < levels; i++ {
		tree[p+"/e/f.txt"] = fixtures.File{Data: []byte(p)}
		p += "/d"
	}
	tree[p+"/leaf.txt"] = fixtures.File{Data: []byte("leaf")}
	root := t.TempDir() + "/store"
	fixtures.Build(t, root, tree)

	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := openFds(t)
	maxFds := 0
	var files []string
	var last string
	err = s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err != nil {
			t.Errorf("%s: %v", e.StorePath, err)
		}
		if store.ComparePaths(last, e.StorePath) >= 0 && e.StorePath != "" {
			t.Errorf("out of order: %q after %q", e.StorePath, last)
		}
		last = e.StorePath
		if e.Type == store.TypeFile {
			files = append(files, e.StorePath)
		}
		if n := openFds(t); n > maxFds {
			maxFds = n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != levels+1 {
		t.Fatalf("%d files walked, want %d", len(files), levels+1)
	}
	if maxFds-before > 200 {
		t.Errorf("the walk held %d descriptors at once for a %d-deep tree", maxFds-before, levels)
	}

	// Random access below the deepest folder works and keeps the cache bounded.
	e, err := s.Stat(p + "/leaf.txt")
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	f.Close()
	if !bytes.Equal(b, []byte("leaf")) {
		t.Errorf("leaf %q", b)
	}
	for q := p; q != "top"; q = q[:strings.LastIndexByte(q, '/')] {
		kids, err := s.ReadDir(q)
		if err != nil || len(kids) == 0 {
			t.Fatalf("ReadDir(%s): %v", q, err)
		}
	}
	if n := openFds(t); n-before > 100 {
		t.Errorf("%d descriptors open after random access", n-before)
	}
	s.Close()
	if n := openFds(t); n > before {
		t.Errorf("%d descriptors left open after Close", n-before)
	}
}

// TestWalkDeepTwoVolumes: below the folders a walk keeps open, a folder
// merged from two volumes whose subfolder exists on one volume only is
// reopened on the other by path; its later subfolders are still walked
// on both volumes.
func TestWalkDeepTwoVolumes(t *testing.T) {
	const levels, onBoth = 180, 150
	base := t.TempDir()
	trees := [2]fixtures.Tree{{}, {}}
	p := "top"
	for i := 0; i < levels; i++ {
		for v := range trees {
			if v == 0 || i < onBoth {
				trees[v][p+"/e/f"+string(rune('0'+v))+".txt"] = fixtures.File{Data: []byte(p)}
			}
		}
		p += "/d"
	}
	trees[0][p+"/leaf.txt"] = fixtures.File{Data: []byte("leaf")}
	var roots []string
	for v := range trees {
		r := base + "/vol" + string(rune('0'+v)) + "/store"
		fixtures.Build(t, r, trees[v])
		roots = append(roots, r)
	}
	s, err := store.Open(roots...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]int{}
	err = s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err != nil {
			t.Errorf("%s: %v", e.StorePath, err)
		}
		if e.Type == store.TypeFile {
			got[e.StorePath[strings.LastIndexByte(e.StorePath, '/')+1:]]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got["f0.txt"] != levels || got["f1.txt"] != onBoth || got["leaf.txt"] != 1 {
		t.Errorf("walked %v; want f0.txt x%d, f1.txt x%d, leaf.txt x1", got, levels, onBoth)
	}
}

// TestWalkWinPathsAsMapPath: a walk makes each Windows path from its
// folder's; it must be exactly what MapPath makes from the store path.
func TestWalkWinPathsAsMapPath(t *testing.T) {
	dir := t.TempDir()
	h := fixtures.Hostile(t, dir+"/h")
	for _, sp := range []string{fixtures.USMT4(t, dir+"/u4"), fixtures.USMT3(t, dir+"/u3"), fixtures.Plain(t, dir+"/p"), h.StorePath} {
		s, err := store.Open(sp)
		if err != nil {
			t.Fatal(err)
		}
		kind := s.Info().Kind
		n := 0
		err = s.Walk(context.Background(), func(e *store.Entry, _ error) error {
			win, control := store.MapPath(kind, e.StorePath)
			if control && e.Type != store.TypeFile {
				control = false
			}
			if e.WinPath != win || e.Control != control {
				t.Errorf("%s %s: WinPath %q control %v; MapPath gives %q %v", kind, e.StorePath, e.WinPath, e.Control, win, control)
			}
			if win != "" {
				n++
			}
			return nil
		})
		s.Close()
		if err != nil || n < 5 {
			t.Fatalf("%s: %d mapped entries, %v", sp, n, err)
		}
	}
}
