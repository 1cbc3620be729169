package compress

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// Open implements store.Store. A hard link opens its group's content.
func (a *Archive) Open(e *store.Entry) (store.File, error) {
	i, err := a.lookup("opening", e.StorePath)
	if err != nil {
		return nil, err
	}
	switch a.t.typ(i) {
	case tocFile, tocHardlink:
	default:
		return nil, &store.PathError{Op: "opening", Path: e.StorePath, Err: errors.New("not a regular file")}
	}
	g := a.t.linkTarget(i)
	first, n := a.t.chunkRange(g)
	f := &archiveFile{a: a, path: e.StorePath, idx: g, first: first, size: a.t.size(g)}
	f.next.Store(math.MinInt64 / 2) // no read yet: only offset 0 starts a walk
	f.ends = make([]int64, n)
	var end int64
	for k := uint32(0); k < n; k++ {
		end += int64(a.t.chunk(first + k).uSize)
		f.ends[k] = end
	}
	return f, nil
}

// archiveFile is an open file of an archive.
type archiveFile struct {
	a     *Archive
	path  string
	idx   uint32 // the link group's first name
	first uint32
	size  int64
	ends  []int64 // ends[k] = file offset just past chunk k
	// next is where the last read ended: a read starting near it is part
	// of a sequential walk (see ReadAtFresh).
	next atomic.Int64
	// walking: the last read was part of a sequential walk.
	walking atomic.Bool
	// closed stops decodes ahead that have not started yet.
	closed atomic.Bool
}

func (f *archiveFile) Size() int64 { return f.size }

// Close implements store.File. A decode ahead already running finishes
// into the cache (one chunk at most); none is started any more.
func (f *archiveFile) Close() error {
	f.closed.Store(true)
	return nil
}

// seqSlack is how far from the end of the previous read a read may start
// and still count as sequential: the kernel's readahead sends requests of
// up to 1 MiB, sometimes out of order.
const seqSlack = 1 << 20

// ReadAt serves any byte range: a binary search finds the first chunk, and
// each chunk comes from the cache or is decoded (see ReadAtFresh).
func (f *archiveFile) ReadAt(p []byte, off int64) (int, error) {
	return f.ReadAtFresh(p, off, nil)
}

// ReadAtFresh is ReadAt that also hands fresh, when it is not nil, the
// bytes of the file a random read decoded that a reader may ask for next
// (see fill: a decoded prefix of a chunk at once, a run of frames when a
// second read uses it; never the chunks of a sequential walk, whose next
// bytes the reader will ask for anyway): their file offset and the bytes,
// which are never modified afterwards and may be kept. The FUSE adapter
// gives them to the kernel's page cache.
//
// A read that continues a sequential walk (or starts at offset 0) decodes
// and verifies whole chunks. Any other read decodes a chunk only up to the end of the
// read (partial decode, docs/mount.md): the chunk's xxhash64 and zstd
// checksum are checked once a later read completes the chunk.
func (f *archiveFile) ReadAtFresh(p []byte, off int64, fresh func(off int64, data []byte)) (int, error) {
	_, n, err := f.read(p, off, fresh, false, nil)
	return n, err
}

// ReadSpan is ReadAtFresh without the copy when it can: if the bytes
// asked for lie in one chunk, it returns them as a slice of the decoded
// chunk (read-only: decoded data is never modified, and it may be kept,
// e.g. until a FUSE reply is written), else it fills p and returns p[:n].
// Whole chunks decoded for a sequential walk and frames decoded into
// pooled buffers are always copied into p: their buffers are reused
// (reader_bufs.go).
// A short result with io.EOF means the end of the file.
func (f *archiveFile) ReadSpan(p []byte, off int64, fresh func(off int64, data []byte)) ([]byte, error) {
	return f.ReadSpanTraced(p, off, fresh, nil)
}

