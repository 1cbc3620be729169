package compress

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/store"
)

// framePool holds buffers for compressed frames read from the archive; the
// decoded data is allocated fresh because the cache keeps it. It is a
// small free list rather than a sync.Pool: a sync.Pool is emptied by
// every garbage collection, which (with a chunk decoded every few
// milliseconds) made most frame reads allocate and zero a new buffer of up
// to a compressed chunk's size, a fifth of a random read's cost. The
// buffers are mapped outside the Go heap (reader_bufs.go), each at
// maxPooledFrameBytes (only the pages touched are resident). At most
// maxPooledFrames are kept; a decode that finds none free maps its own,
// which is unmapped when it is put back to a full list: so there are
// never more than one per decoding goroutine plus the free ones.
var framePool = frameBufs{free: make(chan offHeap, maxPooledFrames)}

// maxPooledFrames: one buffer (up to a compressed chunk, about 4 MiB at
// the default chunk size) for a reader's decode and one for the decode
// ahead that overlaps it: with one, the second of two overlapping decodes
// allocated a new buffer, and a new buffer's zeroing and page faults cost
// more than the decode (docs/mount.md, the tail); each kept buffer stays
// in memory.
const maxPooledFrames = 2

// maxPooledFrameBytes is the size of a pooled frame buffer: the frame of
// a default 4 MiB chunk, incompressible, fits. Bigger frames (archives
// with big chunks) get a heap buffer of their own that is not kept.
const maxPooledFrameBytes = 2 * DefaultChunkSize

// frameBufs is a bounded free list of frame buffers.
type frameBufs struct{ free chan offHeap }

// get returns a buffer of at least n bytes (len n).
func (p *frameBufs) get(n int) offHeap {
	if n > maxPooledFrameBytes {
		return offHeap{b: make([]byte, n)}
	}
	var m offHeap
	select {
	case m = <-p.free:
	default:
		m = mapBuf(maxPooledFrameBytes, false)
	}
	m.b = m.b[:n]
	return m
}

// put keeps a buffer from get for the next one, or frees it.
func (p *frameBufs) put(m offHeap) {
	if !m.mapped {
		return
	}
	select {
	case p.free <- m:
	default:
		m.free()
	}
}

// readFrame reads the first n bytes of chunk c's frame into a pooled
// buffer (len: the whole compressed chunk); put it back with
// framePool.put(bp).
func (a *Archive) readFrame(c uint32, n uint32) (bp offHeap, frame []byte, err error) {
	ch := a.t.chunk(c)
	bp = framePool.get(int(ch.cSize))
	frame = bp.b[:n]
	if _, err := a.f.ReadAt(frame, int64(ch.off)); err != nil {
		framePool.put(bp)
		return offHeap{}, nil, fmt.Errorf("reading the archive: %w", err)
	}
	if len(frame) < 4 || binary.LittleEndian.Uint32(frame) != zstdMagic {
		framePool.put(bp)
		return offHeap{}, nil, fmt.Errorf("%w: no zstd frame at the recorded offset", store.ErrCorrupt)
	}
	return bp, frame, nil
}

// decodedLen is what chunk c decodes to: its data and, in a file's last
// chunk, the file's tar padding (written in the same frames).
func (a *Archive) decodedLen(c uint32, last bool, fileSize int64) int {
	want := int(a.t.chunk(c).uSize)
	if last {
		want += int(tarPad(fileSize))
	}
	return want
}

// checkChunkSum checks chunk c's decoded data (its padding cut off)
// against the TOC's xxhash64, when the archive has them.
func (a *Archive) checkChunkSum(c uint32, data []byte) error {
	if a.ft.flags&flagChunkXXH != 0 && xxhash.Sum64(data) != a.t.chunk(c).sum {
		return fmt.Errorf("%w: xxhash64 mismatch", store.ErrCorrupt)
	}
	return nil
}

// decodeChunk reads, decodes and verifies one whole chunk frame. The error
// wraps store.ErrCorrupt when the data is damaged.
func (a *Archive) decodeChunk(c uint32, last bool, fileSize int64) ([]byte, error) {
	return a.decodeChunkInto(c, last, fileSize, nil)
}

// decodeChunkInto is decodeChunk into dst when it has room (len: the
// chunk's size and, in a file's last chunk, its tar padding), else into
// a new buffer.
func (a *Archive) decodeChunkInto(c uint32, last bool, fileSize int64, dst []byte) ([]byte, error) {
	ch := a.t.chunk(c)
	if a.ft.version > formatSingleFrame && int(ch.cSize) > a.frameWindow() {
		want := a.decodedLen(c, last, fileSize)
		if cap(dst) < want {
			dst = make([]byte, want)
		}
		data, err := a.decodeFramesInto(c, dst[:want])
		if err != errDecodeWhole {
			if err != nil {
				return nil, err
			}
			data = data[:ch.uSize]
			if err := a.checkChunkSum(c, data); err != nil {
				return nil, err
			}
			return data, nil
		}
	}
	bp, frame, err := a.readFrame(c, ch.cSize)
	if err != nil {
		return nil, err
	}
	defer framePool.put(bp)
	return a.checkChunk(c, last, fileSize, frame, dst)
}

