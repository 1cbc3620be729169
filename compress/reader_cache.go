package compress

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// chunkCache is an LRU of decoded chunks, whole, a prefix, or some of
// their frames, bounded in bytes: an entry counts the decoded bytes it
// holds (a 4 MiB chunk of which one 128 KiB frame was read counts 128
// KiB, so random reads keep 32 times more of what they decoded, and the
// frames found, than if it counted the chunk). Readers of one chunk take
// turns on the entry's lock, so a chunk is decoded once at a time and a
// later read that needs more of it decodes further. Chunks found damaged
// are remembered (not counted: a few bytes each).
type chunkCache struct {
	max int64

	mu     sync.Mutex
	closed bool // release ran: nothing is kept any more
	used   int64
	lru    *list.List // of *cacheEnt, front = most recent
	ents   map[uint32]*list.Element
	bad    map[uint32]error
}

type cacheEnt struct {
	c    uint32
	cost int64 // the bytes counted for it (under chunkCache.mu)

	mu   sync.Mutex // held while decoding
	data []byte     // decoded bytes: the whole chunk when done, else a prefix
	// pooled is data's buffer when it is a pooled one (reader_bufs.go);
	// owned holds the entry's reference to it until the entry leaves the
	// cache (remove takes it, under the cache's lock, not the entry's).
	pooled *decodedBuf
	owned  atomic.Pointer[decodedBuf]
	done   bool  // the whole chunk, verified
	err    error // damage found
	// A chunk of several frames (reader_frames.go): the frames found so
	// far and the decoded runs of frames that are not a prefix.
	frames []frameLoc
	spans  []span
	// own holds the entry's references to its spans' pooled buffers
	// (reader_bufs.go); released: the entry left the cache and dropped
	// them. Under ownMu, not mu: remove takes them under the cache's lock
	// while a reader may hold the entry's.
	ownMu    sync.Mutex
	own      []*decodedBuf
	released bool
}

// keep gives the entry the reference cb's caller holds for it, or drops
// it when the entry has left the cache.
func (ent *cacheEnt) keep(cb *decodedBuf) {
	ent.ownMu.Lock()
	if ent.released {
		ent.ownMu.Unlock()
		cb.unref()
		return
	}
	ent.own = append(ent.own, cb)
	ent.ownMu.Unlock()
}

// disown drops the entry's reference to cb, if it still holds one.
func (ent *cacheEnt) disown(cb *decodedBuf) {
	ent.ownMu.Lock()
	for i, o := range ent.own {
		if o == cb {
			ent.own = append(ent.own[:i], ent.own[i+1:]...)
			ent.ownMu.Unlock()
			cb.unref()
			return
		}
	}
	ent.ownMu.Unlock()
}

// release drops every reference the entry holds to pooled buffers (its
// whole chunk's and its spans'), for good: it has left the cache (or was
// never in it).
func (ent *cacheEnt) release() {
	ent.owned.Swap(nil).unref()
	ent.releaseSpans()
}

// releaseSpans drops the entry's references to its spans' buffers, for
// good: the entry has left the cache (or was never in it).
func (ent *cacheEnt) releaseSpans() {
	ent.ownMu.Lock()
	own := ent.own
	ent.own, ent.released = nil, true
	ent.ownMu.Unlock()
	for _, cb := range own {
		cb.unref()
	}
}

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{max: max, lru: list.New(), ents: map[uint32]*list.Element{}, bad: map[uint32]error{}}
}

// entry returns chunk c's entry, new or cached, and marks it recent; an
// entry that could not fit once decoded whole (size: the chunk's bytes),
// or any entry when there is no cache, is returned without being kept. A
// new entry counts nothing until resize. It fails with the damage already
// found in the chunk. Room for expect bytes (what the caller will probably
// decode into a new entry) is made first, so that the least recently used
// entries can be collected before the decode allocates.
func (cc *chunkCache) entry(c uint32, size, expect int64) (*cacheEnt, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if err := cc.bad[c]; err != nil {
		return nil, err
	}
	if el, ok := cc.ents[c]; ok {
		cc.lru.MoveToFront(el)
		return el.Value.(*cacheEnt), nil
	}
	ent := &cacheEnt{c: c}
	if cc.max < 0 || size > cc.max || cc.closed {
		return ent, nil
	}
	for cc.used+expect > cc.max && cc.lru.Len() > 0 {
		cc.remove(cc.lru.Back())
	}
	cc.ents[c] = cc.lru.PushFront(ent)
	return ent, nil
}

// resize counts what ent (whose lock the caller holds) now holds and
// drops the least recently used other entries while the cache is over
// its bound. An entry that is not in the cache gives up its reference to
// its pooled buffer here.
func (cc *chunkCache) resize(ent *cacheEnt) {
	held := int64(len(ent.data))
	for _, sp := range ent.spans {
		held += int64(len(sp.data))
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	el, ok := cc.ents[ent.c]
	if !ok || el.Value.(*cacheEnt) != ent {
		// Not kept, or dropped while it was being filled (before its
		// pooled buffer was recorded): nothing else will drop the entry's
		// reference to that buffer.
		ent.release()
		return
	}
	cc.used += held - ent.cost
	ent.cost = held
	for cc.used > cc.max && cc.lru.Back() != el {
		cc.remove(cc.lru.Back())
	}
}

func (cc *chunkCache) remove(el *list.Element) {
	ent := el.Value.(*cacheEnt)
	cc.lru.Remove(el)
	delete(cc.ents, ent.c)
	cc.used -= ent.cost
	ent.release()
}

// release drops every entry (their pooled buffers go back, reader_bufs.go)
// and keeps none from now on: the archive was closed, or dropped without
// Close. Reads still copying out of a buffer keep it until they finish.
func (cc *chunkCache) release() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.closed = true
	for cc.lru.Len() > 0 {
		cc.remove(cc.lru.Back())
	}
}

// forget drops ent, whose lock the caller holds, from the cache (it
// keeps using what the entry holds).
func (cc *chunkCache) forget(ent *cacheEnt) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if el, ok := cc.ents[ent.c]; ok && el.Value.(*cacheEnt) == ent {
		cc.remove(el)
		return
	}
	ent.release()
}

// has reports whether chunk c is cached (whole or in part).
func (cc *chunkCache) has(c uint32) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	_, ok := cc.ents[c]
	return ok
}

// damaged records that chunk c is damaged and drops its entry.
func (cc *chunkCache) damaged(c uint32, ent *cacheEnt, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.bad[c] = err
	if el, ok := cc.ents[c]; ok && el.Value.(*cacheEnt) == ent {
		cc.remove(el)
	}
}
