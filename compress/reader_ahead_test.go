package compress

import (
	"bytes"
	"errors"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// cachedEnt returns chunk c's cache entry, or nil.
func cachedEnt(a *Archive, c uint32) *cacheEnt {
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	if el, ok := a.cache.ents[c]; ok {
		return el.Value.(*cacheEnt)
	}
	return nil
}

// TestDecodeAhead: a sequential read of a chunk gets the next chunk
// decoded (whole, verified) in the background; the bytes are right. The
// first read, at 0, does not (it may be a peek at the file's type); the
// read that continues it does.
func TestDecodeAhead(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, path)
	f := openBig(t, a)
	buf := make([]byte, 64<<10)
	if n, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf[:n], want[:n]) {
		t.Fatalf("first read: %d, %v", n, err)
	}
	if e := cachedEnt(a, f.first); e == nil || e.done || cachedEnt(a, f.first+1) != nil {
		t.Fatalf("a read at 0 decoded its whole chunk or one ahead")
	}
	if n, err := f.ReadAt(buf, int64(len(buf))); err != nil || !bytes.Equal(buf[:n], want[len(buf):len(buf)+n]) {
		t.Fatalf("second read: %d, %v", n, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e := cachedEnt(a, f.first+1)
		if e != nil && e.mu.TryLock() {
			done := e.done
			e.mu.Unlock()
			if done {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("chunk 1 was not decoded ahead")
		}
		time.Sleep(time.Millisecond)
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, f.size))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sequential read: %d bytes, %v", len(got), err)
	}
	// A closed file starts no decode ahead.
	f2 := openBig(t, a)
	f2.Close()
	a.cache = newChunkCache(DefaultCacheBytes)
	a.decodeAhead(f2, 2)
	if cachedEnt(a, f2.first+2) != nil {
		t.Error("a closed file decoded ahead")
	}
}

// TestDecodeAheadConcurrent: readers walking the same file at once, and
// random readers, with decodes ahead running, all read the right bytes
// (run with -race).
func TestDecodeAheadConcurrent(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	for _, cache := range []int64{0, 3 * partialChunk, -1} {
		a, err := Open(path, ReaderOptions{CacheBytes: cache})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := openBig(t, a)
				defer f.Close()
				buf := make([]byte, 100_000+g*7777)
				for off := int64(0); off < f.size; {
					n, err := f.ReadAt(buf, off)
					if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
						t.Errorf("cache %d, reader %d at %d: %d bytes, %v", cache, g, off, n, err)
						return
					}
					off += int64(n)
				}
			}()
		}
		wg.Wait()
		a.Close()
	}
}

// TestReadSpan: a read inside one chunk is answered with the decoded
// chunk's bytes (no copy into p); one across chunks fills p; both are
// right and say io.EOF at the end.
func TestReadSpan(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, path)
	f := openBig(t, a)
	for _, c := range []struct {
		off   int64
		n     int
		inP   bool
		isEOF bool
	}{
		{0, 4096, false, false},
		{partialChunk + 1000, 100_000, false, false},
		{partialChunk - 100, 4096, true, false},
		{int64(len(want)) - 100, 4096, false, true},
		{2*partialChunk - 4096, 8192, true, false},
	} {
		p := make([]byte, c.n)
		f.next.Store(math.MinInt64 / 2)
		b, err := f.ReadSpan(p, c.off, nil)
		if c.isEOF != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
			t.Errorf("at %d: %v", c.off, err)
		}
		if !bytes.Equal(b, want[c.off:min(c.off+int64(c.n), int64(len(want)))]) {
			t.Errorf("at %d: wrong bytes (%d)", c.off, len(b))
		}
		if inP := len(b) > 0 && &b[0] == &p[0]; inP != c.inP {
			t.Errorf("at %d: answered from p: %v, want %v", c.off, inP, c.inP)
		}
	}
}

// TestNearRandomReads: random reads that land near the previous one are
// still decoded partially, however many in a row; a read that starts
// exactly where the last one ended starts a walk (whole chunk).
func TestNearRandomReads(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, path)
	f := openBig(t, a)
	buf := make([]byte, 4096)
	for i, off := range []int64{2*partialChunk + 300_000, 2*partialChunk + 100_000, 2*partialChunk + 150_000, 2*partialChunk + 150_000 + 4096} {
		if n, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Fatalf("read at %d: %v", off, err)
		}
		e := cachedEnt(a, f.first+2)
		if e == nil {
			t.Fatal("chunk 2 not cached")
		}
		e.mu.Lock()
		done := e.done
		e.mu.Unlock()
		if done != (i == 3) {
			t.Errorf("read %d: chunk decoded whole: %v", i, done)
		}
	}
}

// TestDecodePrefix: cut frames decode to a right prefix through the new
// header (rehead) and through the rewritten size (setFrameSize).
func TestDecodePrefix(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: partialChunk})
	a := openArchive(t, path)
	for k := uint32(0); k < 3; k++ {
		ch := chunkOf(t, a, "big.bin", k)
		frame := make([]byte, ch.cSize)
		if _, err := a.f.ReadAt(frame, int64(ch.off)); err != nil {
			t.Fatal(err)
		}
		base := int(k) * partialChunk
		for _, need := range []int{1, 130_000, 500_000, 900_000} {
			for _, viaSize := range []bool{false, true} {
				fr := append([]byte(nil), frame...)
				cut, est, lastHdr, err := cutFrameEst(fr, need, partialChunk)
				if err == errWholeFrame {
					continue
				}
				if err != nil {
					t.Fatalf("chunk %d need %d: %v", k, need, err)
				}
				fr[lastHdr] |= 1
				var got []byte
				if viaSize {
					if !setFrameSize(fr, est) {
						t.Fatalf("chunk %d: size not rewritten", k)
					}
					dec, _ := partialDecoder()
					got, err = dec.DecodeAll(fr[:cut], make([]byte, 0, est))
					if errors.Is(err, zstd.ErrFrameSizeMismatch) {
						err = nil
					}
				} else {
					got, err = decodePrefix(fr[:cut], est, partialChunk)
				}
				if err != nil || len(got) > est || !bytes.Equal(got, want[base:base+len(got)]) {
					t.Errorf("chunk %d need %d (size rewrite %v): %d bytes, %v", k, need, viaSize, len(got), err)
				}
			}
		}
	}
	if _, ok := rehead([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 10, 0, 0}, 10); ok {
		t.Error("rehead replaced a 6-byte header")
	}
}
