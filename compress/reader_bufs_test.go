package compress

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

// TestPooledBuffers: sequential readers (whose whole-chunk decodes go into
// pooled buffers) and random readers of one file at once, with a cache of
// two chunks that keeps evicting and so recycling buffers, all read the
// right bytes, through ReadAt and ReadSpan (run with -race); and pooled
// buffers are really reused.
func TestPooledBuffers(t *testing.T) {
	old := pooledChunkBytes
	pooledChunkBytes = partialChunk + 512
	t.Cleanup(func() { pooledChunkBytes = old })
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: 128 << 10})
	before := decodedBufsReturned.Load()
	for _, cache := range []int64{2 * partialChunk, 3 * partialChunk} {
		a, err := Open(path, ReaderOptions{CacheBytes: cache})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f := openBig(t, a)
				defer f.Close()
				buf := make([]byte, 256<<10+g*999)
				check := func(off int64, got []byte, err error) bool {
					if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(got, want[off:off+int64(len(got))]) {
						t.Errorf("cache %d, reader %d at %d: %d bytes, %v", cache, g, off, len(got), err)
						return false
					}
					return true
				}
				for round := range 3 {
					if g%3 == 2 { // random reads
						r := rand.New(rand.NewPCG(uint64(g), uint64(round)))
						for range 40 {
							off := r.Int64N(f.size)
							n, err := f.ReadAt(buf[:4096], off)
							if !check(off, buf[:n], err) {
								return
							}
						}
						continue
					}
					for off := int64(0); off < f.size; {
						var got []byte
						var err error
						if g%3 == 0 {
							got, err = f.ReadSpan(buf, off, nil)
						} else {
							var n int
							n, err = f.ReadAt(buf, off)
							got = buf[:n]
						}
						if !check(off, got, err) || len(got) == 0 {
							return
						}
						// Scribble over the caller's buffer once read: it
						// must be a copy, never a pooled buffer's bytes.
						if g%3 == 1 {
							for i := range got {
								got[i] ^= 0xff
							}
						}
						off += int64(len(got))
					}
				}
			}()
		}
		wg.Wait()
		a.Close()
	}
	if decodedBufsReturned.Load() == before {
		t.Error("no decoded buffer came back to the free list")
	}
	// Closed archives give back every buffer mapped outside the heap: what
	// is left is the free lists.
	if got, most := offHeapMapped.Load(), int64(maxFreeDecodedBufs*pooledChunkBytes+maxPooledFrames*maxPooledFrameBytes+maxFreeSpanBufs*spanBufBytes); got > most {
		t.Errorf("%d bytes still mapped after the archives were closed, want at most the free lists' %d", got, most)
	}
}

// TestDroppedArchiveReleasesBuffers: an archive dropped without Close
// gives its cache's pooled buffers (mapped outside the Go heap) back once
// collected.
func TestDroppedArchiveReleasesBuffers(t *testing.T) {
	old := pooledChunkBytes
	pooledChunkBytes = partialChunk + 512
	t.Cleanup(func() { pooledChunkBytes = old })
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: 128 << 10})
	read := func() {
		a, err := Open(path, ReaderOptions{CacheBytes: 8 * partialChunk})
		if err != nil {
			t.Fatal(err)
		}
		f := openBig(t, a)
		got, err := io.ReadAll(io.NewSectionReader(f, 0, f.size))
		if err != nil || !bytes.Equal(got, want[:len(got)]) || int64(len(got)) != f.size {
			t.Fatalf("read %d bytes, %v", len(got), err)
		}
		f.Close()
		// a is dropped here without Close.
	}
	free := int64(maxFreeDecodedBufs*pooledChunkBytes + maxPooledFrames*maxPooledFrameBytes + maxFreeSpanBufs*spanBufBytes)
	for range 3 {
		read()
	}
	for range 20 {
		runtime.GC()
		if offHeapMapped.Load() <= free {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d bytes still mapped after the archives were collected, want at most the free lists' %d", offHeapMapped.Load(), free)
}

// countingReaderAt counts ReadAt calls.
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.n.Add(1)
	return c.r.ReadAt(p, off)
}

// TestFrameMemo: a random read into a chunk whose cache entry is gone
// does not walk the chunk's frame headers again (one ReadAt: the frame),
// and reads the right bytes.
func TestFrameMemo(t *testing.T) {
	dir, want := partialTree(t)
	path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: 128 << 10})
	a, err := Open(path, ReaderOptions{CacheBytes: -1}) // nothing kept
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cr := &countingReaderAt{r: a.f}
	a.f = cr
	f := openBig(t, a)
	off := int64(partialChunk - 5000) // the last frame of chunk 0
	buf := make([]byte, 4096)
	for i := range 2 {
		before := cr.n.Load()
		n, err := f.ReadAt(buf, off+int64(i))
		if err != nil || !bytes.Equal(buf[:n], want[off+int64(i):off+int64(i)+int64(n)]) {
			t.Fatalf("read %d: %d bytes, %v", i, n, err)
		}
		reads := cr.n.Load() - before
		if i == 0 && reads < 3 {
			t.Errorf("the first read made %d ReadAt calls: no walk?", reads)
		}
		if i == 1 && reads != 1 {
			t.Errorf("the second read made %d ReadAt calls, want 1 (the frame)", reads)
		}
	}
	if l := a.frames.get(f.first); len(l) < 8 {
		t.Errorf("%d frame locations remembered for chunk 0", len(l))
	}
}

