package extract

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

var salvMtime = time.Date(2021, 6, 7, 8, 9, 10, 987654321, time.UTC)

// rawEntry is one tar entry of a hand-made archive stream.
type rawEntry struct {
	hdr  tar.Header
	data []byte
	// split > 0 writes the data as two frames, cut at split; the archive
	// offset of the second is then recorded in secondFrame.
	split int
}

// secondFrame is the archive offset and length of the second data frame
// of the last rawArchive entry written with a split.
var secondFrame [2]int

// rawArchive writes a stream in the archive layout (a header frame, a data
// frame with its padding, per entry; the end-of-archive frame) from any
// tar headers, without a TOC: the hostile input salvage must handle.
func rawArchive(t *testing.T, dir string, ents []rawEntry) string {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	var out []byte
	for _, e := range ents {
		var hb bytes.Buffer
		tw := tar.NewWriter(&hb)
		e.hdr.Format = tar.FormatPAX
		e.hdr.Size = int64(len(e.data))
		if e.hdr.ModTime.IsZero() {
			e.hdr.ModTime = salvMtime
		}
		if err := tw.WriteHeader(&e.hdr); err != nil {
			t.Fatal(err)
		}
		out = enc.EncodeAll(hb.Bytes(), out)
		if len(e.data) > 0 {
			pad := (512 - len(e.data)%512) % 512
			d := append(append([]byte(nil), e.data...), make([]byte, pad)...)
			if e.split > 0 {
				out = enc.EncodeAll(d[:e.split], out)
				n := len(out)
				out = enc.EncodeAll(d[e.split:], out)
				secondFrame = [2]int{n, len(out) - n}
			} else {
				out = enc.EncodeAll(d, out)
			}
		}
	}
	out = enc.EncodeAll(make([]byte, 1024), out)
	p := filepath.Join(dir, "raw.tar.zst")
	if err := os.WriteFile(p, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// salvageFile runs Salvage of the archive file p into dest.
func salvageFile(t *testing.T, p, dest string) *SalvageResult {
	t.Helper()
	res, err := Salvage(context.Background(), func(fn func(*compress.SalvagedEntry, io.Reader) error) (*compress.SalvageReport, error) {
		return compress.Salvage(context.Background(), p, fn)
	}, SalvageOptions{Dest: dest, Archive: p})
	if err != nil {
		t.Fatalf("salvage stopped: %v", err)
	}
	return res
}

// Salvage never writes outside DEST: absolute names and ".." are refused,
// a symlink is never created (so nothing is written through one), a hard
// link to a path outside is damaged (its data is not in DEST), and the
// good entries after them are written with their times.
func TestSalvageHostileEntries(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.Mkdir(outside, 0o755)
	p := rawArchive(t, base, []rawEntry{
		{hdr: tar.Header{Name: "../escape.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("x")},
		{hdr: tar.Header{Name: "/abs.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("x")},
		{hdr: tar.Header{Name: "a/../../b.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("x")},
		{hdr: tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}},
		{hdr: tar.Header{Name: "link/through.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("x")},
		{hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../outside/x"}},
		{hdr: tar.Header{Name: "ok/fine.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("fine")},
	})
	dest := filepath.Join(base, "dest")
	res := salvageFile(t, p, dest)
	if res.RefusedCount != 3 || res.NotWritten() != 3 {
		t.Errorf("refused %d: %+v", res.RefusedCount, res.Refused)
	}
	if res.Walk.DamagedCount != 1 || res.Walk.Damaged[0].Path != "hl" {
		t.Errorf("damaged %+v", res.Walk.Damaged)
	}
	if res.SkippedCount != 1 || !strings.Contains(res.Skipped[0].Error, "symlink to "+outside) {
		t.Errorf("skipped %+v", res.Skipped)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("salvage wrote outside the destination: %v", ents)
	}
	for _, n := range []string{"escape.txt", "abs.txt", "b.txt", "hl"} {
		if _, err := os.Lstat(filepath.Join(base, n)); err == nil {
			t.Errorf("%s escaped", n)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dest, "link")); err != nil || !fi.IsDir() {
		t.Errorf("link: %v (want the folder of link/through.txt, never a symlink)", err)
	}
	b, err := os.ReadFile(filepath.Join(dest, "ok/fine.txt"))
	if err != nil || string(b) != "fine" || mtimeOf(t, filepath.Join(dest, "ok/fine.txt")) != salvMtime.UnixNano() {
		t.Errorf("the good entry: %q %v", b, err)
	}
	if res.Intact != 2 { // ok/fine.txt and link/through.txt
		t.Errorf("intact %d, want 2", res.Intact)
	}
	if tmps := tmpsIn(t, dest); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

// A name longer than 255 bytes ("file name too long" on every Linux file
// system) is shortened as extract shortens it and written (it was refused
// before salvage wrote through extract's writer); a name already taken in
// DEST is listed as not written and the file there is left as it was;
// every later entry is written.
func TestSalvageGoesOn(t *testing.T) {
	base := t.TempDir()
	long := strings.Repeat("n", 300) + ".txt"
	p := rawArchive(t, base, []rawEntry{
		{hdr: tar.Header{Name: "a/" + long, Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("long")},
		{hdr: tar.Header{Name: "a/keep.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("from the archive")},
		{hdr: tar.Header{Name: "a/after.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("after")},
	})
	dest := filepath.Join(base, "dest")
	if err := os.MkdirAll(filepath.Join(dest, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(dest, "a", "keep.txt")
	if err := os.WriteFile(keep, []byte("already there"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(keep, old, old)
	res := salvageFile(t, p, dest)
	if res.NotWritten() != 1 || res.ConflictCount != 1 || !strings.Contains(res.Conflicts[0].Error, "already exists") {
		t.Fatalf("not written %d: %+v", res.NotWritten(), res.Conflicts)
	}
	short := shortenName(long, long)
	if res.EscapedCount != 1 || res.Escaped[0].Path != "a/"+long || res.Escaped[0].Written != "a/"+short {
		t.Errorf("escaped %+v", res.Escaped)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "a", short)); err != nil || string(b) != "long" {
		t.Errorf("the long name: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(keep); string(b) != "already there" || mtimeOf(t, keep) != old.UnixNano() {
		t.Errorf("the existing file was changed: %q", b)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "a", "after.txt")); err != nil || string(b) != "after" {
		t.Errorf("the entry after: %q, %v", b, err)
	}
	if res.Intact != 2 {
		t.Errorf("intact %d, want 2", res.Intact)
	}
}

// The hostile store archived and salvaged: the path longer than PATH_MAX
// and the 200-deep file are written, hard links stay hard links, symlinks
// are listed as skipped, FIFOs and sockets were never archived. A damaged
// data frame makes its file damaged, with the readable part kept.
func TestSalvageHostileStore(t *testing.T) {
	h := fixtures.Hostile(t, t.TempDir())
	src, err := store.Open(h.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	archive := filepath.Join(dir, "hostile.tar.zst")
	cres, err := compress.CreateFile(context.Background(), archive, src, compress.WriteOptions{}, false)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "out")
	res := salvageFile(t, archive, dest)
	if res.Walk.DamagedCount != 0 || res.Problems() != 0 || res.SkippedCount != 4 || res.Intact != cres.Entries-1-4 {
		t.Errorf("salvage: intact %d (entries %d), skipped %d, walk %+v, writer %+v", res.Intact, cres.Entries, res.SkippedCount, res.Walk, res.Result)
	}
	fd, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h.LongPath, "/")
	for i, c := range parts {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("long path, component %d: %v", i, err)
		}
		fd = next
	}
	buf := make([]byte, 64)
	n, _ := unix.Read(fd, buf)
	unix.Close(fd)
	if string(buf[:n]) != "far away\n" {
		t.Errorf("long path content %q", buf[:n])
	}
	if b, err := os.ReadFile(filepath.Join(dest, h.Deep)); err != nil || string(b) != "deep\n" {
		t.Errorf("deep file %q %v", b, err)
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(dest, fixtures.USMT4LinkA), &a)
	unix.Stat(filepath.Join(dest, fixtures.USMT4LinkB), &b)
	if a.Ino == 0 || a.Ino != b.Ino || res.HardLinks != 1 {
		t.Errorf("hard link not kept (%d links)", res.HardLinks)
	}

}

// A data frame that fails its checksum: the file is damaged (listed by
// the walk), its readable part is kept as NAME.usmtkit-damaged, never
// under its name, and the entries after it are written.
func TestSalvageDamagedKept(t *testing.T) {
	base := t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	p := rawArchive(t, base, []rawEntry{
		{hdr: tar.Header{Name: "d/hurt.bin", Typeflag: tar.TypeReg, Mode: 0o644}, data: data, split: 1024},
		{hdr: tar.Header{Name: "d/after.txt", Typeflag: tar.TypeReg, Mode: 0o644}, data: []byte("after")},
	})
	raw, _ := os.ReadFile(p)
	raw[secondFrame[0]+secondFrame[1]-2] ^= 0xFF // the frame checksum
	os.WriteFile(p, raw, 0o600)
	dest := filepath.Join(base, "dest")
	res := salvageFile(t, p, dest)
	if res.Walk.DamagedCount != 1 || res.Walk.Damaged[0].Path != "d/hurt.bin" || res.Kept["d/hurt.bin"] != "d/hurt.bin"+DamagedSuffix {
		t.Fatalf("damaged %+v kept %v", res.Walk.Damaged, res.Kept)
	}
	if res.DamagedCount != 0 || res.Intact != 1 {
		t.Errorf("the damage is listed once, by the walk: writer %d, intact %d", res.DamagedCount, res.Intact)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "d/hurt.bin"+DamagedSuffix)); err != nil || !bytes.Equal(b, data[:1024]) {
		t.Errorf("kept part: %d bytes, %v", len(b), err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "d/hurt.bin")); err == nil {
		t.Error("a damaged file is under its real name")
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "d/after.txt")); string(b) != "after" {
		t.Errorf("after: %q", b)
	}
}
