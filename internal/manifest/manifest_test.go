package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// writeManifest writes records for the given paths and returns the file.
func writeManifest(t *testing.T, dir string, paths ...string) string {
	t.Helper()
	p := filepath.Join(dir, "m.ndjson")
	f, err := CreateAtomic(p, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, Header{Created: "2024-01-01T00:00:00Z", Tool: "test", Hashed: true,
		Store: StoreHeader{Kind: "plain", Level: "directory"}})
	if err != nil {
		t.Fatal(err)
	}
	for i, sp := range paths {
		typ := "file"
		if i == 0 {
			typ = "dir"
		}
		rec := Record{StorePath: sp, Type: typ, Size: int64(i), XXH64: HashHex(uint64(i))}
		if err := w.Write(&rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	return p
}

func readAll(t *testing.T, p string) ([]*Record, error) {
	t.Helper()
	r, err := Open(p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []*Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := writeManifest(t, dir, "", "a", "a/b", "a-b", "bad\xffname")
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Format != FormatName || r.Header.Version != 1 || r.Header.Hash != "xxh64" || !r.Header.Hashed {
		t.Errorf("header %+v", r.Header)
	}
	if r.Trailer.Entries != 5 || r.Trailer.Files != 4 || r.Trailer.Dirs != 1 || r.Trailer.Bytes != 1+2+3+4 {
		t.Errorf("trailer %+v", r.Trailer)
	}
	r.Close()
	recs, err := readAll(t, p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rec := range recs {
		sp, err := rec.Path()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, sp)
	}
	want := []string{"", "a", "a/b", "a-b", "bad\xffname"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("paths %q, want %q", got, want)
	}
	if recs[4].StorePathB64 == "" {
		t.Error("a non-UTF-8 name must carry store_path_b64")
	}
	// No temporary file is left next to the manifest.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("folder holds %d files, want only the manifest", len(ents))
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestDamageDetected(t *testing.T) {
	dir := t.TempDir()
	p := writeManifest(t, dir, "", "a", "b", "c")
	orig, _ := os.ReadFile(p)
	cases := map[string]func([]byte) []byte{
		"edited size": func(b []byte) []byte { return bytes.Replace(b, []byte(`"size":2`), []byte(`"size":9`), 1) },
		"line removed": func(b []byte) []byte {
			lines := bytes.SplitAfter(b, []byte("\n"))
			return bytes.Join(append(lines[:2:2], lines[3:]...), nil)
		},
		"truncated":      func(b []byte) []byte { return b[:len(b)-30] },
		"no trailer":     func(b []byte) []byte { i := bytes.LastIndex(b[:len(b)-1], []byte("\n")); return b[:i+1] },
		"empty":          func(b []byte) []byte { return nil },
		"not a manifest": func(b []byte) []byte { return []byte("hello\n") },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			q := filepath.Join(t.TempDir(), "m")
			if err := os.WriteFile(q, edit(append([]byte(nil), orig...)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(q)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open = %v, want ErrDamaged", err)
			}
		})
	}
	// The trailer's counts are not covered by the checksum: a changed
	// entry count is caught by Open, the others at the end of the stream.
	q0 := filepath.Join(dir, "files")
	os.WriteFile(q0, bytes.Replace(orig, []byte(`"files":3`), []byte(`"files":4`), 1), 0o644)
	if _, err := readAll(t, q0); !errors.Is(err, ErrDamaged) {
		t.Errorf("changed file count: %v", err)
	}
	q := filepath.Join(dir, "count")
	os.WriteFile(q, bytes.Replace(orig, []byte(`"entries":4`), []byte(`"entries":3`), 1), 0o644)
	if _, err := Open(q); !errors.Is(err, ErrDamaged) {
		t.Errorf("changed entry count: %v", err)
	}
	// A newer version is refused with its own error.
	q = filepath.Join(dir, "v2")
	os.WriteFile(q, bytes.Replace(orig, []byte(`"version":1`), []byte(`"version":2`), 1), 0o644)
	if _, err := Open(q); !errors.Is(err, ErrNewerVersion) {
		t.Errorf("version 2: %v", err)
	}
}

func TestOutOfOrderRefused(t *testing.T) {
	// A manifest whose checksum is right but whose records are not in
	// walk order cannot be merge-joined: Next says so.
	p := writeManifest(t, t.TempDir(), "", "b", "a")
	_, err := readAll(t, p)
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("err = %v", err)
	}
}

func TestChangedWhileStreaming(t *testing.T) {
	dir := t.TempDir()
	paths := []string{""}
	for i := 0; i < 5000; i++ { // larger than the reader's buffer
		paths = append(paths, fmt.Sprintf("f%05d", i))
	}
	p := writeManifest(t, dir, paths...)
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := os.ReadFile(p)
	// Same length, one byte changed, after Open validated it.
	os.WriteFile(p, bytes.Replace(b, []byte(`"size":4001,`), []byte(`"size":4002,`), 1), 0o644)
	var last error
	for {
		_, err := r.Next()
		if err != nil {
			last = err
			break
		}
	}
	if !errors.Is(last, ErrDamaged) {
		t.Fatalf("end of stream = %v, want ErrDamaged", last)
	}
}

func TestAtomicRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m")
	os.WriteFile(p, []byte("keep"), 0o644)
	if _, err := CreateAtomic(p, false); !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v", err)
	}
	// Appearing while written: Commit refuses too, and leaves no temp.
	q := filepath.Join(dir, "q")
	f, err := CreateAtomic(q, false)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new")
	os.WriteFile(q, []byte("raced"), 0o644)
	if err := f.Commit(); !errors.Is(err, ErrExists) {
		t.Fatalf("commit = %v", err)
	}
	if b, _ := os.ReadFile(q); string(b) != "raced" {
		t.Errorf("existing file overwritten: %q", b)
	}
	// Replace works, Abort leaves nothing.
	f, _ = CreateAtomic(p, true)
	f.WriteString("new")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("replace: %q", b)
	}
	f, _ = CreateAtomic(filepath.Join(dir, "aborted"), false)
	f.Abort()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("left behind: %v", names)
	}
}

