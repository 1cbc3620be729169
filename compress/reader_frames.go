package compress

// Chunks made of several frames (format version 2, docs/format.md §1).
//
// A chunk (4 MiB by default) is the unit of the TOC and of its xxhash64,
// but its bytes are cut into independent zstd frames (128 KiB by
// default). A zstd frame can only be decoded from its start, so a read in
// the middle of a one-frame chunk has to decode everything before it (up
// to 4 MiB, several milliseconds); with frames, a read decodes only the
// frames it touches. The TOC does not list the frames: they are found by
// walking their headers and block headers from the chunk's start
// (zstdFrameShape: one small read per frame of one block, nothing decoded), once per
// cache entry and only as far as a read needs. Each decoded frame is
// complete, so its zstd content checksum is checked; the chunk's xxhash64
// is checked when a read decodes the whole chunk.

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/usmtkit/usmtkit/store"
)

// frameLoc is where one frame of a chunk starts: its archive offset and
// the chunk offset of its first byte (the tar padding of a file's last
// chunk is counted). The entry after the last frame found is where the
// next one starts.
type frameLoc struct {
	off int64
	u   int32
	// What the walk learned of the frame that starts here (frameShape):
	// a frame of one raw or RLE block is read without the decoder.
	kind uint8
	body uint8
	sum  bool
}

// checkFrameSize: a version 2 archive's TOC must give the frame size
// (the walk checks every frame's size against it), a version 1 archive's
// must not.
func checkFrameSize(ft *footer, t *toc) error {
	if ft.version == formatSingleFrame {
		if t.frameSize != 0 {
			return fmt.Errorf("%w: a format version 1 index gives a frame size (%d)", store.ErrCorrupt, t.frameSize)
		}
		return nil
	}
	if t.frameSize < MinChunkSize || t.frameSize > MaxChunkSize {
		return fmt.Errorf("%w: the index gives no valid frame size (%d)", store.ErrCorrupt, t.frameSize)
	}
	return nil
}

// span is decoded bytes of a chunk, from chunk offset start on. touched:
// a read after the one that decoded it used it (its bytes are then offered
// to the kernel's page cache, see archiveFile.ReadAtFresh).
type span struct {
	start   int
	data    []byte
	touched bool
	cb      *decodedBuf // data's pooled buffer (reader_bufs.go), or nil
}

// maxChunkFrames bounds the frames a reader tracks in one chunk: a 64 MiB
// chunk of 64 KiB frames has 1024. A chunk with more (no usmtkit writes
// one) is decoded whole.
const maxChunkFrames = 1024

// rangePrefetcher is a reader that can fetch a byte range in one request
// ahead of the small reads that follow. The frame walk below reads a few
// bytes of every frame header of a chunk; from an object store
// (objstore.Reader) each 1 MiB block it touches would be one GET, so the
// rest of the chunk is asked for at once: one GET per random read.
type rangePrefetcher interface {
	Prefetch(off, n int64)
}

// Outcomes of decodeFrames.
const (
	framesDecoded = iota // the frames holding the bytes were decoded
	framesOne            // the chunk is one frame: decode a prefix instead
	framesTooMany        // over maxChunkFrames: decode the whole chunk
)

// decodeFrames decodes the frames of chunk c that hold its bytes lo..need
// (chunk offsets), finding them first (ent.frames, whose lock the caller
// holds, keeps what was found). The error wraps store.ErrCorrupt when the
// frames are damaged or are not the sizes the format gives them.
func (a *Archive) decodeFrames(c uint32, last bool, fileSize int64, ent *cacheEnt, lo, need int) (span, int, error) {
	ch := a.t.chunk(c)
	want := a.decodedLen(c, last, fileSize)
	if len(ent.frames) == 0 {
		ent.frames = a.frames.get(c)
	}
	fr, outcome, err := a.walkFrames(c, want, ent.frames, need)
	ent.frames = fr
	if err != nil || outcome != framesDecoded {
		return span{}, outcome, err
	}
	// fa: the frame holding lo; fb: the first frame boundary at or past need.
	fa, fb := 0, len(fr)-1
	for fa+1 < len(fr) && int(fr[fa+1].u) <= lo {
		fa++
	}
	for fb > fa+1 && int(fr[fb-1].u) >= need {
		fb--
	}
	from, to := int(fr[fa].u), int(fr[fb].u)
	// Room for a raw frame's checksum after its content (readFrames).
	var cb *decodedBuf
	var data []byte
	if spanPoolable(to - from) {
		cb = newSpanBuf(to - from)
		data = cb.b
	} else {
		data = make([]byte, to-from, to-from+4)
	}
	if err := a.readFrames(fr, fa, fb, data, true); err != nil {
		cb.unref()
		return span{}, 0, err
	}
	return span{start: from, data: data[:min(len(data), int(ch.uSize)-from)], cb: cb}, framesDecoded, nil
}

