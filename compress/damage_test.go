package compress

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5A
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// chunkOf returns the chunk record of chunk k of a file in an archive.
func chunkOf(t *testing.T, a *Archive, path string, k uint32) chunkRec {
	t.Helper()
	i, err := a.lookup("", path)
	if err != nil {
		t.Fatal(err)
	}
	first, n := a.t.chunkRange(i)
	if k >= n {
		t.Fatalf("%s has %d chunks", path, n)
	}
	return a.t.chunk(first + k)
}

// damagedArchive returns an archive of the test tree whose a/big.bin
// chunk 1 has one byte flipped in the middle of its frame.
func damagedArchive(t *testing.T) (dir, path string) {
	dir = buildTestTree(t)
	src := openPlain(t, dir)
	good, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, good)
	ch := chunkOf(t, a, "a/big.bin", 1)
	path = storetest.CopyToTemp(t, good)
	flipByte(t, path, int64(ch.off)+int64(ch.cSize)/2)
	return dir, path
}

// TestDamagedChunk: one flipped byte in a data frame fails exactly the
// reads that touch that chunk of that file.
func TestDamagedChunk(t *testing.T) {
	dir, path := damagedArchive(t)
	a := openArchive(t, path)
	for _, e := range walkAll(t, a) {
		if e.Type != store.TypeFile {
			continue
		}
		got, err := readAll(t, a, &e)
		if e.StorePath == "a/big.bin" {
			if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "a/big.bin") || !strings.Contains(err.Error(), "chunk 1 of 4") {
				t.Errorf("damaged file read: %v", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", e.StorePath, err)
			continue
		}
		want, _ := os.ReadFile(filepath.Join(dir, e.StorePath))
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs", e.StorePath)
		}
	}
	// Reads of the other chunks of the damaged file still work.
	e, _ := a.Stat("a/big.bin")
	f, _ := a.Open(e)
	want, _ := os.ReadFile(filepath.Join(dir, "a/big.bin"))
	buf := make([]byte, 1000)
	for _, off := range []int64{0, testChunk - 1000, 2 * testChunk, 3*testChunk + 7 - 1000} {
		if n, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], want[off:off+1000]) {
			t.Errorf("undamaged chunk read at %d: %v", off, err)
		}
	}
	var bad []string
	if err := a.VerifyAll(context.Background(), func(p string, chunk int, err error) {
		if err != nil {
			bad = append(bad, p+":"+string(rune('0'+chunk)))
			if !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("verify error does not wrap ErrCorrupt: %v", err)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(bad, ",") != "a/big.bin:1" {
		t.Errorf("VerifyAll found %v, want exactly a/big.bin chunk 1", bad)
	}
	// Salvage agrees: one damaged file, nothing lost.
	rep, err := Salvage(context.Background(), path, func(*SalvagedEntry, io.Reader) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if rep.DamagedCount != 1 || rep.Damaged[0].Path != "a/big.bin" || rep.LostCount != 0 || !rep.EndOfArchive || !rep.TOCFound {
		t.Errorf("salvage report %+v", rep)
	}
	if requireToolQuiet("tar", "zstd") {
		// GNU tar notices the damage on its own (the zstd frame checksum).
		x := t.TempDir()
		if err := runCmd("tar", "--zstd", "-xf", path, "-C", x); err == nil {
			t.Error("GNU tar extracted a damaged archive without an error")
		}
	}
}

// salvagedItem is what the salvage walk gave for one entry: its
// outcome as seen by the reader (intact: io.EOF after exactly Size good
// bytes) and its content.
type salvagedItem struct {
	e      SalvagedEntry
	data   []byte
	intact bool
}

// salvageTree runs the salvage walk and keeps every entry it yields, by
// store path. The writing of salvaged entries is internal/extract's
// (tested there); here the walk is checked on its own.
func salvageTree(t *testing.T, archive string) (map[string]*salvagedItem, *SalvageReport) {
	t.Helper()
	items := map[string]*salvagedItem{}
	rep, err := Salvage(context.Background(), archive, func(e *SalvagedEntry, r io.Reader) error {
		b, err := io.ReadAll(r)
		items[e.Path] = &salvagedItem{e: *e, data: b, intact: err == nil && int64(len(b)) == e.Size}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return items, rep
}

// sameSalvaged compares a salvaged entry with its source file: type,
// content (intact), mtime, symlink target; a hard link names a path of
// the same inode.
func sameSalvaged(t *testing.T, srcDir, rel string, it *salvagedItem) bool {
	t.Helper()
	var st unix.Stat_t
	p := filepath.Join(srcDir, rel)
	if it == nil || unix.Lstat(p, &st) != nil {
		return false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return it.e.Type == store.TypeDir && it.e.MtimeNs == st.Mtim.Nano()
	case unix.S_IFLNK:
		target, _ := os.Readlink(p)
		return it.e.Type == store.TypeSymlink && it.e.Link == target
	case unix.S_IFREG:
		if it.e.Hardlink {
			var ot unix.Stat_t
			return unix.Lstat(filepath.Join(srcDir, it.e.Link), &ot) == nil && ot.Ino == st.Ino
		}
		want, _ := os.ReadFile(p)
		return it.e.Type == store.TypeFile && it.intact && bytes.Equal(it.data, want) && it.e.MtimeNs == st.Mtim.Nano()
	}
	return false
}

// salvageCompare runs the salvage walk and checks every entry of the
// source tree came back intact (FIFOs and sockets are never archived).
// Damage after dataEnd (in the index) may show as lost ranges, nothing else.
func salvageCompare(t *testing.T, src, archive string, dataEnd int64) *SalvageReport {
	t.Helper()
	items, rep := salvageTree(t, archive)
	n := 0
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." || fi.Mode()&(os.ModeNamedPipe|os.ModeSocket|os.ModeDevice) != 0 {
			return nil
		}
		n++
		if !sameSalvaged(t, src, filepath.ToSlash(rel), items[filepath.ToSlash(rel)]) {
			t.Errorf("%s: not salvaged as it is in the source", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != n {
		t.Errorf("salvaged %d entries, the source has %d", len(items), n)
	}
	if rep.DamagedCount != 0 || rep.LostCount != 0 || !rep.EndOfArchive {
		t.Errorf("salvage report %+v", rep)
	}
	for _, l := range rep.LostRanges {
		if l.Offset < dataEnd {
			t.Errorf("lost range %+v inside the tar stream", l)
		}
	}
	return rep
}

func TestDamagedIndex(t *testing.T) {
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	good, res := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, good)
	tocOff := int64(a.ft.tocOffset)
	size := res.BytesOut

	t.Run("intact", func(t *testing.T) {
		rep := salvageCompare(t, dir, good, tocOff)
		if rep.Intact != res.Entries-1 || !rep.TOCFound {
			t.Errorf("intact %d, want %d", rep.Intact, res.Entries-1)
		}
	})
	cases := []struct {
		name    string
		damage  func(p string)
		wantErr error
	}{
		{"toc-byte", func(p string) { flipByte(t, p, tocOff+20) }, store.ErrCorrupt},
		{"toc-header", func(p string) { flipByte(t, p, tocOff+1) }, store.ErrCorrupt},
		{"footer-offset", func(p string) { flipByte(t, p, size-64) }, ErrNoIndex},
		{"footer-magic", func(p string) { flipByte(t, p, size-2) }, ErrNoIndex},
		{"no-footer", func(p string) { os.Truncate(p, size-footerSize) }, ErrNoIndex},
		{"no-index", func(p string) { os.Truncate(p, tocOff) }, ErrNoIndex},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := storetest.CopyToTemp(t, good)
			c.damage(p)
			_, err := Open(p, ReaderOptions{})
			if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), "usmtkit salvage") {
				t.Fatalf("Open = %v, want %v with a salvage hint", err, c.wantErr)
			}
			salvageCompare(t, dir, p, tocOff)
		})
	}
	t.Run("version", func(t *testing.T) {
		p := storetest.CopyToTemp(t, good)
		b, _ := os.ReadFile(p)
		ft := b[len(b)-footerSize+8:]
		binary.LittleEndian.PutUint32(ft[40:], FormatVersion+1)
		// Re-seal the footer checksum: this is a well-formed future archive.
		f := &footer{}
		f2, _ := parseFooterUnchecked(ft)
		*f = *f2
		copy(b[len(b)-footerSize:], f.marshal())
		os.WriteFile(p, b, 0o600)
		if _, err := Open(p, ReaderOptions{}); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "upgrade") {
			t.Errorf("Open = %v, want ErrVersion", err)
		}
	})
}

