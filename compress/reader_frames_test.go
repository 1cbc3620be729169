package compress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

// testFrame cuts partialChunk chunks into 16 frames.
const testFrame = partialChunk / 16

// framedArchive writes the partial-decode test file (3 chunks and a bit)
// in chunks of 16 frames (format version 2).
func framedArchive(t *testing.T) (dir, path string, want []byte) {
	t.Helper()
	dir, want = partialTree(t)
	path, _ = writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: testFrame})
	return dir, path, want
}

// chunkFrames walks the frames of chunk k of a file the way a reader does.
func chunkFrames(t *testing.T, a *Archive, path string, k uint32) []frameLoc {
	t.Helper()
	ch := chunkOf(t, a, path, k)
	end := int64(ch.off) + int64(ch.cSize)
	fr := []frameLoc{{off: int64(ch.off)}}
	for fr[len(fr)-1].off < end {
		cur := fr[len(fr)-1]
		n, fcs, err := zstdFrameLen(a.f, cur.off, uint64(end))
		if err != nil {
			t.Fatal(err)
		}
		fr = append(fr, frameLoc{off: cur.off + n, u: cur.u + int32(fcs)})
	}
	return fr
}

// TestFramedChunks: a version 2 archive holds every chunk as frames of
// the frame size; random reads decode only the frames they touch and
// return the right bytes anywhere (inside a frame, across frames, across
// chunks, at the end of the file); a sequential read decodes and verifies
// whole chunks.
func TestFramedChunks(t *testing.T) {
	_, path, want := framedArchive(t)
	a := openArchive(t, path)
	if a.ft.version != FormatVersion || a.t.frameSize != testFrame || a.Info().Version != ArchiveVersion(2) {
		t.Fatalf("version %d, frame size %d, info %q", a.ft.version, a.t.frameSize, a.Info().Version)
	}
	for k := uint32(0); k < 4; k++ {
		fr := chunkFrames(t, a, "big.bin", k)
		ch := chunkOf(t, a, "big.bin", k)
		frames := (int(ch.uSize) + testFrame - 1) / testFrame
		if len(fr)-1 != frames {
			t.Errorf("chunk %d: %d frames, want %d", k, len(fr)-1, frames)
		}
	}

	f := openBig(t, a)
	// One 4 KiB read in the middle of chunk 1 decodes one frame.
	off := int64(partialChunk + 5*testFrame + 100)
	buf := make([]byte, 4096)
	if n, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], want[off:off+4096]) {
		t.Fatalf("read at %d: %d, %v", off, n, err)
	}
	ent, _ := a.cache.entry(f.first+1, partialChunk, 0)
	if ent.done || len(ent.data) != 0 || len(ent.spans) != 1 || ent.spans[0].start != 5*testFrame || len(ent.spans[0].data) != testFrame {
		t.Fatalf("after one read: done %v, prefix %d, spans %d", ent.done, len(ent.data), len(ent.spans))
	}
	// A read that ends at a chunk's end (like a PDF or ZIP reader's first
	// read, at the end of the file) decodes the chunk's last frame, not
	// the chunk.
	tail := make([]byte, 100)
	tailOff := int64(3*partialChunk - 100)
	if n, err := f.ReadAt(tail, tailOff); n != 100 || err != nil || !bytes.Equal(tail, want[tailOff:tailOff+100]) {
		t.Fatalf("read of chunk 2's last bytes: %d, %v", n, err)
	}
	lastEnt, _ := a.cache.entry(f.first+2, 0, 0)
	if lastEnt.done || len(lastEnt.spans) != 1 || lastEnt.spans[0].start != partialChunk-testFrame {
		t.Fatalf("after a read of chunk 2's last bytes: done %v, spans %d", lastEnt.done, len(lastEnt.spans))
	}
	// Random reads of every shape match the source.
	r := rand.New(rand.NewPCG(3, 4))
	for range 400 {
		off := r.Int64N(int64(len(want)))
		n := 1 + r.IntN(3*testFrame)
		if r.IntN(4) == 0 {
			n = 1 + r.IntN(2*partialChunk)
		}
		p := make([]byte, n)
		got, err := f.ReadAt(p, off)
		if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) > int64(len(want))) {
			t.Fatalf("read %d at %d: %v", n, off, err)
		}
		if !bytes.Equal(p[:got], want[off:off+int64(got)]) {
			t.Fatalf("read %d at %d: wrong bytes", n, off)
		}
	}
	// ReadSpan hands out a slice of a decoded frame run.
	b, err := f.ReadSpan(make([]byte, 100), int64(2*partialChunk+3*testFrame+7), nil)
	if err != nil || !bytes.Equal(b, want[2*partialChunk+3*testFrame+7:][:100]) {
		t.Fatalf("ReadSpan: %v", err)
	}
	// A sequential read of the whole file verifies every chunk.
	got, err := readAll(t, a, &store.Entry{StorePath: "big.bin"})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("whole read: %v", err)
	}
	if err := a.VerifyAll(context.Background(), func(p string, k int, err error) {
		if err != nil {
			t.Errorf("verify %s chunk %d: %v", p, k, err)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFramedDamage: a byte flipped in one frame fails the reads of that
// frame (its zstd checksum) and of the whole chunk, not the reads of the
// chunk's other frames before the damage is known; salvage names the file.
func TestFramedDamage(t *testing.T) {
	dir, good, want := framedArchive(t)
	a := openArchive(t, good)
	fr := chunkFrames(t, a, "big.bin", 1)
	path := storetest.CopyToTemp(t, good)
	flipByte(t, path, (fr[6].off+fr[7].off)/2) // inside frame 6 of chunk 1
	a = openArchive(t, path)
	f := openBig(t, a)
	buf := make([]byte, 4096)
	okOff := int64(partialChunk + 2*testFrame)
	if n, err := f.ReadAt(buf, okOff); err != nil || !bytes.Equal(buf[:n], want[okOff:okOff+4096]) {
		t.Fatalf("read of an intact frame of the damaged chunk: %v", err)
	}
	badOff := int64(partialChunk + 6*testFrame + 10)
	if _, err := f.ReadAt(buf, badOff); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "chunk 1 of 4") {
		t.Fatalf("read of the damaged frame: %v", err)
	}
	// Known damaged from now on, and the other chunks still read.
	if _, err := f.ReadAt(buf, okOff); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("read of a chunk known damaged: %v", err)
	}
	for _, off := range []int64{0, 2*partialChunk + 9*testFrame, 3 * partialChunk} {
		if n, err := f.ReadAt(buf, off); (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Errorf("undamaged chunk read at %d: %v", off, err)
		}
	}
	var bad []int
	if err := a.VerifyAll(context.Background(), func(p string, k int, err error) {
		if err != nil {
			bad = append(bad, k)
		}
	}); err != nil || len(bad) != 1 || bad[0] != 1 {
		t.Fatalf("verify: %v, damaged chunks %v", err, bad)
	}
	rep := salvageAll(t, path)
	if rep.DamagedCount != 1 || rep.Damaged[0].Path != "big.bin" {
		t.Fatalf("salvage: %+v", rep)
	}
	_ = dir
}

// TestFramedTools: GNU tar and zstd read a version 2 archive like any
// other (concatenated frames are plain zstd), and salvage restores it.
func TestFramedTools(t *testing.T) {
	requireTool(t, "tar", "zstd", "bash")
	dir, path, _ := framedArchive(t)
	x, stderr := tarExtract(t, path, false, "--pax-option=delete=USMTZ.*,delete=LIBARCHIVE.*,delete=hdrcharset")
	if stderr != "" {
		t.Errorf("tar printed: %s", stderr)
	}
	compareDirs(t, dir, x)
	x, _ = tarExtract(t, path, true)
	compareDirs(t, dir, x)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	salvageCompare(t, dir, path, fi.Size()-footerSize)
}

// TestFrameSizeOption: the frame size is checked, defaults to 128 KiB (or
// the chunk), and a frame as big as the chunk writes format version 1.
func TestFrameSizeOption(t *testing.T) {
	dir, _ := partialTree(t)
	src := openPlain(t, dir)
	for _, bad := range []WriteOptions{{FrameSize: MinChunkSize - 1}, {ChunkSize: partialChunk, FrameSize: 2 * partialChunk}} {
		if _, err := Write(context.Background(), nil, src, bad); err == nil || !strings.Contains(err.Error(), "frame size") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	for _, c := range []struct {
		opts      WriteOptions
		version   uint32
		frameSize uint32
	}{
		{WriteOptions{}, FormatVersion, DefaultFrameSize},
		{WriteOptions{ChunkSize: 128 << 10}, formatSingleFrame, 0},
		{WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk}, formatSingleFrame, 0},
	} {
		p, _ := writeArchive(t, src, c.opts)
		a := openArchive(t, p)
		if a.ft.version != c.version || a.t.frameSize != c.frameSize {
			t.Errorf("%+v: version %d frame size %d", c.opts, a.ft.version, a.t.frameSize)
		}
	}
}

// TestFramedHostileSizes: frames whose stated sizes do not add up to the
// chunk (a flipped Frame_Content_Size, or a frame header that says
// nothing) make the reads of that chunk fail as damage, never a panic or
// wrong bytes, and leave the other chunks readable.
func TestFramedHostileSizes(t *testing.T) {
	_, good, want := framedArchive(t)
	a := openArchive(t, good)
	fr := chunkFrames(t, a, "big.bin", 1)
	for _, c := range []struct {
		name  string
		patch func(b []byte, off int64)
		words string
	}{
		{"one-more-byte", func(b []byte, off int64) { b[fcsOffset(b, off)]++ }, "says it holds"},
		{"block-size", func(b []byte, off int64) { b[fcsOffset(b, off)+3] ^= 0x40 }, "frame"},
		{"no-size", func(b []byte, off int64) { b[off+4] &^= 0xC0 | 0x20 }, "frame 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := storetest.CopyToTemp(t, good)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c.patch(b, fr[3].off)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			a := openArchive(t, path)
			f := openBig(t, a)
			buf := make([]byte, 4096)
			off := int64(partialChunk + 5*testFrame + 10) // past the patched frame: the walk crosses it
			n, err := f.ReadAt(buf, off)
			if err == nil && !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
				t.Fatalf("wrong bytes without an error")
			}
			if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), c.words) {
				t.Fatalf("read past the patched frame: %v", err)
			}
			if _, err := readAll(t, a, &store.Entry{StorePath: "big.bin"}); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("whole read: %v", err)
			}
			if n, err := f.ReadAt(buf, 2*partialChunk+7); err != nil || !bytes.Equal(buf[:n], want[2*partialChunk+7:][:n]) {
				t.Fatalf("read of another chunk: %v", err)
			}
		})
	}
}