func TestCheckOutside(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	os.MkdirAll(filepath.Join(root, "USMT/File"), 0o755)
	os.Symlink(filepath.Join(root, "USMT"), filepath.Join(dir, "link"))
	for _, p := range []string{
		filepath.Join(root, "m"),
		filepath.Join(root, "USMT/File/m"),
		filepath.Join(dir, "link/m"),          // through a symlink
		filepath.Join(root, "USMT/../USMT/m"), // unclean
	} {
		if err := CheckOutside(p, []string{root}); !errors.Is(err, ErrInsideStore) {
			t.Errorf("%s: err = %v", p, err)
		}
	}
	if err := CheckOutside(filepath.Join(dir, "m"), []string{root}); err != nil {
		t.Errorf("outside: %v", err)
	}
	if err := CheckOutside(filepath.Join(dir, "storex/m"), []string{root}); err == nil || errors.Is(err, ErrInsideStore) {
		t.Errorf("missing folder: %v", err) // a sibling with the root as prefix is not inside; it just does not exist
	}
	// A symlink at the output path pointing into the store.
	os.Symlink(filepath.Join(root, "target"), filepath.Join(dir, "out"))
	if err := CheckOutside(filepath.Join(dir, "out"), []string{root}); !errors.Is(err, ErrInsideStore) {
		t.Errorf("symlink output: %v", err)
	}
	// A single-file store: the file itself is refused.
	arch := filepath.Join(dir, "a.usmtkit")
	os.WriteFile(arch, nil, 0o644)
	if err := CheckOutside(arch, []string{arch}); !errors.Is(err, ErrInsideStore) {
		t.Errorf("archive itself: %v", err)
	}
	if err := CheckOutside(filepath.Join(dir, "other"), []string{arch}); err != nil {
		t.Errorf("next to archive: %v", err)
	}
}

// countingStore counts Open calls per store path.
type countingStore struct {
	store.Store
	opens atomic.Int64
}

func (c *countingStore) Open(e *store.Entry) (store.File, error) {
	c.opens.Add(1)
	return c.Store.Open(e)
}

func TestHashWalk(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	s0, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	s := &countingStore{Store: s0}
	for _, threads := range []int{1, 3} {
		s.opens.Store(0)
		var items []Item
		var read atomic.Int64
		err := HashWalk(context.Background(), s, HashOptions{Threads: threads, Hash: true, ReadBytes: func(n int64) { read.Add(n) }},
			func(it *Item) error { items = append(items, *it); return nil })
		if err != nil {
			t.Fatal(err)
		}
		files, shared := 0, 0
		var unique int64
		for i, it := range items {
			if i > 0 && store.ComparePaths(items[i-1].Entry.StorePath, it.Entry.StorePath) >= 0 {
				t.Fatalf("out of order: %q then %q", items[i-1].Entry.StorePath, it.Entry.StorePath)
			}
			if it.Entry.Type != store.TypeFile {
				if it.Hashed {
					t.Errorf("%s: non-file hashed", it.Entry.StorePath)
				}
				continue
			}
			files++
			data, err := os.ReadFile(filepath.Join(sp, it.Entry.StorePath))
			if err != nil {
				t.Fatal(err)
			}
			if !it.Hashed || it.Hash != xxhash.Sum64(data) {
				t.Errorf("%s: hash %x (hashed %v), want %x", it.Entry.StorePath, it.Hash, it.Hashed, xxhash.Sum64(data))
			}
			if it.Shared {
				shared++
			} else {
				unique += it.Entry.Size
			}
		}
		// 11 user files + 2 control files; one hard-link pair.
		if files != fixtures.USMT4Expect.Files+2 || shared != 1 {
			t.Errorf("threads %d: %d files, %d shared", threads, files, shared)
		}
		if got := s.opens.Load(); got != int64(files-1) {
			t.Errorf("threads %d: %d opens for %d files with one hard-link pair", threads, got, files)
		}
		if read.Load() != unique {
			t.Errorf("read %d bytes, want %d (link group once)", read.Load(), unique)
		}
		read.Store(0)
	}
}