// ReadTrace says where one read's time went: filled by ReadSpanTraced
// for the mount's request statistics (usmtkit mount --stats).
type ReadTrace struct {
	Walk     bool          // the read continued a sequential walk: whole chunks, verified
	Ahead    bool          // it asked for the next chunks to be decoded ahead
	Chunks   int           // chunks the read touched
	Hits     int           // of them, served from the cache without decoding
	LockWait time.Duration // waiting for chunk entries held by other reads or a decode ahead
	Decode   time.Duration // reading frames from the archive and decoding them
	// DecodeCPU is the CPU time the decoding thread used during Decode
	// (CLOCK_THREAD_CPUTIME_ID; a goroutine that moved to another thread
	// meanwhile is not counted): Decode much longer than DecodeCPU means
	// the decode waited (for a CPU, for page faults, for a P after a cgo
	// call), not that it had much work.
	DecodeCPU time.Duration
	Decoded   int64 // bytes decoded
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// ReadSpanTraced is ReadSpan that also fills tr (when it is not nil).
func (f *archiveFile) ReadSpanTraced(p []byte, off int64, fresh func(off int64, data []byte), tr *ReadTrace) ([]byte, error) {
	b, n, err := f.read(p, off, fresh, true, tr)
	if b == nil {
		b = p[:n]
	}
	return b, err
}

// read serves ReadAtFresh and ReadSpan; with span set, a read inside one
// chunk returns that chunk's bytes instead of copying them into p.
func (f *archiveFile) read(p []byte, off int64, fresh func(off int64, data []byte), span bool, tr *ReadTrace) ([]byte, int, error) {
	if off < 0 {
		return nil, 0, &store.PathError{Op: "reading", Path: f.path, Err: errors.New("negative offset")}
	}
	if off >= f.size {
		return nil, 0, io.EOF
	}
	if f.a.t.flags(f.idx)&entIncomplete != 0 {
		return nil, 0, &store.PathError{Op: "reading", Path: f.path, Err: fmt.Errorf("%w: the source could not be read completely when the archive was written; the archive holds zeros", store.ErrCorrupt)}
	}
	end := min(off+int64(len(p)), f.size)
	// Note where this read ends before decoding: the kernel sends the next
	// readahead request before this one is answered.
	prev := f.next.Swap(end)
	// A walk starts with a read at 0 or exactly where the last one ended;
	// a read near the previous one (the kernel's readahead requests, out
	// of order) continues a walk but never starts one: one random read in
	// ten of a 20 MiB file lands within seqSlack of the last, one in a
	// hundred does so twice in a row, and taking those for a walk cost a
	// whole-chunk decode and a decode ahead (10-18 ms, the mount bench's
	// random 4 KiB p99) instead of one frame.
	near := off >= prev-seqSlack && off <= prev+seqSlack
	walk := off == 0 || off == prev || near && f.walking.Load()
	f.walking.Store(walk)
	// A read at 0 starts a walk but decodes only what it needs, like a
	// random read: file managers and `file` read the first bytes of many
	// files to learn their type, and decoding whole chunks (and the next
	// one ahead) for that cost up to 8 MiB per file. A reader that goes on
	// continues the walk with its next read.
	seq := walk && off != 0
	k := searchEnds(f.ends, off)
	if seq {
		// Decode the chunk after the one this read ends in while the
		// reader consumes this one.
		f.a.decodeAhead(f, searchEnds(f.ends, end-1)+1)
	}
	if tr != nil {
		tr.Walk, tr.Ahead = walk, seq
	}
	want := int(end - off)
	n := 0
	for n < want && k < len(f.ends) {
		start := f.chunkStart(k)
		lo := int(off + int64(n) - start)
		need := int(min(end, f.ends[k]) - start)
		// data holds the chunk's bytes from chunk offset base on.
		data, base, feed, cb, err := f.a.chunkData(f, uint32(k), lo, need, seq, tr)
		if err != nil {
			return nil, n, err
		}
		if cb != nil {
			// A pooled buffer is copied out, never handed on.
			if feed >= 0 && feed < len(data) && fresh != nil && !seq {
				fresh(start+int64(base+feed), bytes.Clone(data[feed:]))
			}
			n += copy(p[n:], data[lo-base:need-base])
			cb.unref()
			k++
			continue
		}
		if feed >= 0 && feed < len(data) && fresh != nil && !seq {
			fresh(start+int64(base+feed), data[feed:])
		}
		if span && n == 0 && end <= f.ends[k] {
			b := data[lo-base : need-base : need-base]
			if len(b) < len(p) {
				return b, len(b), io.EOF
			}
			return b, len(b), nil
		}
		n += copy(p[n:], data[lo-base:need-base])
		k++
	}
	if n < len(p) {
		return nil, n, io.EOF
	}
	return nil, n, nil
}

func (f *archiveFile) chunkStart(k int) int64 {
	if k == 0 {
		return 0
	}
	return f.ends[k-1]
}

// searchEnds returns the chunk holding offset off.
func searchEnds(ends []int64, off int64) int {
	lo, hi := 0, len(ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ends[m] <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// chunkData returns the logical bytes lo..need of chunk k of a file
// (chunk offsets), from the cache or decoded: the whole chunk, verified,
// when full is set or need covers it; else the frames of the chunk that
// hold them (reader_frames.go) or, in a chunk of one frame, its first
// need bytes. data holds the chunk's bytes from chunk offset base on. feed
// is the index in data from which its bytes are to be offered to the
// kernel's page cache (ReadAtFresh), -1 for none. A chunk found damaged
// stays damaged: every later read of it fails the same way.
//
// When data is in a pooled buffer (reader_bufs.go), cb holds a reference
// to it that the caller drops (cb.unref) once done with data.
func (a *Archive) chunkData(f *archiveFile, k uint32, lo, need int, full bool, tr *ReadTrace) (data []byte, base, feed int, cb *decodedBuf, err error) {
	c := f.first + k
	size := int64(a.t.chunk(c).uSize)
	expect := size // what this read will probably decode
	if !full && a.ft.version > formatSingleFrame {
		expect = min(size, int64(a.t.frameSize))
	} else if !full {
		expect = min(size, int64(need))
	}
	ent, err := a.cache.entry(c, size, expect)
	if err != nil {
		return nil, 0, -1, nil, f.chunkError(k, err)
	}
	if tr == nil {
		ent.mu.Lock()
		defer ent.mu.Unlock()
		data, base, _, feed, cb, err = a.fill(f, k, ent, lo, need, full)
		return data, base, feed, cb, err
	}
	t0 := time.Now()
	ent.mu.Lock()
	defer ent.mu.Unlock()
	t1 := time.Now()
	c0 := threadCPU()
	data, base, from, feed, cb, err := a.fill(f, k, ent, lo, need, full)
	c1 := threadCPU()
	tr.Chunks++
	tr.LockWait += t1.Sub(t0)
	if from < 0 {
		tr.Hits++
	} else {
		d := time.Since(t1)
		tr.Decode += d
		if c := c1 - c0; c >= 0 && c <= d {
			tr.DecodeCPU += c
		}
		tr.Decoded += int64(len(data) - from)
	}
	return data, base, feed, cb, err
}

// fill is chunkData for an entry whose lock the caller holds; from is -1
// when nothing was decoded, else the index in data where the bytes not
// decoded before start (0 when the cache knew nothing of them). Whole
// chunks decoded for a sequential read (full) go into pooled buffers.
//
// What a random read decodes past its bytes is offered to the kernel's
// page cache (feed) at once when it is a prefix of a chunk (format version
// 1), but the frames of a version 2 chunk only when a second read uses
// them: handing 128 KiB to the kernel for every random 4 KiB read was a
// quarter of the server's CPU in the mount benchmark's random reads
// (docs/mount.md, third round), where few reads land near an earlier one,
// and a reader that does come back finds the frames in this cache.
func (a *Archive) fill(f *archiveFile, k uint32, ent *cacheEnt, lo, need int, full bool) (data []byte, base, from, feed int, cb *decodedBuf, err error) {
	c := f.first + k
	last := k == uint32(len(f.ends))-1
	if ent.err != nil {
		return nil, 0, -1, -1, nil, f.chunkError(k, ent.err)
	}
	if ent.pooled != nil && !ent.pooled.tryRef() {
		// The entry left the cache and its buffer was given back while
		// this read waited: decode again.
		ent.data, ent.done, ent.pooled = nil, false, nil
	}
	if len(ent.data) >= need && (ent.done || !full) {
		return ent.data, 0, -1, -1, ent.pooled, nil
	}
	ent.pooled.unref() // not used: a prefix is replaced below (pooled data is whole, done)
	pool := full
	// A read that does not cover the whole chunk decodes only its frames:
	// also one that ends at the chunk's end (a PDF or ZIP reader starts
	// with the last bytes of the file) or runs on into the next chunk.
	if !full && (lo > 0 || need < int(a.t.chunk(c).uSize)) && a.ft.version > formatSingleFrame {
		if sp, touched, ok := ent.spanFor(lo, need); ok {
			if feed = 0; touched {
				feed = -1 // offered already
			}
			if sp.cb == nil || sp.cb.tryRef() {
				return sp.data, sp.start, -1, feed, sp.cb, nil
			}
			// The entry left the cache while this read waited, and its
			// pooled spans were given back: decode again.
			ent.spans = nil
		}
		sp, ok, err := a.decodeFrames(c, last, f.size, ent, lo, need)
		if err != nil {
			return nil, 0, -1, -1, nil, a.chunkFailed(f, k, ent, err)
		}
		switch ok {
		case framesDecoded:
			if sp.cb != nil {
				sp.cb.refs.Add(1) // this read's; the one from newSpanBuf goes to the entry
			}
			ent.addSpan(sp)
			a.cache.resize(ent)
			return sp.data, sp.start, 0, -1, sp.cb, nil
		case framesTooMany:
			full = true
		}
		// framesOne: a chunk of one frame, decoded as before.
	}
	var newBuf *decodedBuf
	if pool {
		if want := a.decodedLen(c, last, f.size); poolable(want) {
			newBuf = newDecodedBuf(want)
		}
	}
	var done bool
	if newBuf != nil {
		data, err = a.decodeChunkInto(c, last, f.size, newBuf.b)
		done = err == nil
	} else {
		data, done, err = a.decodeRange(c, last, f.size, need, full)
	}
	if err != nil {
		newBuf.unref()
		return nil, 0, -1, -1, nil, a.chunkFailed(f, k, ent, err)
	}
	from = len(ent.data)
	ent.data, ent.done, ent.pooled = data, done, newBuf
	if done {
		ent.dropSpans()
	}
	if newBuf != nil {
		// The entry's reference, and one for this read.
		newBuf.refs.Add(1)
		ent.owned.Store(newBuf)
	}
	if !pool && done && from == 0 && lo == 0 {
		// One random read took the whole chunk (a small file read at
		// once; not a sequential reader or a decode ahead, whose next
		// reads need the chunk): the kernel keeps it in its page cache,
		// and keeping it here too held the cache full of files read once
		// (8 MiB of heap, 10-15 MiB of RSS with the collector's headroom,
		// while reading a whole mount: docs/mount.md, third round).
		a.cache.forget(ent)
		return data, 0, from, from, nil, nil
	}
	a.cache.resize(ent)
	return data, 0, from, from, newBuf, nil
}

// chunkFailed records damage found in chunk k (every later read of it
// fails the same way) and returns the error for the reader.
func (a *Archive) chunkFailed(f *archiveFile, k uint32, ent *cacheEnt, err error) error {
	if errors.Is(err, store.ErrCorrupt) {
		ent.err = err
		a.cache.damaged(f.first+k, ent, err)
	}
	return f.chunkError(k, err)
}

func (f *archiveFile) chunkError(k uint32, err error) error {
	ch := f.a.t.chunk(f.first + k)
	return &store.PathError{Op: "reading", Path: f.path,
		Err: fmt.Errorf("chunk %d of %d (archive offset %d): %w", k, len(f.ends), ch.off, err)}
}