// Whole chunks of several frames are read a window at a time.
//
// A whole-chunk decode used to read the chunk's compressed bytes (up to
// 4 MiB, 2.5 MiB on the benchmark store) into one buffer and decode them
// at once; the frame buffers kept (one per decoding goroutine, and the
// free ones) then held that many resident pages each. In a version 2
// archive the chunk is independent frames (128 KiB of data each by
// default): their headers are walked first (or taken from the archive's
// memo of them), frames stored raw are read into their place
// (reader_raw.go), the others are read a window of a few frames at a time
// and decoded into their place with their zstd checksums checked, and the
// chunk's xxhash64 is checked over the whole result as before.

// frameWindow is how many compressed bytes of a multi-frame chunk are
// read at a time: two frames, incompressible, and their headers.
func (a *Archive) frameWindow() int { return 2*int(a.t.frameSize) + 64<<10 }

// errDecodeWhole: a chunk of more frames than a reader tracks (not written
// the way usmtkit writes them); it is decoded in one piece.
var errDecodeWhole = errors.New("too many frames in the chunk")

// decodeFramesInto decodes the frames of chunk c into dst (len: the
// chunk's size with its tar padding). The error wraps store.ErrCorrupt
// when the frames are damaged or do not add up to dst.
func (a *Archive) decodeFramesInto(c uint32, dst []byte) ([]byte, error) {
	fr, outcome, err := a.walkFrames(c, len(dst), a.frames.get(c), len(dst))
	if err != nil {
		return nil, err
	}
	if outcome == framesTooMany {
		return nil, errDecodeWhole
	}
	ch := a.t.chunk(c)
	if tail := fr[len(fr)-1]; tail.off != int64(ch.off)+int64(ch.cSize) {
		return nil, fmt.Errorf("%w: the chunk's frames hold its %d bytes in %d of its %d compressed bytes", store.ErrCorrupt, len(dst), tail.off-int64(ch.off), ch.cSize)
	}
	// The chunk's xxhash64, checked by the caller, covers every byte of
	// the frames stored raw; without it their own checksums are checked.
	checkRaw := a.ft.flags&flagChunkXXH == 0
	if err := a.readFrames(fr, 0, len(fr)-1, dst[:len(dst):len(dst)], checkRaw); err != nil {
		return nil, err
	}
	return dst, nil
}

