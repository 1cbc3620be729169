package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// maxBlockSize is zstd's Block_Maximum_Size (128 KiB); a larger block
// header is damage.
const maxBlockSize = 128 << 10

var errTruncatedFrame = errors.New("the frame runs past the end of the file")

// zstdFrameLen returns the length of the zstd frame at off, found by
// walking its block headers without decoding (docs/format.md §5), and its
// Frame_Content_Size (-1 when absent). limit is the offset the frame must
// not reach past.
func zstdFrameLen(r io.ReaderAt, off int64, limit uint64) (n int64, fcs int64, err error) {
	s, err := zstdFrameShape(r, off, limit)
	if err != nil {
		return 0, -1, err
	}
	return s.n, s.fcs, nil
}

// Frame kinds (frameShape.kind): a frame of one raw or RLE block holds
// its content as it is (raw) or as one byte (RLE), so a reader can take it
// without the decoder (reader_raw.go).
const (
	frameCoded = iota // anything else: decoded by zstd
	frameRaw          // one raw block as long as the frame's content
	frameRLE          // one RLE block as long as the frame's content
)

// frameShape is what a walk of a frame's headers learns.
type frameShape struct {
	n    int64 // the frame's length, its checksum included
	fcs  int64 // Frame_Content_Size, -1 when absent
	kind uint8 // frameCoded, frameRaw or frameRLE
	body uint8 // raw and RLE frames: where the block's content starts in the frame
	sum  bool  // a content checksum (4 bytes) ends the frame
}

// zstdFrameShape is zstdFrameLen that also says whether the frame is one
// raw or RLE block. The first block header usually comes with the frame
// header's read, so a frame of one block costs one read.
func zstdFrameShape(r io.ReaderAt, off int64, limit uint64) (frameShape, error) {
	if off < 0 || uint64(off) >= limit {
		return frameShape{}, errTruncatedFrame
	}
	end := int64(limit)
	var hb [zstd.HeaderMaxSize]byte // a frame header and a block header
	hn, err := r.ReadAt(hb[:min(int64(len(hb)), end-off)], off)
	if hn < 4 {
		if err == nil || errors.Is(err, io.EOF) {
			err = errTruncatedFrame
		}
		return frameShape{}, err
	}
	var h zstd.Header
	if err := h.Decode(hb[:hn]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return frameShape{}, errTruncatedFrame
		}
		return frameShape{}, fmt.Errorf("bad frame header: %w", err)
	}
	if h.Skippable {
		return frameShape{}, errors.New("a skippable frame, not a zstd frame")
	}
	s := frameShape{fcs: -1, sum: h.HasCheckSum}
	if h.HasFCS {
		s.fcs = int64(h.FrameContentSize)
		if s.fcs < 0 {
			return frameShape{}, errors.New("bad frame content size")
		}
	}
	pos := off + int64(h.HeaderSize)
	var bh [3]byte
	for blocks := 0; ; blocks++ {
		if end-pos < 3 {
			return frameShape{}, errTruncatedFrame
		}
		if i := pos - off; i+3 <= int64(hn) {
			copy(bh[:], hb[i:])
		} else if _, err := r.ReadAt(bh[:], pos); err != nil {
			return frameShape{}, err
		}
		v := uint32(bh[0]) | uint32(bh[1])<<8 | uint32(bh[2])<<16
		last := v&1 != 0
		size := int64(v >> 3)
		body := size
		typ := (v >> 1) & 3
		switch typ {
		case 0: // raw
		case 1: // RLE: one byte repeated size times
			body = 1
		case 2: // compressed
		default:
			return frameShape{}, errors.New("reserved block type")
		}
		if size > maxBlockSize {
			return frameShape{}, fmt.Errorf("block of %d bytes is over the zstd maximum", size)
		}
		if blocks == 0 && last && typ < 2 && size == s.fcs {
			s.kind = frameRaw + uint8(typ)
			s.body = uint8(pos + 3 - off)
		}
		pos += 3 + body
		if pos > end {
			return frameShape{}, errTruncatedFrame
		}
		if last {
			break
		}
	}
	if h.HasCheckSum {
		pos += 4
		if pos > end {
			return frameShape{}, errTruncatedFrame
		}
	}
	s.n = pos - off
	return s, nil
}

// Frame kinds the walker reports.
const (
	frameZstd      = iota // a structurally complete zstd frame
	frameSkippable        // a skippable frame (ours or anyone's)
	frameGarbage          // bytes that are no frame: damage
)

type frameInfo struct {
	kind int
	off  int64
	n    int64
	fcs  int64 // zstd frames: Frame_Content_Size or -1
	id   uint32
}

// frameWalker walks a file frame by frame from offset 0, resynchronising
// after damage by scanning for the next plausible frame magic.
type frameWalker struct {
	r    io.ReaderAt
	size int64
	pos  int64
	buf  []byte
}

func newFrameWalker(r io.ReaderAt, size int64) *frameWalker {
	return &frameWalker{r: r, size: size, buf: make([]byte, 64<<10)}
}

// next returns the next frame; io.EOF at the end of the file.
func (w *frameWalker) next() (frameInfo, error) {
	if w.pos >= w.size {
		return frameInfo{}, io.EOF
	}
	if f, ok, err := w.frameAt(w.pos); err != nil {
		return frameInfo{}, err
	} else if ok {
		w.pos += f.n
		return f, nil
	}
	// Damage: scan forward for the next offset where a frame parses.
	start := w.pos
	for p := start + 1; p < w.size; {
		n, err := w.r.ReadAt(w.buf, p)
		if n < 4 && (err == nil || errors.Is(err, io.EOF)) {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return frameInfo{}, err
		}
		for k := 0; k+4 <= n; k++ {
			b := w.buf[k:]
			isZstd := b[0] == 0x28 && b[1] == 0xB5 && b[2] == 0x2F && b[3] == 0xFD
			isSkip := b[0]&0xF0 == 0x50 && b[1] == 0x2A && b[2] == 0x4D && b[3] == 0x18
			if !isZstd && !isSkip {
				continue
			}
			if _, ok, err := w.frameAt(p + int64(k)); err != nil {
				return frameInfo{}, err
			} else if ok {
				w.pos = p + int64(k)
				return frameInfo{kind: frameGarbage, off: start, n: w.pos - start}, nil
			}
		}
		p += int64(n) - 3 // a magic may straddle two reads
	}
	w.pos = w.size
	return frameInfo{kind: frameGarbage, off: start, n: w.size - start}, nil
}

// frameAt reports whether a complete frame starts at off.
func (w *frameWalker) frameAt(off int64) (frameInfo, bool, error) {
	var m [8]byte
	n, err := w.r.ReadAt(m[:], off)
	if n < 4 {
		if err != nil && !errors.Is(err, io.EOF) {
			return frameInfo{}, false, err
		}
		return frameInfo{}, false, nil
	}
	magic := binary.LittleEndian.Uint32(m[:])
	switch {
	case magic == zstdMagic:
		fl, fcs, err := zstdFrameLen(w.r, off, uint64(w.size))
		if err != nil {
			return frameInfo{}, false, nil
		}
		return frameInfo{kind: frameZstd, off: off, n: fl, fcs: fcs}, true, nil
	case magic&skippableMask == skippableBase:
		if n < 8 {
			return frameInfo{}, false, nil
		}
		l := int64(binary.LittleEndian.Uint32(m[4:]))
		if 8+l > w.size-off {
			return frameInfo{}, false, nil
		}
		return frameInfo{kind: frameSkippable, off: off, n: 8 + l, fcs: -1, id: magic}, true, nil
	}
	return frameInfo{}, false, nil
}
