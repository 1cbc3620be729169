package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

const testChunk = MinChunkSize // small chunks: multi-chunk files stay cheap

var testMtime = time.Date(2021, 6, 7, 8, 9, 10, 987654321, time.UTC)

// testTree covers the cases docs/format.md names: empty files and dirs,
// sizes around the 512-byte padding and the chunk size, long Unicode and
// non-UTF-8 names, hard links whose first name in walk order is not the
// "original", symlinks, modes, and a FIFO (skipped).
func testTree() fixtures.Tree {
	c := testChunk
	return fixtures.Tree{
		"empty.txt":                 fixtures.File{Data: []byte{}},
		"emptydir":                  fixtures.Dir{Mtime: testMtime.Add(time.Hour)},
		"a/one.bin":                 fixtures.File{Data: []byte{7}},
		"a/511.bin":                 fixtures.File{Data: fixtures.PseudoRandom("511", 511)},
		"a/512.bin":                 fixtures.File{Data: fixtures.PseudoRandom("512", 512)},
		"a/513.bin":                 fixtures.File{Data: fixtures.PseudoRandom("513", 513)},
		"a/chunk-1.bin":             fixtures.File{Data: fixtures.PseudoRandom("c-1", c-1)},
		"a/chunk.bin":               fixtures.File{Data: fixtures.PseudoRandom("c", c)},
		"a/chunk+1.bin":             fixtures.File{Data: fixtures.PseudoRandom("c+1", c+1)},
		"a/big.bin":                 fixtures.File{Data: fixtures.PseudoRandom("big", 3*c+7), Mtime: testMtime},
		"a/text.txt":                fixtures.File{Data: fixtures.Text("text", 1<<20)},
		"a/ro.txt":                  fixtures.File{Data: []byte("read only\n"), Mode: 0o400},
		"a/sub":                     fixtures.Dir{Mode: 0o700, Mtime: testMtime},
		"a/sub/x.txt":               fixtures.File{Data: []byte("x\n")},
		"d1/d2/d3/deep.txt":         fixtures.File{Data: []byte("deep\n")},
		longUnicodePath():           fixtures.File{Data: fixtures.Text("long", 5000)},
		"bad\xffname/inner\xfe.txt": fixtures.File{Data: []byte("not utf-8\n")},
		"links/orig.txt":            fixtures.File{Data: fixtures.Text("orig", 70000)},
		"links/a-first.txt":         fixtures.Hardlink{Target: "links/orig.txt"},
		"links/z/third.txt":         fixtures.Hardlink{Target: "links/orig.txt"},
		"links/sym":                 fixtures.Symlink{Target: "orig.txt"},
		"links/dangling":            fixtures.Symlink{Target: "../nowhere"},
		"fifo":                      fixtures.FIFO{},
	}
}

func buildTestTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	fixtures.Build(t, dir, testTree())
	return dir
}

