package store_test

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func openMIG(t *testing.T, p string, marker bool) *store.MIGStore {
	t.Helper()
	info, err := store.WalkMIG(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenMIG(context.Background(), p, info, store.MIGStoreOptions{Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMIGStoreContents: every File record comes back byte for byte under
// its Windows path, and every record that cannot be interpreted is listed
// with its reason instead.
func TestMIGStoreContents(t *testing.T) {
	data, want, wantLeft := fixtures.MIGWithOddities()
	s := openMIG(t, writeTemp(t, "USMT.MIG", data), false)
	got := storetest.UserFiles(t, s)
	if len(got) != len(want) {
		t.Errorf("%d files, want %d: %v", len(got), len(want), keys(got))
	}
	for p, c := range want {
		if got[p] != c {
			t.Errorf("%s: %d bytes, want %d (identical: %v)", p, len(got[p]), len(c), got[p] == c)
		}
	}
	left, n := s.LeftOut()
	if int(n) != len(left) || len(left) != len(wantLeft)+1 { // twice.txt is listed twice
		t.Errorf("left out %d (%d listed), want %d: %+v", n, len(left), len(wantLeft)+1, left)
	}
	for key, why := range wantLeft {
		found := false
		for _, l := range left {
			if (l.Path == key || strings.Contains(l.Name, key) || store.MIGWindowsPath(l.Name) == key || strings.Contains(l.Why, "odd") && key == "odd" ||
				strings.Contains(l.Why, "surrogate") && key == "surrogate") && strings.Contains(l.Why, why) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s is not left out with %q: %+v", key, why, left)
		}
	}
	if s.Files() != int64(len(want)) {
		t.Errorf("Files() = %d, want %d", s.Files(), len(want))
	}
	// Walk order is ComparePaths order, parents first.
	var prev string
	first := true
	s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if !first && store.ComparePaths(prev, e.StorePath) >= 0 {
			t.Errorf("walk order: %q before %q", prev, e.StorePath)
		}
		first, prev = false, e.StorePath
		return nil
	})
	// ResolveWinPath and ReadDir work on the index.
	sp, err := store.ResolveWinPath(s, `c:\users\JDOE\videos`)
	if err != nil || sp != "USMT/File/C$/Users/jdoe/Videos" {
		t.Errorf("ResolveWinPath: %q %v", sp, err)
	}
	if es, err := s.ReadDir(sp); err != nil || len(es) != 1 || es[0].Name() != "big.bin" {
		t.Errorf("ReadDir(%s): %v %v", sp, es, err)
	}
	if _, err := s.Stat("USMT/File/C$/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat of a missing path: %v", err)
	}
}

// TestMIGStoreRandomReads: reads at any offset, in any order, return the
// right bytes (inflating again from the start when they must).
func TestMIGStoreRandomReads(t *testing.T) {
	data, want, _ := fixtures.MIGWithOddities()
	s := openMIG(t, writeTemp(t, "USMT.MIG", data), false)
	e, err := s.Stat("USMT/File/C$/Users/jdoe/Videos/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	content := want[`C:\Users\jdoe\Videos\big.bin`]
	f, err := s.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewSource(1))
	buf := make([]byte, 200<<10)
	for i := 0; i < 300; i++ {
		off := r.Int63n(e.Size + 10)
		n := r.Intn(len(buf))
		if i%3 == 0 { // near the last read, as readahead does
			off = max(0, min(e.Size, off/4096*4096))
		}
		m, err := f.ReadAt(buf[:n], off)
		wantN := max(0, min(int64(n), e.Size-off))
		if int64(m) != wantN || (m < n && err != io.EOF) || (m == n && err != nil) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d", n, off, m, err, wantN)
		}
		if string(buf[:m]) != content[off:off+int64(m)] {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", n, off)
		}
	}
}

// TestMIGStoreMarker: asked for, EXPERIMENTAL.txt is at the root and in
// USMT/File (the top of a mount's windows view), says what is inferred
// and lists what was left out.
func TestMIGStoreMarker(t *testing.T) {
	data, _, _ := fixtures.MIGWithOddities()
	s := openMIG(t, writeTemp(t, "USMT.MIG", data), true)
	for _, p := range []string{store.MIGMarkerName, "USMT/File/" + store.MIGMarkerName} {
		e, err := s.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(io.NewSectionReader(f, 0, e.Size))
		text := string(b)
		for _, w := range []string{"EXPERIMENTAL", "INFERRED", "file(1)", "PhotoRec", "Left out: 10", `C:\Users\jdoe\notzlib.txt`, "usmtutils /extract"} {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %q:\n%s", p, w, text)
			}
		}
		if !e.Control || int64(len(b)) != e.Size {
			t.Errorf("%s: control %v, %d bytes of %d", p, e.Control, len(b), e.Size)
		}
	}
	if s.Files() != int64(len(storetest.UserFiles(t, s))) {
		t.Error("the marker is counted as a file")
	}
}

// TestMIGStoreEncrypted: an encrypted MIG is refused with ErrEncrypted.
func TestMIGStoreEncrypted(t *testing.T) {
	p := writeTemp(t, "USMT.MIG", fixtures.MIGFile(true, nil))
	info, err := store.WalkMIG(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenMIG(context.Background(), p, info, store.MIGStoreOptions{}); !errors.Is(err, store.ErrEncrypted) {
		t.Fatalf("got %v, want ErrEncrypted", err)
	}
}

// TestMIGStoreTruncated: a MIG cut short shows every whole record and
// lists the cut one.
func TestMIGStoreTruncated(t *testing.T) {
	s := openMIG(t, writeTemp(t, "USMT.MIG", fixtures.TruncatedMIG(false, nil)), false)
	if got := len(storetest.UserFiles(t, s)); got != len(fixtures.MIGDefaultNames)-1 {
		t.Errorf("%d files, want %d", got, len(fixtures.MIGDefaultNames)-1)
	}
	left, n := s.LeftOut()
	if n != 1 || !strings.Contains(left[0].Why, "truncated") {
		t.Errorf("left out: %+v", left)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