// parseFooterUnchecked reads footer fields without validation (tests only).
func parseFooterUnchecked(p []byte) (*footer, error) {
	le := binary.LittleEndian
	return &footer{tocOffset: le.Uint64(p[0:]), tocCSize: le.Uint64(p[8:]), tocUSize: le.Uint64(p[16:]),
		tocXXH: le.Uint64(p[24:]), entryCount: le.Uint64(p[32:]), version: le.Uint32(p[40:]), flags: le.Uint32(p[44:])}, nil
}

// TestTruncated cuts an archive at random points: every entry whose frames
// all lie before the cut comes back intact, nothing after it appears.
func TestTruncated(t *testing.T) {
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	good, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, good)
	// End offset of each entry's last frame.
	ends := map[string]int64{}
	for _, e := range walkAll(t, a) {
		if e.StorePath == "" {
			continue
		}
		i, _ := a.lookup("", e.StorePath)
		hdr := int64(binary.LittleEndian.Uint64(a.t.rec(i)[eHdrOff:]))
		n, _, err := zstdFrameLen(a.f, hdr, a.ft.tocOffset)
		if err != nil {
			t.Fatal(err)
		}
		end := hdr + n
		if first, cnt := a.t.chunkRange(i); a.t.typ(i) == tocFile && cnt > 0 {
			c := a.t.chunk(first + cnt - 1)
			end = int64(c.off) + int64(c.cSize)
		}
		ends[e.StorePath] = end
	}
	r := rand.New(rand.NewPCG(7, 7))
	cuts := []int64{1, 100, int64(a.ft.tocOffset) - 1}
	for range 8 {
		cuts = append(cuts, 1+r.Int64N(int64(a.ft.tocOffset)))
	}
	for _, cut := range cuts {
		p := storetest.CopyToTemp(t, good)
		os.Truncate(p, cut)
		items, rep := salvageTree(t, p)
		want := 0
		for sp, end := range ends {
			it := items[sp]
			if end <= cut {
				want++
				if !sameSalvaged(t, dir, sp, it) {
					t.Errorf("cut %d: %s (ends at %d) not intact", cut, sp, end)
				}
			} else if it != nil && it.e.Type == store.TypeFile && !it.e.Hardlink && it.intact {
				t.Errorf("cut %d: %s (ends at %d) came back intact", cut, sp, end)
			}
		}
		if rep.Intact != int64(want) || rep.LostCount != 0 || rep.DamagedCount > 1 {
			t.Errorf("cut %d: intact %d want %d, damaged %d, lost %d", cut, rep.Intact, want, rep.DamagedCount, rep.LostCount)
		}
	}
}

