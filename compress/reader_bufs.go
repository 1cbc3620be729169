package compress

import (
	"sync/atomic"
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
// only ever sees buffers of random reads, which are not pooled. When the
// count reaches 0 the buffer is returned, and the decodedBuf is never used
// again: an entry evicted while a read waited for its lock finds the
// count at 0 (tryRef fails) and decodes again.

// pooledChunkBytes is the size of a pooled buffer: a default chunk and
// the tar padding of a file's last chunk. (A variable for tests, which
// use small chunks.)
var pooledChunkBytes = DefaultChunkSize + 512

// maxFreeDecodedBufs bounds the free buffers kept (each pooledChunkBytes).
const maxFreeDecodedBufs = 2

var freeDecodedBufs = make(chan []byte, maxFreeDecodedBufs)

// decodedBufsReturned counts the buffers given back to freeDecodedBufs
// (tests: the list itself may be empty again by the time they look).
var decodedBufsReturned atomic.Int64

// decodedBuf is a pooled buffer with its users counted.
type decodedBuf struct {
	b    []byte
	refs atomic.Int32
}

// poolable reports whether a decode of want bytes goes into a pooled
// buffer: only sizes near the pooled size (a small chunk would hold a
// whole buffer).
func poolable(want int) bool { return want > pooledChunkBytes/2 && want <= pooledChunkBytes }

// newDecodedBuf returns a buffer of len want with one reference.
func newDecodedBuf(want int) *decodedBuf {
	cb := &decodedBuf{}
	select {
	case b := <-freeDecodedBufs:
		if cap(b) >= want {
			cb.b = b[:want]
			break
		}
		cb.b = make([]byte, want, pooledChunkBytes)
	default:
		cb.b = make([]byte, want, pooledChunkBytes)
	}
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
		select {
		case freeDecodedBufs <- cb.b[:cap(cb.b)]:
			decodedBufsReturned.Add(1)
		default:
		}
	}
}
