package compress

// Frames stored raw, read into place.
//
// zstd stores a block it cannot compress as it is (a raw block), and a
// 128 KiB frame of incompressible data (photos, video, archives: half of
// the bytes of the mount benchmark's profile store) is one raw block. The
// walk of a chunk's frames (walkFrames) reads every block header anyway,
// so it notes such frames (frameShape), and readFrames reads their content
// with one pread straight into the decoded buffer instead of reading the
// frame into a frame buffer and having the decoder copy it out. The frame's
// content checksum (the low 32 bits of the content's xxhash64, RFC 8878
// §3.1.1) is then checked here, as the decoder would; a read that decodes
// the whole chunk and checks its xxhash64 (the TOC's, over every byte)
// skips it. A frame of one RLE block (one byte repeated) is filled in the
// same way. Every other frame goes through the decoder as before.

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/store"
)

// readFrames decodes frames fr[i..j) of a chunk into dst (len: the bytes
// they hold, fr[j].u-fr[i].u): raw and RLE frames are read into place,
// runs of other frames are read into a pooled frame buffer (up to the
// frame window at a time) and decoded into place. checkRaw: check the
// content checksums of raw and RLE frames (a whole-chunk decode, whose
// xxhash64 covers the same bytes, does not need to). Frames are filled in
// order, and a raw frame's checksum is read with its content into the 4
// bytes after it (the next frame's place, filled after it; for the last
// frame, room between len(dst) and cap(dst) when there is any). The error wraps store.ErrCorrupt when a frame is
// damaged.
func (a *Archive) readFrames(fr []frameLoc, i, j int, dst []byte, checkRaw bool) error {
	base := int(fr[i].u)
	win := a.frameWindow()
	for k := i; k < j; {
		u, n := int(fr[k].u)-base, int(fr[k+1].u-fr[k].u)
		if fr[k].kind != frameCoded {
			if err := a.readRawFrame(fr[k], dst[u:u+n], checkRaw); err != nil {
				return fmt.Errorf("%w: frame %d of the chunk: %v", store.ErrCorrupt, k, err)
			}
			k++
			continue
		}
		// A run of coded frames, as many as fit in the window (at least one).
		e := k + 1
		for e < j && fr[e].kind == frameCoded && fr[e+1].off-fr[k].off <= int64(win) {
			e++
		}
		ue := int(fr[e].u) - base
		bp := framePool.get(int(fr[e].off - fr[k].off))
		if _, err := a.f.ReadAt(bp.b, fr[k].off); err != nil {
			framePool.put(bp)
			return fmt.Errorf("reading the archive: %w", err)
		}
		out, err := decodeWholeFrameInto(bp.b, dst[u:ue:ue])
		framePool.put(bp)
		if err != nil {
			return fmt.Errorf("%w: frames %d-%d of the chunk: %v", store.ErrCorrupt, k, e-1, err)
		}
		if len(out) != ue-u {
			return fmt.Errorf("%w: frames %d-%d of the chunk decoded to %d bytes, expected %d", store.ErrCorrupt, k, e-1, len(out), ue-u)
		}
		k = e
	}
	return nil
}

// readRawFrame fills dst (len: the frame's content size) with the content
// of the raw or RLE frame at fl, and checks its content checksum when
// check is set and the frame has one. A raw frame's checksum follows its
// content: it is read with it when dst has 4 bytes of room past its
// length (which are overwritten).
func (a *Archive) readRawFrame(fl frameLoc, dst []byte, check bool) error {
	at := fl.off + int64(fl.body)
	var sum []byte
	switch fl.kind {
	case frameRaw:
		if fl.sum && check && cap(dst)-len(dst) >= 4 {
			b := dst[:len(dst)+4]
			if err := a.readFull(b, at); err != nil {
				return err
			}
			sum = b[len(dst):]
			break
		}
		if err := a.readFull(dst, at); err != nil {
			return err
		}
		if fl.sum && check {
			sum = make([]byte, 4)
			if err := a.readFull(sum, at+int64(len(dst))); err != nil {
				return err
			}
		}
	case frameRLE:
		var b [5]byte // the repeated byte and the checksum
		n := 1
		if fl.sum && check {
			n = 5
		}
		if err := a.readFull(b[:n], at); err != nil {
			return err
		}
		for i := range dst {
			dst[i] = b[0]
		}
		if n == 5 {
			sum = b[1:5]
		}
	}
	if sum != nil && uint32(xxhash.Sum64(dst)) != binary.LittleEndian.Uint32(sum) {
		return zstd.ErrCRCMismatch
	}
	return nil
}

// readFull reads len(b) bytes at off; a reader may say io.EOF along with
// the last bytes of its input.
func (a *Archive) readFull(b []byte, off int64) error {
	if len(b) == 0 {
		return nil
	}
	n, err := a.f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading the archive: %w", err)
}
