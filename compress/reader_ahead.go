package compress

// Decoding ahead of sequential readers.
//
// A reader that walks a file forward (cp, a FUSE mount's readahead) asks
// for the chunk after the current one as soon as it has consumed this
// one, and then waits for its decode: about 2–3 ms per 4 MiB chunk here,
// during which nothing else happens for that reader. So when a sequential
// read enters a chunk, the next chunk of the file is decoded in the
// background, on another CPU, while the reader consumes this one; the
// reader that reaches it takes the cache entry's lock and waits for that
// one decode instead of starting its own. (A reader that gets to a chunk
// before the background does decodes it itself; the background then finds
// it locked or done and moves on.)
//
// Bounds: at most maxAhead decodes run ahead at once per archive (a
// reader that finds them busy decodes for itself, as before); each fills
// one cache entry, which the cache's byte bound counts like any other;
// no decode is started for a closed file, and one already running just
// finishes into the cache.

// maxAhead bounds the goroutines decoding ahead per archive: one keeps a
// second CPU busy without taking the first from the readers.
const maxAhead = 1

// aheadBytes is how far past a sequential read's end chunks are decoded
// ahead: at least one chunk, and as many small chunks (an archive written
// with --chunk-size 128KiB) as fill one 1 MiB FUSE request, the unit the
// kernel's readahead asks for.
const aheadBytes = 1 << 20

// decodeAhead starts decoding chunks k, k+1, ... of f (whole and
// verified, like any sequential read), up to aheadBytes, in the
// background; it skips chunks past the file's end, already cached or
// being decoded, and does nothing when the cache could not keep them next
// to the chunk being read.
func (a *Archive) decodeAhead(f *archiveFile, k int) {
	if k >= len(f.ends) || f.closed.Load() {
		return
	}
	c := f.first + uint32(k)
	cc := a.cache
	if cc.max < 2*int64(a.t.chunk(c).uSize) || cc.has(c) {
		return
	}
	select {
	case a.ahead <- struct{}{}:
	default:
		return
	}
	go func() {
		defer func() { <-a.ahead }()
		var done int64
		for ; k < len(f.ends) && (done == 0 || done < aheadBytes); k++ {
			if f.closed.Load() {
				return
			}
			c := f.first + uint32(k)
			cost := int64(a.t.chunk(c).uSize)
			done += cost
			ent, err := cc.entry(c, cost, cost)
			// TryLock: a chunk whose entry is locked is being decoded
			// (by a reader, who needs it now) or read.
			if err != nil || !ent.mu.TryLock() {
				continue
			}
			if !ent.done && ent.err == nil {
				// Errors need no handling here: damage is recorded in the
				// cache (fill), and a reader that needs the chunk meets it
				// or retries a failed read itself.
				_, _, _, _, cb, _ := a.fill(f, uint32(k), ent, 0, int(cost), true)
				cb.unref()
			}
			ent.mu.Unlock()
		}
	}()
}