// walkFrames finds the frames of chunk c (want: its size with its tar
// padding) from the known ones on (fr; nil: none known yet) until they
// reach chunk offset need or the chunk's end, and returns them (the
// archive's memo keeps what was found). framesOne: the chunk is one
// frame; framesTooMany: over maxChunkFrames. The error wraps
// store.ErrCorrupt when the frames are damaged or are not the sizes the
// format gives them.
func (a *Archive) walkFrames(c uint32, want int, fr []frameLoc, need int) ([]frameLoc, int, error) {
	ch := a.t.chunk(c)
	end := int64(ch.off) + int64(ch.cSize)
	frameSize := int(a.t.frameSize) // in range: checkFrameSize at open
	if len(fr) == 0 {
		fr = []frameLoc{{off: int64(ch.off)}}
	}
	walked := len(fr)
	defer func() {
		if len(fr) > walked {
			a.frames.put(c, fr)
		}
	}()
	if cur := fr[len(fr)-1]; int(cur.u) < need && cur.off != end {
		if p, ok := a.f.(rangePrefetcher); ok {
			p.Prefetch(cur.off, end-cur.off)
		}
	}
	for {
		cur := &fr[len(fr)-1]
		if int(cur.u) >= need || cur.off == end {
			break
		}
		if len(fr) > maxChunkFrames {
			return fr, framesTooMany, nil
		}
		s, err := zstdFrameShape(a.f, cur.off, uint64(end))
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return fr, 0, fmt.Errorf("reading the archive: %w", err)
			}
			return fr, 0, fmt.Errorf("%w: frame %d of the chunk: %v", store.ErrCorrupt, len(fr)-1, err)
		}
		if s.fcs <= 0 {
			return fr, 0, fmt.Errorf("%w: frame %d of the chunk does not say its size", store.ErrCorrupt, len(fr)-1)
		}
		// Every frame holds the frame size, the chunk's last one the rest:
		// a frame that says otherwise would shift every later frame's
		// bytes to the wrong place in the file, with their checksums good.
		if exp := min(frameSize, want-int(cur.u)); s.fcs != int64(exp) {
			return fr, 0, fmt.Errorf("%w: frame %d of the chunk says it holds %d bytes, not %d", store.ErrCorrupt, len(fr)-1, s.fcs, exp)
		}
		cur.kind, cur.body, cur.sum = s.kind, s.body, s.sum
		fr = append(fr, frameLoc{off: cur.off + s.n, u: cur.u + int32(s.fcs)})
	}
	if tail := fr[len(fr)-1]; tail.off == end && int(tail.u) != want {
		return fr, 0, fmt.Errorf("%w: the chunk's frames hold %d bytes, the TOC says %d", store.ErrCorrupt, tail.u, want)
	}
	if len(fr) == 2 && int(fr[1].u) == want {
		return fr, framesOne, nil
	}
	return fr, framesDecoded, nil
}

// spanFor returns a decoded span that holds chunk bytes lo..need, and
// whether it was used before this call (it is marked used).
func (ent *cacheEnt) spanFor(lo, need int) (sp span, touched, ok bool) {
	for i := range ent.spans {
		if sp := &ent.spans[i]; sp.start <= lo && sp.start+len(sp.data) >= need {
			touched = sp.touched
			sp.touched = true
			return *sp, touched, true
		}
	}
	return span{}, false, false
}

// addSpan keeps a decoded span, dropping those it overlaps: the spans of
// an entry never overlap, so together they hold at most the chunk's size,
// which is what the cache counts for the entry. A pooled span's reference
// (from newSpanBuf) goes to the entry.
func (ent *cacheEnt) addSpan(sp span) {
	end := sp.start + len(sp.data)
	kept := ent.spans[:0]
	for _, o := range ent.spans {
		if o.start+len(o.data) <= sp.start || o.start >= end {
			kept = append(kept, o)
		} else if o.cb != nil {
			ent.disown(o.cb)
		}
	}
	ent.spans = append(kept, sp)
	if sp.cb != nil {
		ent.keep(sp.cb)
	}
}

// dropSpans forgets every span of the entry.
func (ent *cacheEnt) dropSpans() {
	for _, o := range ent.spans {
		if o.cb != nil {
			ent.disown(o.cb)
		}
	}
	ent.spans = nil
}

// frameMemo keeps the frame locations found in chunks (frameLoc lists,
// 16 bytes a frame) after their cache entries are evicted: a random read
// into a chunk whose entry is gone would otherwise walk the frame and
// block headers from the chunk's start again, a pread of a few bytes per
// header (19 % of the server's CPU in the mount benchmark's random 4 KiB
// reads). Bounded: at most maxMemoChunks chunks (about 0.5 KiB each with
// 4 MiB chunks of 128 KiB frames); when full, an arbitrary one is
// forgotten. The archive never changes while open, and every location
// kept was checked by the walk that found it.
type frameMemo struct {
	mu sync.Mutex
	m  map[uint32][]frameLoc
}

const maxMemoChunks = 8192

// get returns a copy of what is known about chunk c's frames, or nil.
func (fm *frameMemo) get(c uint32) []frameLoc {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if l := fm.m[c]; len(l) > 0 {
		return append([]frameLoc(nil), l...)
	}
	return nil
}

// put records the frames found in chunk c when they go further than what
// is known.
func (fm *frameMemo) put(c uint32, l []frameLoc) {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if len(fm.m[c]) >= len(l) {
		return
	}
	if fm.m == nil {
		fm.m = map[uint32][]frameLoc{}
	}
	if _, ok := fm.m[c]; !ok && len(fm.m) >= maxMemoChunks {
		for k := range fm.m {
			delete(fm.m, k)
			break
		}
	}
	fm.m[c] = append([]frameLoc(nil), l...)
}
