package compress

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

// partialChunk is large enough for many zstd blocks (128 KiB each) per
// chunk, so reads inside a chunk decode only part of it.
const partialChunk = 1 << 20

// partialTree writes one file of 3 chunks and a bit, mixing text (zstd
// compressed blocks) and random bytes (raw blocks), and returns the folder
// and the file's content.
func partialTree(t *testing.T) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	var b bytes.Buffer
	for b.Len() < 3*partialChunk+12345 {
		if r.IntN(2) == 0 {
			for range 2000 {
				b.WriteString("line of a migrated document, mostly the same words\n")
			}
		} else {
			junk := make([]byte, 70_000)
			for i := range junk {
				junk[i] = byte(r.Uint32())
			}
			b.Write(junk)
		}
	}
	data := b.Bytes()[:3*partialChunk+12345]
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, data
}

func openBig(t *testing.T, a *Archive) *archiveFile {
	t.Helper()
	e, err := a.Stat("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	f, err := a.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	return f.(*archiveFile)
}

// TestPartialDecode: a random read decodes a chunk only up to its end,
// a later read further in decodes further, a read that completes the
// chunk verifies it, and every byte read is right.
func TestPartialDecode(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, path)
	f := openBig(t, a)
	ent := func(k uint32) *cacheEnt {
		a.cache.mu.Lock()
		defer a.cache.mu.Unlock()
		if el, ok := a.cache.ents[f.first+k]; ok {
			return el.Value.(*cacheEnt)
		}
		return nil
	}
	read := func(off int64, n int) {
		t.Helper()
		buf := make([]byte, n)
		f.next.Store(math.MinInt64 / 2) // a random read, not a sequential walk
		var fresh []int64
		got, err := f.ReadAtFresh(buf, off, func(o int64, d []byte) {
			fresh = append(fresh, o, int64(len(d)))
			if !bytes.Equal(d, want[o:o+int64(len(d))]) {
				t.Errorf("fresh span at %d differs", o)
			}
		})
		if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:got], want[off:off+int64(got)]) {
			t.Fatalf("read %d at %d: %d bytes, %v", n, off, got, err)
		}
	}
	off := int64(partialChunk + 200_000) // chunk 1, block 2
	read(off, 4096)
	e := ent(1)
	if e == nil || e.done || len(e.data) < 200_000+4096 || len(e.data) >= partialChunk {
		t.Fatalf("after a random read: entry %v", e)
	}
	first := len(e.data)
	read(int64(partialChunk+700_000), 4096) // further in: decodes further
	if e := ent(1); e.done || len(e.data) <= first {
		t.Errorf("after a read further in: done %v, %d bytes (was %d)", e.done, len(e.data), first)
	}
	read(int64(partialChunk+50), 4096) // inside the prefix: no decode
	read(2*partialChunk-5000, 5000)    // completes chunk 1: verified
	if e := ent(1); !e.done || len(e.data) != partialChunk {
		t.Errorf("after the chunk's last bytes: done %v, %d bytes", e.done, len(e.data))
	}
	// Random reads of every size agree with the source.
	r := rand.New(rand.NewPCG(3, 3))
	for range 300 {
		off := r.Int64N(int64(len(want)))
		read(off, 1+r.IntN(300_000))
	}
	// Without a cache too.
	a2, err := Open(path, ReaderOptions{CacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.Close()
	f = openBig(t, a2)
	for range 50 {
		read(r.Int64N(int64(len(want))), 1+r.IntN(10_000))
	}
}

// TestPartialDamage: a flipped byte near the end of a chunk may go unseen
// by a read of the chunk's start (documented), is found by the read that
// completes the chunk, and from then on every read of that chunk fails.
func TestPartialDamage(t *testing.T) {
	dir, want := partialTree(t)
	good, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, good)
	ch := chunkOf(t, a, "big.bin", 1)
	path := storetest.CopyToTemp(t, good)
	flipByte(t, path, int64(ch.off)+int64(ch.cSize)-100)
	a = openArchive(t, path)
	f := openBig(t, a)
	buf := make([]byte, 4096)
	off := int64(partialChunk + 10)
	if n, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("read of the damaged chunk's start: %v", err)
	} else if err == nil && !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
		t.Fatalf("read of the damaged chunk's start returned wrong bytes without an error")
	}
	got, err := readAll(t, a, &store.Entry{StorePath: "big.bin"})
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "chunk 1 of 4") || !strings.Contains(err.Error(), "big.bin") {
		t.Fatalf("whole read: %v", err)
	}
	if len(got) > partialChunk {
		t.Errorf("whole read returned %d bytes, past the damaged chunk", len(got))
	}
	// Remembered: even the start of the chunk now fails.
	if _, err := f.ReadAt(buf, off); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("read of a chunk known damaged: %v", err)
	}
	// The other chunks still read.
	for _, off := range []int64{0, 2 * partialChunk, 3 * partialChunk} {
		if n, err := f.ReadAt(buf, off); (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Errorf("undamaged chunk read at %d: %v", off, err)
		}
	}
}

// TestCutFrame: the block walk refuses damaged headers.
func TestCutFrame(t *testing.T) {
	if _, err := cutFrame([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 10, 10); err == nil {
		t.Error("no error for a non-frame")
	}
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, path)
	ch := chunkOf(t, a, "big.bin", 0)
	frame := make([]byte, ch.cSize)
	if _, err := a.f.ReadAt(frame, int64(ch.off)); err != nil {
		t.Fatal(err)
	}
	// Needing every byte: the whole frame, or, when blocks are shorter
	// than the maximum (C zstd sizes blocks to the content), a cut whose
	// blocks decode to a correct prefix of the chunk (the reader decodes
	// the whole chunk when the prefix is too short).
	whole := append([]byte(nil), frame...)
	if cut, err := cutFrame(whole, partialChunk, partialChunk); err == nil {
		dec, derr := chunkDecoder()
		if derr != nil {
			t.Fatal(derr)
		}
		got, _ := dec.DecodeAll(whole[:cut], make([]byte, 0, partialChunk))
		if len(got) == 0 || !bytes.Equal(got, want[:len(got)]) {
			t.Errorf("need = chunk: the cut frame decodes to %d bytes that are not the chunk's start", len(got))
		}
	} else if err != errWholeFrame {
		t.Errorf("need = chunk: %v", err)
	}
	if _, err := cutFrame(append([]byte(nil), frame[:100]...), partialChunk/2, partialChunk); err != errNeedMore {
		t.Errorf("short read: %v", err)
	}
	if _, err := cutFrame(append([]byte(nil), frame...), 1, 12345); err == nil {
		t.Error("no error for a content size that is not the TOC's")
	}
}