func TestRoundTrip(t *testing.T) {
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	path, res := writeArchive(t, src, WriteOptions{ChunkSize: testChunk, Threads: 2})
	if res.Files != 16 || res.Links != 2 || res.Symlinks != 2 || res.Dirs != 14 {
		t.Errorf("counts: %+v", res)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Path != "fifo" || len(res.Unreadable)+len(res.Changed)+len(res.WalkErrors) != 0 {
		t.Errorf("problems: %+v", res)
	}
	if fi, _ := os.Stat(path); fi.Size() != res.BytesOut {
		t.Errorf("BytesOut %d, file %d", res.BytesOut, fi.Size())
	}
	a := openArchive(t, path)
	compareStores(t, src, a)

	info := a.Info()
	if info.Kind != store.KindArchive || info.Version != ArchiveVersion(formatSingleFrame) || a.SourceKind() != store.KindPlain {
		t.Errorf("info %+v, source kind %q", info, a.SourceKind())
	}
	// Hard links: one inode, nlink 3, and Open of any name reads the content.
	var inos []uint64
	for _, p := range []string{"links/a-first.txt", "links/orig.txt", "links/z/third.txt"} {
		e, err := a.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if e.Nlink != 3 || e.Type != store.TypeFile {
			t.Errorf("%s: nlink %d type %v", p, e.Nlink, e.Type)
		}
		inos = append(inos, e.Ino)
	}
	if inos[0] != inos[1] || inos[1] != inos[2] {
		t.Errorf("hard link inodes differ: %v", inos)
	}
	// Lookup misses.
	for _, p := range []string{"nope", "a/one.bin/x", "links/zz", "a/sub/y"} {
		if _, err := a.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%q) = %v, want not-exist", p, err)
		}
	}
	// ReadDir is sorted and complete.
	kids, err := a.ReadDir("links")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range kids {
		names = append(names, k.Name())
	}
	if strings.Join(names, ",") != "a-first.txt,dangling,orig.txt,sym,z" {
		t.Errorf("ReadDir(links) = %v", names)
	}
	// Random reads across chunk boundaries.
	want, _ := os.ReadFile(filepath.Join(dir, "a/big.bin"))
	e, _ := a.Stat("a/big.bin")
	f, err := a.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		off := r.Int64N(int64(len(want)) + 10)
		n := r.IntN(3 * testChunk)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, off)
		end := min(off+int64(n), int64(len(want)))
		if off > int64(len(want)) {
			end = off
		}
		if got != int(end-off) || !bytes.Equal(buf[:got], want[off:end]) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", n, off, got, err)
		}
		if got < n && !errors.Is(err, io.EOF) {
			t.Fatalf("short read without EOF at %d: %v", off, err)
		}
	}
	// Everything verifies.
	var checked int
	if err := a.VerifyAll(context.Background(), func(p string, chunk int, err error) {
		checked++
		if err != nil {
			t.Errorf("verify %s chunk %d: %v", p, chunk, err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if checked < 30 {
		t.Errorf("VerifyAll checked only %d items", checked)
	}
}

// TestRoundTripAttrs checks creation time and Windows attributes survive,
// through the TOC and through the PAX records salvage reads.
func TestRoundTripAttrs(t *testing.T) {
	dir := buildTestTree(t)
	src := attrStore{openPlain(t, dir)}
	path, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, path)
	compareStores(t, src, a)
	n := 0
	_, err := Salvage(context.Background(), path, func(e *SalvagedEntry, _ io.Reader) error {
		st, err := src.Stat(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !e.HasAttrs || e.WinAttrs != st.WinAttrs || !e.HasBtime || e.BtimeNs != st.BtimeNs || e.MtimeNs != st.MtimeNs {
			t.Errorf("%s: salvage read attrs %x btime %d mtime %d, want %x %d %d", e.Path, e.WinAttrs, e.BtimeNs, e.MtimeNs, st.WinAttrs, st.BtimeNs, st.MtimeNs)
		}
		n++
		return nil
	})
	if err != nil || n == 0 {
		t.Fatal(err, n)
	}
}

// TestRoundTripUSMT4 archives the USMT 4 preset: Windows paths and control
// files come back through store.MapPath with the source kind.
func TestRoundTripUSMT4(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	src, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path, res := writeArchive(t, src, WriteOptions{})
	if res.Incomplete() {
		t.Errorf("problems: %+v", res)
	}
	a := openArchive(t, path)
	if a.SourceKind() != store.KindUSMTDir {
		t.Fatalf("source kind %q", a.SourceKind())
	}
	compareStores(t, src, a)
	if len(a.Info().Control) != len(src.Info().Control) || len(a.Info().Control) == 0 {
		t.Errorf("control files %+v, want %+v", a.Info().Control, src.Info().Control)
	}
	// store.Open finds the archive through the registry.
	s2, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Info().Kind != store.KindArchive {
		t.Errorf("store.Open kind %q", s2.Info().Kind)
	}
	info, err := Describe(path)
	if err != nil || !strings.Contains(info.Notes[0], "usmt-dir") {
		t.Errorf("Describe: %+v %v", info, err)
	}
}

// TestArchiveOfArchive: an archive is itself a store; archiving it again
// gives the same tree (this also exercises the writer on a non-directory
// source).
func TestArchiveOfArchive(t *testing.T) {
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	p1, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a1 := openArchive(t, p1)
	p2, res := writeArchive(t, a1, WriteOptions{ChunkSize: 2 * testChunk, Level: LevelFastest})
	if res.Incomplete() {
		t.Errorf("problems: %+v", res)
	}
	a2 := openArchive(t, p2)
	compareStores(t, src, a2)
}

// tarExtract runs GNU tar (or zstd | tar) on an archive into a new dir.
func tarExtract(t *testing.T, archive string, viaZstd bool, extra ...string) (dir, stderr string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "x")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if viaZstd {
		cmd = exec.Command("bash", "-c", `set -o pipefail; zstd -dc "$1" | tar -x -C "$2" "${@:3}"`, "x", archive, dir)
		cmd.Args = append(cmd.Args, extra...)
	} else {
		cmd = exec.Command("tar", append([]string{"--zstd", "-x", "-f", archive, "-C", dir}, extra...)...)
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	var eb bytes.Buffer
	cmd.Stderr = &eb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, eb.String())
	}
	return dir, eb.String()
}

// TestGNUTar: the real GNU tar and zstd restore the tree byte for byte,
// with ns mtimes, modes, symlinks, hard links and the non-UTF-8 name.
func TestGNUTar(t *testing.T) {
	requireTool(t, "tar", "zstd", "bash")
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	path, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	quiet := "--pax-option=delete=USMTZ.*,delete=LIBARCHIVE.*,delete=hdrcharset"
	t.Run("tar-zstd", func(t *testing.T) {
		x, stderr := tarExtract(t, path, false, quiet)
		if stderr != "" {
			t.Errorf("tar printed: %s", stderr)
		}
		compareDirs(t, dir, x)
	})
	t.Run("zstd-pipe", func(t *testing.T) {
		x, _ := tarExtract(t, path, true)
		compareDirs(t, dir, x)
	})
	t.Run("non-utf8-name", func(t *testing.T) {
		x, _ := tarExtract(t, path, false, quiet)
		b, err := os.ReadFile(filepath.Join(x, "bad\xffname", "inner\xfe.txt"))
		if err != nil || string(b) != "not utf-8\n" {
			t.Errorf("non-UTF-8 name not restored byte-exact: %v", err)
		}
	})
	t.Run("warnings-without-option", func(t *testing.T) {
		// Without the documented option GNU tar warns but succeeds.
		a := attrStore{openPlain(t, dir)}
		p2, _ := writeArchive(t, a, WriteOptions{ChunkSize: testChunk})
		_, stderr := tarExtract(t, p2, false)
		if !strings.Contains(stderr, "Ignoring unknown extended header keyword") {
			t.Errorf("expected the documented warning, got %q", stderr)
		}
		_, stderr = tarExtract(t, p2, false, quiet)
		if stderr != "" {
			t.Errorf("--pax-option did not silence tar: %q", stderr)
		}
	})
}

// TestHugeSparseFile: a file over 8 GiB needs the PAX size record; the
// source is sparse so the test costs time, not disk.
func TestHugeSparseFile(t *testing.T) {
	const size = 8<<30 + 12345
	dir := filepath.Join(t.TempDir(), "src")
	fixtures.Build(t, dir, fixtures.Tree{"huge.bin": fixtures.File{Size: size}, "after.txt": fixtures.File{Data: []byte("after\n")}})
	start := time.Now()
	src := openPlain(t, dir)
	path, res := writeArchive(t, src, WriteOptions{ChunkSize: MaxChunkSize, Level: LevelFastest})
	t.Logf("wrote %d GiB sparse in %v, archive %d bytes", size>>30, time.Since(start), res.BytesOut)
	a := openArchive(t, path)
	e, err := a.Stat("huge.bin")
	if err != nil || e.Size != size {
		t.Fatalf("stat: %+v %v", e, err)
	}
	f, _ := a.Open(e)
	buf := make([]byte, 100)
	if n, err := f.ReadAt(buf, size-50); n != 50 || !errors.Is(err, io.EOF) || !isZeros(buf[:50]) {
		t.Errorf("tail read %d %v", n, err)
	}
	// The header frame holds the PAX size (verifyHeader compares it).
	i, _ := a.lookup("", "huge.bin")
	if err := a.verifyHeader(i, e); err != nil {
		t.Error(err)
	}
	compareStores(t, src, a)
	t.Logf("total %v", time.Since(start))
}

// TestSparseWithData: holes are archived without being read, data between
// them byte for byte.
func TestSparseWithData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "src")
	fixtures.Build(t, dir, fixtures.Tree{"s.bin": fixtures.File{Size: 5 * testChunk}, "t.bin": fixtures.File{Size: 5*testChunk + 100}})
	data := fixtures.PseudoRandom("sparse", 5000)
	for _, n := range []string{"s.bin", "t.bin"} {
		f, err := os.OpenFile(filepath.Join(dir, n), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(data, testChunk+100)
		f.WriteAt(data, 5*testChunk-200)
		f.Close()
		os.Chtimes(filepath.Join(dir, n), testMtime, testMtime)
	}
	src := openPlain(t, dir)
	path, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, path)
	compareStores(t, src, a)
	if err := a.VerifyAll(context.Background(), func(p string, c int, err error) {
		if err != nil {
			t.Error(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	requireTool(t, "tar", "zstd")
	x, _ := tarExtract(t, path, false, "--pax-option=delete=USMTZ.*,delete=LIBARCHIVE.*")
	compareDirs(t, dir, x)
}

// TestEmptyStore: a store with only its root gives a valid archive with a
// tiny TOC (a regression test: a TOC under 1 KiB is a zstd frame whose
// window exceeds its size).
func TestEmptyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(dir, 0o755)
	path, res := writeArchive(t, openPlain(t, dir), WriteOptions{})
	if res.Entries != 1 || res.Dirs != 1 {
		t.Errorf("result %+v", res)
	}
	a := openArchive(t, path)
	if es := walkAll(t, a); len(es) != 1 || es[0].StorePath != "" || es[0].Type != store.TypeDir {
		t.Errorf("walk %+v", es)
	}
	if _, err := Describe(path); err != nil {
		t.Error(err)
	}
	rep := salvageAll(t, path)
	if rep.Intact != 0 || !rep.EndOfArchive || !rep.TOCFound {
		t.Errorf("salvage %+v", rep)
	}
}

func TestCreateFile(t *testing.T) {
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	outDir := t.TempDir()
	out := filepath.Join(outDir, "a.tar.zst")
	if _, err := CreateFile(context.Background(), out, src, WriteOptions{}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := CreateFile(context.Background(), out, src, WriteOptions{}, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output not refused: %v", err)
	}
	if _, err := CreateFile(context.Background(), out, src, WriteOptions{}, true); err != nil {
		t.Errorf("force: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CreateFile(ctx, filepath.Join(outDir, "b.tar.zst"), src, WriteOptions{}, false); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v", err)
	}
	ents, _ := os.ReadDir(outDir)
	if len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
	if _, err := CreateFile(context.Background(), out, src, WriteOptions{ChunkSize: 1000}, true); err == nil {
		t.Error("bad chunk size accepted")
	}
}

func TestIsInside(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "store/sub"), 0o755)
	os.Symlink(filepath.Join(root, "store"), filepath.Join(root, "link"))
	cases := []struct {
		p    string
		want bool
	}{
		{filepath.Join(root, "store"), true},
		{filepath.Join(root, "store/sub/new/a.tar.zst"), true},
		{filepath.Join(root, "link/a.tar.zst"), true},
		{filepath.Join(root, "store2/a.tar.zst"), false},
		{filepath.Join(root, "a.tar.zst"), false},
	}
	for _, c := range cases {
		got, err := IsInside(c.p, []string{filepath.Join(root, "store")})
		if err != nil || got != c.want {
			t.Errorf("IsInside(%s) = %v, %v", c.p, got, err)
		}
	}
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"fastest", "default", "better"} {
		l, err := ParseLevel(s)
		if err != nil || l.String() != s {
			t.Errorf("%s: %v %v", s, l, err)
		}
	}
	if _, err := ParseLevel("max"); err == nil {
		t.Error("bad level accepted")
	}
}