func TestHashWalkStopsOnError(t *testing.T) {
	sp := t.TempDir()
	for d := 0; d < 10; d++ {
		os.Mkdir(filepath.Join(sp, fmt.Sprint(d)), 0o755)
		for i := 0; i < 100; i++ {
			os.WriteFile(filepath.Join(sp, fmt.Sprint(d), fmt.Sprint(i)), []byte{byte(i)}, 0o644)
		}
	}
	s, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stop := errors.New("stop")
	n := 0
	err = HashWalk(context.Background(), s, HashOptions{Threads: 2, Hash: true}, func(it *Item) error {
		n++
		if n == 100 {
			return stop
		}
		return nil
	})
	if err != stop || n != 100 {
		t.Fatalf("err %v after %d items", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = HashWalk(ctx, s, HashOptions{Threads: 2, Hash: true}, func(it *Item) error {
		n++
		if n == 50 {
			cancel()
		}
		if it.Err() != nil {
			t.Errorf("%s: %v (a stopped read must not be reported)", it.Entry.StorePath, it.Err())
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v after %d", err, n)
	}
}

func TestReadHashDetectsShortAndLong(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("0123456789"), 0o644)
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Stat("f")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if h, err := ReadHash(s, e, buf, nil); err != nil || h != xxhash.Sum64String("0123456789") {
		t.Fatalf("hash %x err %v", h, err)
	}
	os.WriteFile(p, []byte("01234"), 0o644) // same inode, shorter
	if _, err := ReadHash(s, e, buf, nil); !errors.Is(err, store.ErrChanged) {
		t.Errorf("short: %v", err)
	}
	os.WriteFile(p, []byte("0123456789AB"), 0o644)
	if _, err := ReadHash(s, e, buf, nil); !errors.Is(err, store.ErrChanged) {
		t.Errorf("long: %v", err)
	}
}

// overwritingStore overwrites one real file of the store in place, with
// new bytes of the same size, while the hash walk is reading it: the
// writer races the reader at a fixed point, between its first and second
// block.
type overwritingStore struct {
	store.Store
	dir, target string
	done        atomic.Bool
}

func (o *overwritingStore) Open(e *store.Entry) (store.File, error) {
	f, err := o.Store.Open(e)
	if err != nil || e.StorePath != o.target {
		return f, err
	}
	return &overwritingFile{File: f, o: o}, nil
}

type overwritingFile struct {
	store.File
	o *overwritingStore
}

func (f *overwritingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if off == 0 && f.o.done.CompareAndSwap(false, true) {
		path := filepath.Join(f.o.dir, filepath.FromSlash(f.o.target))
		w, werr := os.OpenFile(path, os.O_WRONLY, 0)
		if werr == nil {
			_, werr = w.WriteAt(bytes.Repeat([]byte{'X'}, len(p)), 0)
			w.Close()
		}
		if werr != nil {
			panic(werr)
		}
	}
	return n, err
}

// TestHashWalkCatchesOverwrite: a same-size overwrite made while a file is
// read is reported as changed (store.ErrChanged), not hashed as if it
// were the file the walk listed.
func TestHashWalkCatchesOverwrite(t *testing.T) {
	dir := t.TempDir()
	target := "big.bin"
	if err := os.WriteFile(filepath.Join(dir, target), bytes.Repeat([]byte("abcdefgh"), 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.txt"), []byte("unchanged"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := store.DetectPlain(dir)
	if err != nil {
		t.Fatal(err)
	}
	s0, err := store.OpenDetected([]*store.Detection{d})
	if err != nil {
		t.Fatal(err)
	}
	defer s0.Close()
	s := &overwritingStore{Store: s0, dir: dir, target: target}
	var changed, ok []string
	err = HashWalk(context.Background(), s, HashOptions{Threads: 1, Hash: true}, func(it *Item) error {
		switch {
		case errors.Is(it.ReadErr, store.ErrChanged):
			changed = append(changed, it.Entry.StorePath)
		case it.ReadErr != nil:
			t.Errorf("%s: %v", it.Entry.StorePath, it.ReadErr)
		case it.Hashed:
			ok = append(ok, it.Entry.StorePath)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.done.Load() {
		t.Fatal("the racing write never happened")
	}
	if strings.Join(changed, ",") != target || strings.Join(ok, ",") != "other.txt" {
		t.Errorf("changed %v, hashed %v; want %s changed and other.txt hashed", changed, ok, target)
	}
}
