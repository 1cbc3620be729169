package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/store"
)

// Partial decodes into buffers sized to what they decode.
//
// A cut frame (cutFrame) still says in its header that it holds the whole
// chunk, so a decoder sizes its output for the whole chunk: 4 MiB that Go
// zeroes (and the kernel faults in) for every random read that misses,
// although on average half of it is decoded. Profiles of random 4 KiB
// reads showed that zeroing as 30 % of a miss, and the frame checksum,
// which a cut frame cannot have, hashed as another 8 %. So the private
// copy of the frame that is decoded gets a header that says what the kept
// blocks can decode to at most (est) and that no checksum follows; the
// output buffer is est bytes. The blocks themselves are unchanged and
// checked by the decoder as before.

// partialDecoder decodes cut frames: their content checksum is never
// there to check (a cut frame ends at its last kept block).
var partialDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(MaxChunkSize+512),
		zstd.IgnoreChecksum(true))
})

// fhdSingleSegment is the Single_Segment_flag of the zstd
// Frame_Header_Descriptor (RFC 8878 §3.1.1.1.1; fhdChecksumFlag is its
// Content_Checksum_flag).
const fhdSingleSegment = 1 << 5

// reheadFrame gives a cut frame a new header that records no content size
// and no checksum, with a window of at least est bytes (every match of the
// kept blocks lies inside the first est bytes), written over the end of
// the old header (the new one is 6 bytes, the old one at least 9 when it
// records a size of 64 KiB or more). It returns the frame from the new
// header on; false when the old header is not one it can replace.
func rehead(frame []byte, est int) ([]byte, bool) {
	var h zstd.Header
	if h.Decode(frame) != nil || h.Skippable || h.DictionaryID != 0 || h.HeaderSize < 9 || est <= 0 {
		return nil, false
	}
	e := 0
	for 1<<(10+e) < est {
		e++
	}
	if e > 31-10 {
		return nil, false
	}
	hs := h.HeaderSize
	f := frame[hs-6:]
	binary.LittleEndian.PutUint32(f, zstdMagic)
	f[4] = 0            // no size, no checksum, not single-segment, no dictionary
	f[5] = byte(e << 3) // Window_Descriptor: 2^(10+e) bytes, mantissa 0
	return f, true
}

// setFrameSize rewrites the Frame_Content_Size of a frame's header to fcs
// and clears its Content_Checksum_Flag, in place. It reports false, and
// changes nothing, when the header's size field cannot hold fcs.
func setFrameSize(frame []byte, fcs int) bool {
	if len(frame) < 6 || binary.LittleEndian.Uint32(frame) != zstdMagic {
		return false
	}
	fhd := frame[4]
	pos := 5
	if fhd&fhdSingleSegment == 0 {
		pos++ // Window_Descriptor
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3] // Dictionary_ID
	var size int
	switch fhd >> 6 {
	case 0:
		if fhd&fhdSingleSegment == 0 {
			return false // no size field
		}
		size = 1
	case 1:
		size = 2
	case 2:
		size = 4
	case 3:
		size = 8
	}
	if pos+size > len(frame) || fcs < 0 {
		return false
	}
	le := binary.LittleEndian
	switch size {
	case 1:
		if fcs > 0xff {
			return false
		}
		frame[pos] = byte(fcs)
	case 2:
		if fcs < 256 || fcs > 0xffff+256 {
			return false
		}
		le.PutUint16(frame[pos:], uint16(fcs-256))
	case 4:
		if uint64(fcs) > 0xffffffff {
			return false
		}
		le.PutUint32(frame[pos:], uint32(fcs))
	case 8:
		le.PutUint64(frame[pos:], uint64(fcs))
	}
	frame[4] = fhd &^ fhdChecksumFlag
	return true
}

// decodePrefix decodes a frame cut by cutFrame (which the caller owns; its
// header is rewritten) whose kept blocks decode to at most est bytes, of a
// chunk of want bytes with its padding. It returns the decoded bytes; the
// error wraps store.ErrCorrupt when the blocks are damaged.
func decodePrefix(frame []byte, est, want int) ([]byte, error) {
	dec, err := partialDecoder()
	if err != nil {
		return nil, err
	}
	if f, ok := rehead(frame, est); ok {
		// Any decoder (C zstd when built in) decodes it like a whole frame.
		data, err := decodeWholeFrame(f, est)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
		}
		return data, nil
	}
	size := want
	if est < want && setFrameSize(frame, est) {
		size = est
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, size))
	// A cut frame decodes to less than its header says (the expected
	// ErrFrameSizeMismatch), or exactly to est when every kept block is
	// full; with the size rewritten, no checksum is expected after it.
	switch {
	case errors.Is(err, zstd.ErrFrameSizeMismatch):
	case err == nil && size < want:
	case err == nil:
		err = errors.New("the frame ends early")
		fallthrough
	default:
		return nil, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	return data, nil
}
