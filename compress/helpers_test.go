package compress

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// requireTool applies the project policy (fixtures.RequireTool): on CI a
// missing tool fails the test, elsewhere it skips.
func requireTool(t *testing.T, names ...string) {
	t.Helper()
	fixtures.RequireTool(t, names...)
}

// openPlain opens a directory as a plain store with the real store reader.
func openPlain(t testing.TB, dir string) store.Store {
	t.Helper()
	d, err := store.DetectPlain(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenDetected([]*store.Detection{d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeArchive writes src to a file in a temp dir and returns its path.
func writeArchive(t testing.TB, src store.Store, opts WriteOptions) (string, *WriteResult) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "a.tar.zst")
	res, err := CreateFile(context.Background(), out, src, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

func openArchive(t testing.TB, path string) *Archive {
	t.Helper()
	a, err := Open(path, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// readAll reads a store file completely through ReadAt in odd-sized pieces.
func readAll(t testing.TB, s store.Store, e *store.Entry) ([]byte, error) {
	t.Helper()
	f, err := s.Open(e)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out bytes.Buffer
	buf := make([]byte, 100_003)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		out.Write(buf[:n])
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
	}
}

// walkAll collects a store's entries in Walk order.
func walkAll(t testing.TB, s store.Store) []store.Entry {
	t.Helper()
	var out []store.Entry
	err := s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", e.StorePath, err)
		}
		out = append(out, *e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareStores checks that the archive holds every entry of the source
// with the same metadata and content. Entries of other types the writer
// skips (FIFOs, sockets) are ignored.
func compareStores(t *testing.T, src store.Store, a *Archive) {
	t.Helper()
	want := walkAll(t, src)
	got := walkAll(t, a)
	gi := 0
	groups := map[uint64]uint64{} // source LinkID -> archive LinkID
	for _, w := range want {
		if w.Type == store.TypeOther {
			continue
		}
		if gi >= len(got) {
			t.Fatalf("archive ends before %q", w.StorePath)
		}
		g := got[gi]
		gi++
		if g.StorePath != w.StorePath {
			t.Fatalf("entry %d: archive has %q, source %q", gi, g.StorePath, w.StorePath)
		}
		if w.Type == store.TypeSymlink {
			// readlink during the walk updates a symlink's atime; the
			// archive keeps the value the walk saw.
			g.AtimeNs = w.AtimeNs
		}
		if g.Type != w.Type || g.Mode != w.Mode || g.MtimeNs != w.MtimeNs || g.AtimeNs != w.AtimeNs || g.CtimeNs != w.CtimeNs ||
			g.HasBtime != w.HasBtime || g.BtimeNs != w.BtimeNs || g.HasWinAttr != w.HasWinAttr || g.WinAttrs != w.WinAttrs ||
			g.WinPath != w.WinPath || g.Control != w.Control || g.LinkTarget != w.LinkTarget {
			t.Errorf("%q metadata differs:\n got %+v\nwant %+v", w.StorePath, g, w)
		}
		if w.Type == store.TypeDir {
			continue
		}
		if g.Size != w.Size {
			t.Errorf("%q size %d, want %d", w.StorePath, g.Size, w.Size)
		}
		if w.Type != store.TypeFile {
			continue
		}
		if prev, ok := groups[w.LinkID]; ok {
			if prev != g.LinkID {
				t.Errorf("%q: hard link group not kept", w.StorePath)
			}
		} else {
			groups[w.LinkID] = g.LinkID
		}
		if w.Nlink > 1 && g.Nlink != w.Nlink {
			t.Errorf("%q: nlink %d, want %d", w.StorePath, g.Nlink, w.Nlink)
		}
		if w.Size > 64<<20 {
			continue // the huge sparse file is checked by its own test
		}
		wb, err := readAll(t, src, &w)
		if err != nil {
			t.Fatal(err)
		}
		gb, err := readAll(t, a, &g)
		if err != nil {
			t.Fatalf("reading %q from the archive: %v", w.StorePath, err)
		}
		if !bytes.Equal(wb, gb) {
			t.Errorf("%q content differs (%d vs %d bytes)", w.StorePath, len(gb), len(wb))
		}
	}
	if gi != len(got) {
		t.Errorf("archive has %d extra entries, first %q", len(got)-gi, got[gi].StorePath)
	}
}

// compareDirs checks an extracted tree against the source tree on disk:
// content, symlinks, mtimes to the ns, modes and hard-link groups. names
// is the set of relative paths expected (nil: all of src but FIFOs/sockets).
func compareDirs(t *testing.T, src, dst string) {
	t.Helper()
	srcInodes := map[uint64]string{}
	dstInodes := map[uint64]string{}
	n := 0
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		mode := fi.Mode()
		if mode&(os.ModeNamedPipe|os.ModeSocket|os.ModeDevice) != 0 {
			return nil
		}
		n++
		q := filepath.Join(dst, rel)
		var ss, ds unix.Stat_t
		if err := unix.Lstat(p, &ss); err != nil {
			return err
		}
		if err := unix.Lstat(q, &ds); err != nil {
			t.Errorf("%q missing after extraction: %v", rel, err)
			return nil
		}
		if ss.Mode != ds.Mode {
			t.Errorf("%q mode %o, want %o", rel, ds.Mode, ss.Mode)
		}
		if ss.Mode&unix.S_IFMT != unix.S_IFLNK && ss.Mtim != ds.Mtim {
			t.Errorf("%q mtime %v, want %v", rel, time.Unix(ds.Mtim.Unix()), time.Unix(ss.Mtim.Unix()))
		}
		switch ss.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(q)
			if !bytes.Equal(a, b) {
				t.Errorf("%q content differs", rel)
			}
			if ss.Nlink > 1 {
				if first, ok := srcInodes[ss.Ino]; ok {
					if dstInodes[ds.Ino] != first {
						t.Errorf("%q is no longer a hard link of %q", rel, first)
					}
				} else {
					srcInodes[ss.Ino] = rel
					dstInodes[ds.Ino] = rel
				}
				if ss.Nlink != ds.Nlink {
					t.Errorf("%q nlink %d, want %d", rel, ds.Nlink, ss.Nlink)
				}
			}
		case unix.S_IFLNK:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(q)
			if a != b {
				t.Errorf("%q symlink %q, want %q", rel, b, a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("source tree is empty")
	}
	// Nothing extra in dst (besides what the tools may add: nothing).
	m := 0
	filepath.Walk(dst, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dst {
			m++
		}
		return nil
	})
	if m != n {
		t.Errorf("extracted %d entries, source has %d", m, n)
	}
}

// attrStore is a real store with Windows attributes and creation times
// added to its entries, the way an NTFS source reports them (the test
// machine's file systems have none).
type attrStore struct {
	store.Store
}

func withAttrs(e *store.Entry) {
	if e.StorePath == "" {
		return
	}
	e.HasWinAttr = true
	e.WinAttrs = uint32(len(e.StorePath))*0x11 | 0x20
	e.HasBtime = true
	e.BtimeNs = e.MtimeNs - int64(len(e.StorePath))*1_000_000_007
}

func (s attrStore) Walk(ctx context.Context, fn store.WalkFunc) error {
	return s.Store.Walk(ctx, func(e *store.Entry, err error) error {
		withAttrs(e)
		return fn(e, err)
	})
}

func (s attrStore) Stat(p string) (*store.Entry, error) {
	e, err := s.Store.Stat(p)
	if e != nil {
		withAttrs(e)
	}
	return e, err
}

func (s attrStore) ReadDir(p string) ([]store.Entry, error) {
	es, err := s.Store.ReadDir(p)
	for i := range es {
		withAttrs(&es[i])
	}
	return es, err
}

// longUnicodePath is a path of more than 300 characters made of
// non-ASCII components (each under the 255-byte name limit).
func longUnicodePath() string {
	comp := strings.Repeat("Документы-", 8) // 80 chars, 152 bytes
	return "long/" + comp + "1/" + comp + "2/" + comp + "3/" + comp + "4 файл.txt"
}
