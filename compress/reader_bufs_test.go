package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
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
	if len(freeDecodedBufs) == 0 {
		t.Error("no decoded buffer came back to the free list")
	}
}