// TestWriteUnreadable archives a source whose file fails midway (a damaged
// archive is such a source): on a file output the entry is removed again,
// on a pipe it is kept zero-filled and marked, so reads report damage.
func TestWriteUnreadable(t *testing.T) {
	dir, path := damagedArchive(t)
	bad := openArchive(t, path)
	t.Run("file", func(t *testing.T) {
		out, res := writeArchive(t, bad, WriteOptions{ChunkSize: testChunk})
		if len(res.Unreadable) != 1 || res.Unreadable[0].Path != "a/big.bin" || !res.Incomplete() {
			t.Fatalf("result %+v", res)
		}
		a := openArchive(t, out)
		if _, err := a.Stat("a/big.bin"); err == nil {
			t.Error("the unreadable file is in the archive")
		}
		rep := salvageAll(t, out)
		if rep.DamagedCount != 0 || rep.LostCount != 0 || len(rep.LostRanges) != 0 {
			t.Errorf("the rewound archive is not clean: %+v", rep)
		}
		for _, e := range walkAll(t, a) {
			if e.Type == store.TypeFile {
				got, err := readAll(t, a, &e)
				want, _ := os.ReadFile(filepath.Join(dir, e.StorePath))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s: %v", e.StorePath, err)
				}
			}
		}
	})
	t.Run("pipe", func(t *testing.T) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "piped.tar.zst")
		done := make(chan error, 1)
		go func() {
			f, err := os.Create(out)
			if err == nil {
				_, err = io.Copy(f, pr)
				f.Close()
			}
			done <- err
		}()
		res, err := Write(context.Background(), pw, bad, WriteOptions{ChunkSize: testChunk})
		pw.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Unreadable) != 1 || !strings.Contains(res.Unreadable[0].Err.Error(), "zero-filled") {
			t.Fatalf("result %+v", res)
		}
		a := openArchive(t, out)
		e, err := a.Stat("a/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(t, a, e); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("reading the zero-filled file: %v", err)
		}
		// The tar stream stays consistent for standard tools.
		if requireToolQuiet("tar", "zstd") {
			if err := runCmd("tar", "--zstd", "-tf", out); err != nil {
				t.Errorf("tar -t: %v", err)
			}
		}
	})
}