// TestWindowedWholeChunk: whole chunks of several frames are decoded a
// window of frames at a time (decodeFramesInto), with the frame and chunk
// checks of a one-piece decode: every byte right, frames cut at every
// place by the window, and a byte flipped in a frame past the first
// window fails the chunk as damaged while the chunk before still reads.
func TestWindowedWholeChunk(t *testing.T) {
	dir, want := partialTree(t)
	for _, fs := range []int{64 << 10, 128 << 10} {
		path, _ := writeArchive(t, openPlain(t, dir), WriteOptions{ChunkSize: partialChunk, FrameSize: fs})
		a := openArchive(t, path)
		f := openBig(t, a)
		windowed := 0
		for k := range len(f.ends) {
			ch := a.t.chunk(f.first + uint32(k))
			if int(ch.cSize) <= a.frameWindow() {
				continue
			}
			windowed++
			got, err := a.decodeChunk(f.first+uint32(k), k == len(f.ends)-1, f.size)
			start := f.chunkStart(k)
			if err != nil || !bytes.Equal(got, want[start:f.ends[k]]) {
				t.Fatalf("frames of %d: chunk %d: %d bytes, %v", fs, k, len(got), err)
			}
		}
		if windowed == 0 {
			t.Fatalf("frames of %d: no chunk is over the %d-byte window: the test does not test it", fs, a.frameWindow())
		}
		// Sequential reads (whole chunks) give the whole file.
		got, err := io.ReadAll(io.NewSectionReader(f, 0, f.size))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frames of %d: sequential read: %d bytes, %v", fs, len(got), err)
		}

		// Damage in the last frames of chunk 1, past the first window.
		ch := a.t.chunk(f.first + 1)
		bad := storetest.CopyToTemp(t, path)
		flipByte(t, bad, int64(ch.off)+int64(ch.cSize)-200)
		b := openArchive(t, bad)
		g := openBig(t, b)
		if _, err := b.decodeChunk(g.first+1, false, g.size); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("frames of %d: damaged chunk 1 decoded: %v", fs, err)
		}
		buf := make([]byte, partialChunk)
		if n, err := g.ReadAt(buf, 0); err != nil || !bytes.Equal(buf[:n], want[:n]) {
			t.Errorf("frames of %d: chunk 0 of the damaged archive: %d bytes, %v", fs, n, err)
		}
		// Where the last read ended: a sequential read, whole chunk 1.
		if _, err := g.ReadAt(buf, partialChunk); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("frames of %d: sequential read of damaged chunk 1: %v", fs, err)
		}
	}
}

// TestSpanBufs: the frames random reads decode go into pooled buffers
// (reader_bufs.go) that are reused as the cache evicts them; reads from
// several goroutines, with a cache of half the file, get the right bytes
// (run with -race), a frame read twice is offered to the page cache as a
// copy, and a closed archive gives every span buffer back.
func TestSpanBufs(t *testing.T) {
	_, path, want := framedArchive(t)
	a, err := Open(path, ReaderOptions{CacheBytes: 2 * partialChunk}) // about half the file: entries are kept and evicted
	if err != nil {
		t.Fatal(err)
	}
	maps := offHeapMaps.Load()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := openBig(t, a)
			r := rand.New(rand.NewPCG(uint64(g), 9))
			buf := make([]byte, 4096)
			for range 300 {
				off := r.Int64N(int64(len(want)) - 4096)
				f.next.Store(math.MinInt64 / 2) // random, not a walk
				n, err := f.ReadAtFresh(buf, off, func(o int64, d []byte) {
					if !bytes.Equal(d, want[o:o+int64(len(d))]) {
						t.Errorf("fed bytes at %d differ", o)
					}
				})
				if err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
					t.Errorf("read at %d: %v", off, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// 1200 frame decodes: most into buffers used before (an entry
	// evicted with many spans gives back more than the free list keeps).
	if n := offHeapMaps.Load() - maps; n > 600 {
		t.Errorf("%d buffers mapped for 1200 random reads", n)
	}
	pooled := 0
	a.cache.mu.Lock()
	for _, el := range a.cache.ents {
		ent := el.Value.(*cacheEnt)
		ent.mu.Lock()
		for _, sp := range ent.spans {
			if sp.cb != nil {
				pooled++
			}
		}
		ent.mu.Unlock()
	}
	a.cache.mu.Unlock()
	if pooled == 0 {
		t.Error("no span in the cache is in a pooled buffer")
	}
	a.Close()
	most := int64(maxFreeDecodedBufs*pooledChunkBytes + maxPooledFrames*maxPooledFrameBytes + maxFreeSpanBufs*spanBufBytes)
	if got := offHeapMapped.Load(); got > most {
		t.Errorf("%d bytes still mapped after Close, want at most the free lists' %d", got, most)
	}
}