// TestHostileStore archives the hostile fixture: symlink loops and links
// out of the store are stored as links, FIFOs and sockets are skipped and
// listed, a path longer than PATH_MAX and 200 nested folders round-trip,
// and the salvage walk finds it all (internal/extract's salvage tests
// write it back).
func TestHostileStore(t *testing.T) {
	h := fixtures.Hostile(t, t.TempDir())
	src, err := store.Open(h.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var prog []Progress
	path, res := writeArchive(t, src, WriteOptions{Progress: func(p Progress) { prog = append(prog, p) }})
	skipped := map[string]bool{}
	for _, p := range res.Skipped {
		skipped[p.Path] = true
	}
	if !skipped[h.FIFO] || !skipped[h.Socket] || len(res.Skipped) != 2 {
		t.Errorf("skipped %v", res.Skipped)
	}
	if len(prog) == 0 || prog[len(prog)-1].BytesDone != res.BytesIn || prog[len(prog)-1].FilesDone != res.Files+res.Links {
		t.Errorf("progress %+v, result %+v", prog, res)
	}
	a := openArchive(t, path)
	compareStores(t, src, a)
	for _, p := range []string{h.LongPath, h.Deep, h.BadName, h.SymlinkSelf} {
		if _, err := a.Stat(p); err != nil {
			t.Errorf("%s: %v", p[:min(len(p), 80)], err)
		}
	}
	items, rep := salvageTree(t, path)
	if it := items[h.LongPath]; it == nil || string(it.data) != "far away\n" {
		t.Errorf("the long path did not come back from the salvage walk")
	}
	if rep.DamagedCount != 0 || rep.Intact != res.Entries-1 {
		t.Errorf("salvage %+v (entries %d)", rep, res.Entries)
	}
}

// TestConcurrentReads: many goroutines read random ranges of many files
// through a small cache (run with -race).
func TestConcurrentReads(t *testing.T) {
	dir := buildTestTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: testChunk})
	a, err := Open(path, ReaderOptions{CacheBytes: 3 * testChunk})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	names := []string{"a/big.bin", "a/text.txt", "a/chunk+1.bin", "links/orig.txt"}
	want := map[string][]byte{}
	for _, n := range names {
		want[n], _ = os.ReadFile(filepath.Join(dir, n))
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 200 {
				n := names[r.IntN(len(names))]
				e, err := a.Stat(n)
				if err != nil {
					done <- err
					return
				}
				f, _ := a.Open(e)
				w := want[n]
				off := r.Int64N(int64(len(w)))
				buf := make([]byte, r.IntN(2*testChunk)+1)
				k, err := f.ReadAt(buf, off)
				if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:k], w[off:off+int64(k)]) {
					done <- fmt.Errorf("%s at %d: %v", n, off, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if a.cache.used > 3*testChunk {
		t.Errorf("cache holds %d bytes, bound %d", a.cache.used, 3*testChunk)
	}
}