func salvageAll(t *testing.T, path string) *SalvageReport {
	t.Helper()
	rep, err := Salvage(context.Background(), path, func(_ *SalvagedEntry, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// changingStore changes files on disk: before the walk reports them (so
// Open sees a different file) or right after the writer's first read (so
// the file changes while it is being read).
type changingStore struct {
	store.Store
	root       string
	beforeWalk map[string]func(path string)
	duringRead map[string]func(path string)
}

func (s changingStore) Walk(ctx context.Context, fn store.WalkFunc) error {
	return s.Store.Walk(ctx, func(e *store.Entry, err error) error {
		if c := s.beforeWalk[e.StorePath]; c != nil {
			c(filepath.Join(s.root, e.StorePath))
		}
		return fn(e, err)
	})
}

func (s changingStore) Open(e *store.Entry) (store.File, error) {
	f, err := s.Store.Open(e)
	if err != nil || s.duringRead[e.StorePath] == nil {
		return f, err
	}
	return &changingFile{File: f, change: func() { s.duringRead[e.StorePath](filepath.Join(s.root, e.StorePath)) }}, nil
}

type changingFile struct {
	store.File
	change func()
	done   bool
}

func (f *changingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	if !f.done {
		f.done = true
		f.change()
	}
	return n, err
}

func TestWriteChanged(t *testing.T) {
	dir := buildTestTree(t)
	orig, _ := os.ReadFile(filepath.Join(dir, "a/text.txt"))
	origBig, _ := os.ReadFile(filepath.Join(dir, "a/big.bin"))
	src := changingStore{Store: openPlain(t, dir), root: dir,
		beforeWalk: map[string]func(string){
			"a/ro.txt": func(p string) { os.Remove(p); os.Mkdir(p, 0o755) }, // replaced before Open
		},
		duringRead: map[string]func(string){
			"a/text.txt": func(p string) { // grows
				f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString("more")
				f.Close()
			},
			"a/big.bin": func(p string) { os.Truncate(p, 1000) },                  // shrinks
			"a/one.bin": func(p string) { os.Chtimes(p, time.Now(), time.Now()) }, // same size, new mtime
		}}
	out, res := writeArchive(t, src, WriteOptions{ChunkSize: testChunk, Threads: 1})
	got := map[string]string{}
	for _, p := range res.Changed {
		got[p.Path] = p.Err.Error()
		if !errors.Is(p.Err, store.ErrChanged) {
			t.Errorf("%s: %v does not wrap ErrChanged", p.Path, p.Err)
		}
	}
	if len(got) != 4 || !strings.Contains(got["a/big.bin"], "zero-filled") || !strings.Contains(got["a/ro.txt"], "not archived") {
		t.Errorf("changed: %v", got)
	}
	a := openArchive(t, out)
	if e, err := a.Stat("a/text.txt"); err != nil {
		t.Error(err)
	} else if b, err := readAll(t, a, e); err != nil || !bytes.Equal(b, orig) {
		t.Errorf("grown file not archived with its listed size: %v", err)
	}
	if e, err := a.Stat("a/big.bin"); err != nil {
		t.Error(err)
	} else if b, err := readAll(t, a, e); err != nil || len(b) != 3*testChunk+7 || !bytes.Equal(b[:testChunk], origBig[:testChunk]) || !isZeros(b[testChunk:]) {
		t.Errorf("shrunk file not zero-filled after what was read: %v", err)
	}
	if a.t.flags(mustLookup(t, a, "a/one.bin"))&entChanged == 0 {
		t.Error("changed flag not set in the TOC")
	}
	if _, err := a.Stat("a/ro.txt"); err == nil {
		t.Error("replaced file archived")
	}
	if requireToolQuiet("tar", "zstd") {
		if err := runCmd("tar", "--zstd", "-tf", out); err != nil {
			t.Errorf("tar -t: %v", err)
		}
	}
}

func mustLookup(t *testing.T, a *Archive, p string) uint32 {
	t.Helper()
	i, err := a.lookup("", p)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// TestSalvageGarbage: salvage resynchronises after junk between frames and
// names lost entries from a surviving TOC.
func TestSalvageGarbage(t *testing.T) {
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	good, _ := writeArchive(t, src, WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, good)
	i, _ := a.lookup("", "a/513.bin")
	hdr := int64(binary.LittleEndian.Uint64(a.t.rec(i)[eHdrOff:]))
	p := storetest.CopyToTemp(t, good)
	// Overwrite the start of a/513.bin's header frame: its entry is lost.
	f, _ := os.OpenFile(p, os.O_RDWR, 0)
	f.WriteAt(bytes.Repeat([]byte{0xEE}, 10), hdr)
	f.Close()
	rep := salvageAll(t, p)
	if rep.LostCount != 1 || rep.Lost[0].Path != "a/513.bin" || len(rep.LostRanges) == 0 || rep.DamagedCount != 0 {
		t.Errorf("report %+v", rep)
	}
}

func requireToolQuiet(names ...string) bool {
	for _, n := range names {
		if _, err := fixtures.LookTool(n); err != nil {
			return false
		}
	}
	return true
}

func runCmd(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}

// TestDamagedEndOfArchive: a flipped byte in the end-of-archive frame (the
// two tar zero blocks before the TOC) fails VerifyAll, as it fails zstd -t
// and GNU tar; an intact archive's end-of-archive frame passes.
func TestDamagedEndOfArchive(t *testing.T) {
	dir := buildTestTree(t)
	good, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: testChunk})
	a := openArchive(t, good)
	if err := a.verifyEndOfArchive(); err != nil {
		t.Fatalf("intact archive: %v", err)
	}
	tocOff := int64(a.ft.tocOffset)
	for _, back := range []int64{2, 6} { // the frame checksum, the block before it
		p := storetest.CopyToTemp(t, good)
		flipByte(t, p, tocOff-back)
		var bad []string
		err := openArchive(t, p).VerifyAll(context.Background(), func(path string, chunk int, err error) {
			if err != nil {
				if !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("not ErrCorrupt: %v", err)
				}
				bad = append(bad, path+"|"+err.Error())
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) != 1 || !strings.HasPrefix(bad[0], "|end-of-archive frame") {
			t.Errorf("flip at toc-%d: VerifyAll found %q, want only the end-of-archive frame", back, bad)
		}
		if requireToolQuiet("zstd") {
			if err := runCmd("zstd", "-t", "-q", p); err == nil {
				t.Errorf("flip at toc-%d: zstd -t passed, the oracle disagrees with the test", back)
			}
		}
	}
}

// TestFooterPointsTOCAtWholeFile: a footer (with a valid checksum) whose
// TOC frame covers the whole archive is refused after reading the frame's
// 8-byte header, not after reading the file.
func TestFooterPointsTOCAtWholeFile(t *testing.T) {
	dir := buildTestTree(t)
	good, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: testChunk})
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	ft, _ := parseFooterUnchecked(b[len(b)-footerSize+8:])
	ft.tocOffset = 0
	ft.tocCSize = uint64(len(b)-footerSize) - 8
	copy(b[len(b)-footerSize:], ft.marshal())
	c := &byteCountingReaderAt{r: bytes.NewReader(b)}
	_, _, err = readIndex(c, int64(len(b)), maxTOCCSize)
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("readIndex = %v, want ErrCorrupt", err)
	}
	if n := c.n; n > footerSize+8 {
		t.Errorf("read %d bytes of a %d-byte file before refusing the TOC", n, len(b))
	}
}

// byteCountingReaderAt counts the bytes read through it.
type byteCountingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *byteCountingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}