// checkChunk decodes and verifies chunk c from its frame, into dst when
// it has room (else into a new buffer).
func (a *Archive) checkChunk(c uint32, last bool, fileSize int64, frame, dst []byte) ([]byte, error) {
	want := a.decodedLen(c, last, fileSize)
	var data []byte
	var err error
	if cap(dst) >= want {
		data, err = decodeWholeFrameInto(frame, dst[:want])
	} else {
		data, err = decodeWholeFrame(frame, want)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	if len(data) != want {
		return nil, fmt.Errorf("%w: decoded %d bytes, expected %d", store.ErrCorrupt, len(data), want)
	}
	data = data[:a.t.chunk(c).uSize]
	if err := a.checkChunkSum(c, data); err != nil {
		return nil, err
	}
	return data, nil
}

// zstd frame layout used by partial decoding (RFC 8878 §3.1.1.2).
const (
	zstdBlockHeader   = 3
	zstdMaxBlockSize  = 128 << 10 // Block_Maximum_Size: no block decodes to more
	zstdBlockRaw      = 0
	zstdBlockRLE      = 1
	zstdBlockReserved = 3
)

// decodeRange decodes chunk c: whole and verified (done) when full is set
// or need covers the chunk; otherwise only the zstd blocks that hold its
// first need bytes.
//
// A partial decode reads the frame's block headers, keeps the blocks
// that cover need bytes (a block decodes to at most 128 KiB), marks the
// last kept block as the frame's last and decodes that shortened frame:
// every kept block is decoded and checked by the zstd decoder (block
// types and sizes, entropy tables and bitstreams, match offsets inside
// the window, output sizes), and the decoder then reports that the frame
// is shorter than its header says, which is the expected outcome. What a
// partial decode cannot check is the frame checksum and the chunk's
// xxhash64, which cover the whole chunk: bytes stored raw (incompressible
// data) or as raw literals are returned unchecked. They are checked, and
// the chunk reported damaged for good, when a read completes the chunk.
func (a *Archive) decodeRange(c uint32, last bool, fileSize int64, need int, full bool) ([]byte, bool, error) {
	ch := a.t.chunk(c)
	if full || need >= int(ch.uSize) {
		data, err := a.decodeChunk(c, last, fileSize)
		return data, err == nil, err
	}
	want := a.decodedLen(c, last, fileSize)
	// Read about as much of the frame as the data needed, with a margin;
	// all of it when the blocks turn out to be less dense.
	n := min(ch.cSize, uint32(uint64(ch.cSize)*uint64(need)/uint64(ch.uSize))+ch.cSize/16+64<<10)
	bp, frame, err := a.readFrame(c, n)
	if err != nil {
		return nil, false, err
	}
	defer framePool.put(bp)
	// cutFrameEst counts 128 KiB per compressed block, the most one holds;
	// an encoder that sizes blocks to the content (the C library does) makes
	// smaller ones, and the kept blocks then decode to less than need. The
	// next attempt scales the target by what the blocks really gave. Each
	// attempt changes the frame's header and a block header in place
	// (decodePrefix, the Last_Block bit): both are put back after it.
	var head [zstdMaxFrameHeader]byte
	headLen := copy(head[:], frame)
	target := need
	for attempt := 0; ; attempt++ {
		cut, est, lastHdr, err := cutFrameEst(frame, target, want)
		if err == errNeedMore && len(frame) < int(ch.cSize) {
			if _, err := a.f.ReadAt(bp.b[len(frame):ch.cSize], int64(ch.off)+int64(len(frame))); err != nil {
				return nil, false, fmt.Errorf("reading the archive: %w", err)
			}
			frame = bp.b[:ch.cSize]
			cut, est, lastHdr, err = cutFrameEst(frame, target, want)
		}
		if err == errWholeFrame {
			data, err := a.decodeChunk(c, last, fileSize)
			return data, err == nil, err
		}
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
		}
		saved := frame[lastHdr]
		frame[lastHdr] |= 1 // Last_Block
		data, err := decodePrefix(frame[:cut], min(est, want), want)
		frame[lastHdr] = saved
		copy(frame, head[:headLen])
		if err != nil {
			return nil, false, err
		}
		if len(data) >= need {
			return data[:min(len(data), int(ch.uSize))], false, nil
		}
		if attempt == 2 || len(data) == 0 {
			data, err := a.decodeChunk(c, last, fileSize)
			return data, err == nil, err
		}
		target = int(int64(target)*int64(need)/int64(len(data))) + zstdMaxBlockSize
	}
}

var (
	errNeedMore   = errors.New("the frame's block headers run past the bytes read")
	errWholeFrame = errors.New("the needed blocks are the whole frame")
)

// cutFrame finds the end of the first blocks of a zstd frame that decode
// to at least need bytes if every compressed block holds 128 KiB, and
// marks the last of them as the frame's last block (in frame, which the
// caller owns). want is the chunk's size with its tar padding: the frame
// header must say so.
func cutFrame(frame []byte, need, want int) (int, error) {
	cut, _, lastHdr, err := cutFrameEst(frame, need, want)
	if err == nil {
		frame[lastHdr] |= 1
	}
	return cut, err
}

// zstdMaxFrameHeader is the longest zstd frame header (RFC 8878 §3.1.1.1).
const zstdMaxFrameHeader = 18

// cutFrameEst is cutFrame without changing frame: it also returns the
// most the kept blocks can decode to (128 KiB per compressed block, at
// least need) and the offset of the last kept block's header, whose
// Last_Block bit the caller sets to decode frame[:cut].
func cutFrameEst(frame []byte, need, want int) (cut, est, lastHdr int, err error) {
	var h zstd.Header
	if err := h.Decode(frame); err != nil {
		return 0, 0, 0, err
	}
	if h.Skippable || !h.HasFCS || h.FrameContentSize != uint64(want) || h.HeaderSize <= 0 {
		return 0, 0, 0, fmt.Errorf("the frame header says %d bytes, the TOC %d", h.FrameContentSize, want)
	}
	pos, out := h.HeaderSize, 0
	for {
		if pos+zstdBlockHeader > len(frame) {
			return 0, 0, 0, errNeedMore
		}
		hdr := pos
		bh := uint32(frame[pos]) | uint32(frame[pos+1])<<8 | uint32(frame[pos+2])<<16
		typ, size := (bh>>1)&3, int(bh>>3)
		body := size
		switch typ {
		case zstdBlockRLE:
			body = 1
		case zstdBlockReserved:
			return 0, 0, 0, errors.New("reserved block type")
		}
		if size > zstdMaxBlockSize {
			return 0, 0, 0, fmt.Errorf("block of %d bytes", size)
		}
		pos += zstdBlockHeader + body
		if pos > len(frame) {
			return 0, 0, 0, errNeedMore
		}
		if bh&1 != 0 {
			return 0, 0, 0, errWholeFrame
		}
		if typ == zstdBlockRaw || typ == zstdBlockRLE {
			out += size
		} else {
			out += zstdMaxBlockSize
		}
		if out >= need {
			return pos, out, hdr, nil
		}
	}
}
