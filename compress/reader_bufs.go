package compress

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Reusing the buffers of whole decoded chunks.
//
// A sequential reader (and the decode ahead) decodes whole chunks, 4 MiB
// each by default. Decoding into a new buffer each time cost 10-11 ms per
// chunk on the benchmark machine against 1.7-1.8 ms into a buffer used
// before (docs/mount.md, the tail): a new buffer is zeroed and every page
// of it faulted in, and on a virtual machine a first touch is expensive.
// So whole-chunk decodes of sequential reads go into buffers from a small
// free list, and a buffer goes back to it when nobody uses it any more.
//
// Who uses a buffer is counted (decodedBuf.refs): the cache entry holding
// it (one reference, dropped when the entry leaves the cache) and each
// read copying out of it (a reference from fill to the end of the copy).
// Reads never hand a pooled buffer's bytes out of the package: ReadSpan
// copies them into the caller's buffer, and the page cache feed (fresh)
// gets a copy. When the
// count reaches 0 the buffer is returned, and the decodedBuf is never used
// again: an entry evicted while a read waited for its lock finds the
// count at 0 (tryRef fails) and decodes again.

// Where the big buffers live: outside the Go heap.
//
// Pooled chunk buffers (4 MiB) and compressed-frame buffers (a few
// compressed frames, reader_decode.go) are anonymous memory maps, not Go allocations. The
// collector lets the heap grow by GOGC % of what is live before it
// collects (75 % in a serving process): with these buffers in the heap,
// the 16 MiB chunk cache and the frame buffers alone let it grow by
// another 18 MiB, and a mount read through peaked at 110-124 MiB of RSS
// on a 2 GB store (docs/mount.md). Mapped, they cost what they are and no
// more; they are given back with munmap when the free list is full, and
// the reference counts below say exactly when a chunk buffer is free. A
// page of a map is only resident once touched, so a frame buffer mapped
// at the largest size costs the bytes of the frames read into it.
// Nothing here ever hands such a buffer's bytes out of the package (a use
// after munmap would fault, not read stale data).

// offHeap is a buffer mapped outside the Go heap, or (when the map
// failed) an ordinary slice.
type offHeap struct {
	b      []byte
	mapped bool
}

// mapBuf returns n bytes outside the Go heap, or on it if mmap fails.
// With populate, every page is made resident at once (MAP_POPULATE): a
// buffer that will be written whole then costs one call instead of a page
// fault per 4 KiB page. On the benchmark machine (a virtual machine) a
// decode into a new 4 MiB buffer took 10.7 ms against 1.7 ms into a
// reused one, and without MAP_POPULATE reading a whole mount was about
// 10 % slower than with heap buffers (docs/mount.md, memory, second
// round).
func mapBuf(n int, populate bool) offHeap {
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
	if populate {
		flags |= unix.MAP_POPULATE
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return offHeap{b: make([]byte, n)}
	}
	offHeapMapped.Add(int64(n))
	offHeapMaps.Add(1)
	return offHeap{b: b, mapped: true}
}

// free gives a mapped buffer back to the system (a heap one to the
// collector).
func (o offHeap) free() {
	if o.mapped {
		offHeapMapped.Add(-int64(cap(o.b)))
		_ = unix.Munmap(o.b[:cap(o.b)])
	}
}

// offHeapMapped counts the bytes mapped by mapBuf and not yet freed
// (tests check that nothing leaks).
var offHeapMapped atomic.Int64

// offHeapMaps counts the maps made (tests: buffers are reused).
var offHeapMaps atomic.Int64

// pooledChunkBytes is the size of a pooled buffer: a default chunk and
// the tar padding of a file's last chunk. (A variable for tests, which
// use small chunks.)
var pooledChunkBytes = DefaultChunkSize + 512

// maxFreeDecodedBufs bounds the free buffers kept (each pooledChunkBytes):
// one, for the next whole-chunk decode; a buffer freed while it is taken
// is unmapped.
const maxFreeDecodedBufs = 1

var freeDecodedBufs = make(chan offHeap, maxFreeDecodedBufs)

// decodedBufsReturned counts the buffers given back to freeDecodedBufs
// (tests: the list itself may be empty again by the time they look).
var decodedBufsReturned atomic.Int64

// decodedBuf is a pooled buffer with its users counted; pool is the free
// list it goes back to.
type decodedBuf struct {
	b    []byte
	mem  offHeap
	refs atomic.Int32
	pool chan offHeap
}

// Reusing the buffers of the frames random reads decode.
//
// A random read decodes one frame (128 KiB by default) into a buffer the
// cache keeps (a span, reader_frames.go). A new heap buffer for each cost
// a large allocation, zeroing it, and a garbage collection every few
// dozen reads; a run of the benchmark's random reads with reused buffers
// had a 99th percentile 20-40 % lower (docs/mount.md, third round). So
// spans of about a frame are decoded into pooled buffers counted like the
// chunk buffers above: the cache entry holds a reference to each of its
// spans (cacheEnt.own, dropped when the span is replaced or the entry
// leaves the cache), a read holds one while it copies out, and the page
// cache feed gets a copy.

// spanBufBytes is the size of a pooled span buffer: a default frame and
// the 4 bytes after it that a raw frame's checksum is read into
// (reader_raw.go).
const spanBufBytes = DefaultFrameSize + 4

// maxFreeSpanBufs bounds the free span buffers kept: the cache replaces
// what it evicts, so a few are enough.
const maxFreeSpanBufs = 8

var freeSpanBufs = make(chan offHeap, maxFreeSpanBufs)

// spanPoolable reports whether a span of n bytes (and 4 after them) is
// decoded into a pooled buffer: up to a default frame, and not so small
// that most of the buffer would lie idle in the cache.
func spanPoolable(n int) bool { return n+4 <= spanBufBytes && n > spanBufBytes/4 }

// newSpanBuf returns a pooled span buffer of len want with one reference.
func newSpanBuf(want int) *decodedBuf {
	cb := &decodedBuf{pool: freeSpanBufs}
	select {
	case cb.mem = <-freeSpanBufs:
	default:
		cb.mem = mapBuf(spanBufBytes, true)
	}
	cb.b = cb.mem.b[:want]
	cb.refs.Store(1)
	return cb
}

// poolable reports whether a decode of want bytes goes into a pooled
// buffer: only sizes near the pooled size (a small chunk would hold a
// whole buffer).
func poolable(want int) bool { return want > pooledChunkBytes/2 && want <= pooledChunkBytes }

// newDecodedBuf returns a buffer of len want with one reference.
func newDecodedBuf(want int) *decodedBuf {
	cb := &decodedBuf{pool: freeDecodedBufs}
	select {
	case m := <-freeDecodedBufs:
		if cap(m.b) >= want {
			cb.mem = m
			break
		}
		m.free()
		cb.mem = mapBuf(pooledChunkBytes, true)
	default:
		cb.mem = mapBuf(pooledChunkBytes, true)
	}
	cb.b = cb.mem.b[:want]
	cb.refs.Store(1)
	return cb
}

// tryRef takes a reference unless the buffer was already given back.
func (cb *decodedBuf) tryRef() bool {
	for {
		n := cb.refs.Load()
		if n <= 0 {
			return false
		}
		if cb.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// unref drops a reference; the last one gives the buffer back.
func (cb *decodedBuf) unref() {
	if cb == nil {
		return
	}
	if cb.refs.Add(-1) == 0 {
		m := cb.mem
		select {
		case cb.pool <- m:
			if cb.pool == freeDecodedBufs {
				decodedBufsReturned.Add(1)
			}
		default:
			m.free()
		}
	}
}