// fcsOffset is where the Frame_Content_Size field of the zstd frame at off
// starts (RFC 8878 3.1.1.1): after the magic, the descriptor, the window
// descriptor (absent in a single-segment frame) and the dictionary ID.
func fcsOffset(b []byte, off int64) int64 {
	d := b[off+4]
	pos := off + 5
	if d&0x20 == 0 {
		pos++
	}
	pos += []int64{0, 1, 2, 4}[d&3]
	return pos
}

// TestCheckFrameSize: a version 2 index must give a frame size in range,
// a version 1 index none.
func TestCheckFrameSize(t *testing.T) {
	for _, c := range []struct {
		version, frameSize uint32
		ok                 bool
	}{
		{1, 0, true}, {1, DefaultFrameSize, false},
		{2, DefaultFrameSize, true}, {2, MinChunkSize, true}, {2, MaxChunkSize, true},
		{2, 0, false}, {2, MinChunkSize - 1, false}, {2, MaxChunkSize + 1, false},
	} {
		err := checkFrameSize(&footer{version: c.version}, &toc{frameSize: c.frameSize})
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, store.ErrCorrupt)) {
			t.Errorf("version %d frame size %d: %v", c.version, c.frameSize, err)
		}
	}
}

// TestFramedConcurrentReads: goroutines reading one framed file at random
// (some through one open file, so their reads also start and break walks)
// with a cache that holds a few frames get the right bytes, and the cache
// stays within its bound (run with -race).
func TestFramedConcurrentReads(t *testing.T) {
	_, path, want := framedArchive(t)
	const bound = 5 * testFrame
	a, err := Open(path, ReaderOptions{CacheBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	shared := openBig(t, a)
	done := make(chan error)
	for g := range 8 {
		go func() {
			f := shared
			if g%2 == 0 {
				// Its own open file (openBig's t.Fatal is for the test's goroutine).
				e, err := a.Stat("big.bin")
				if err != nil {
					done <- err
					return
				}
				sf, err := a.Open(e)
				if err != nil {
					done <- err
					return
				}
				f = sf.(*archiveFile)
			}
			r := rand.New(rand.NewPCG(uint64(g), 11))
			for range 150 {
				off := r.Int64N(int64(len(want)))
				n := 1 + r.IntN(2*testFrame)
				if r.IntN(8) == 0 {
					n = 1 + r.IntN(partialChunk)
				}
				buf := make([]byte, n)
				var k int
				var err error
				if r.IntN(2) == 0 {
					k, err = f.ReadAt(buf, off)
				} else {
					var b []byte
					b, err = f.ReadSpan(buf, off, nil)
					k = copy(buf, b)
				}
				if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:k], want[off:off+int64(k)]) {
					done <- fmt.Errorf("read %d at %d: %d bytes, %v", n, off, k, err)
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
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	if a.cache.used > bound {
		t.Errorf("cache holds %d bytes, bound %d", a.cache.used, bound)
	}
}

// TestFramedFeedOnSecondRead: the frames a random read decodes are
// offered to the page cache (ReadAtFresh's fresh) only when a second read
// uses them, once, with the right bytes and offset.
func TestFramedFeedOnSecondRead(t *testing.T) {
	_, path, want := framedArchive(t)
	a := openArchive(t, path)
	f := openBig(t, a)
	var got [][2]int64
	read := func(off int64) {
		t.Helper()
		f.next.Store(math.MinInt64 / 2) // a random read, not a walk
		buf := make([]byte, 100)
		n, err := f.ReadAtFresh(buf, off, func(o int64, d []byte) {
			got = append(got, [2]int64{o, int64(len(d))})
			if !bytes.Equal(d, want[o:o+int64(len(d))]) {
				t.Errorf("fresh bytes at %d differ", o)
			}
		})
		if err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	frame := int64(partialChunk + 5*testFrame)
	read(frame + 1000)
	if len(got) != 0 {
		t.Fatalf("the first read offered %v", got)
	}
	read(frame + 9000)
	if len(got) != 1 || got[0] != [2]int64{frame, testFrame} {
		t.Fatalf("the second read offered %v, want the frame at %d", got, frame)
	}
	read(frame + 20000)
	if len(got) != 1 {
		t.Fatalf("a third read offered the frame again: %v", got)
	}
}

// TestWholeChunkReadNotKept: a random read that takes a whole chunk from
// its start (a small file read at once) leaves nothing in the cache, and
// reads of it again still return the right bytes; a read of part of a
// chunk keeps what it decoded.
func TestWholeChunkReadNotKept(t *testing.T) {
	dir := t.TempDir()
	small := fixtures.Text("s", 50_000)
	if err := (fixtures.Tree{"small.txt": fixtures.File{Data: small}}).Build(dir); err != nil {
		t.Fatal(err)
	}
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{})
	a := openArchive(t, path)
	e, err := a.Stat("small.txt")
	if err != nil {
		t.Fatal(err)
	}
	sf, err := a.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	f := sf.(*archiveFile)
	for range 2 {
		buf := make([]byte, 64<<10)
		n, err := f.ReadAt(buf, 0)
		if n != len(small) || !errors.Is(err, io.EOF) || !bytes.Equal(buf[:n], small) {
			t.Fatalf("whole read: %d, %v", n, err)
		}
		if cachedEnt(a, f.first) != nil {
			t.Fatal("a chunk read whole by one read stayed in the cache")
		}
	}
	// A read never writes past len(p).
	q := make([]byte, len(small), len(small)+1024)
	for i := range q[:cap(q)] {
		q[:cap(q)][i] = 0xEE
	}
	if n, err := f.ReadAt(q, 0); n != len(small) || err != nil || !bytes.Equal(q, small) {
		t.Fatalf("read into an exact buffer: %d, %v", n, err)
	}
	for _, c := range q[len(q):cap(q)] {
		if c != 0xEE {
			t.Fatal("a read wrote past the end of its buffer")
		}
	}
	f.next.Store(math.MinInt64 / 2)
	buf := make([]byte, 100)
	if n, err := f.ReadAt(buf, 1000); err != nil || !bytes.Equal(buf[:n], small[1000:1100]) {
		t.Fatalf("part read: %d, %v", n, err)
	}
	if cachedEnt(a, f.first) == nil {
		t.Fatal("a read of part of a chunk kept nothing")
	}
	// Damage in the chunk fails such a read, and the chunk stays damaged.
	ch := chunkOf(t, a, "small.txt", 0)
	bad := storetest.CopyToTemp(t, path)
	flipByte(t, bad, int64(ch.off)+int64(ch.cSize)/2)
	b := openArchive(t, bad)
	be, err := b.Stat("small.txt")
	if err != nil {
		t.Fatal(err)
	}
	bf, err := b.Open(be)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := bf.ReadAt(make([]byte, 64<<10), 0); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("whole read of a damaged chunk: %v", err)
		}
	}
}
