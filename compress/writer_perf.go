package compress

import (
	"encoding/binary"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// Speed helpers of the writer. None of them changes a byte of the archive:
// they produce exactly what an encoder with WithEncoderCRC(true) produces,
// with less work.

// newChunkEncoder returns the encoder for data chunks: like the main one,
// but without the frame checksum, which appendChunkFrame adds from the
// XXH64 the writer computes anyway for the TOC. That saves the encoder's
// own XXH64 pass over every input byte.
func newChunkEncoder(l Level, threads int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(l.zstd()),
		zstd.WithEncoderConcurrency(threads),
		zstd.WithEncoderCRC(false),
		zstd.WithZeroFrames(true))
}

// fhdChecksumFlag is the Content_Checksum_flag of the zstd
// Frame_Header_Descriptor (RFC 8878 §3.1.1.1.1), the byte after the magic.
const fhdChecksumFlag = 1 << 2

// appendChunkFrame appends to dst the zstd frame of src encoded by enc (an
// encoder from newChunkEncoder) with the content checksum: sum must be the
// XXH64 of src. src must not be empty (an empty frame has no checksum).
//
// The result is byte for byte what an encoder with WithEncoderCRC(true)
// gives (TestAppendChunkFrameIdentical): the checksum flag only sets a bit
// of the frame header descriptor and appends the low 32 bits of the XXH64,
// little-endian, after the last block (RFC 8878 §3.1.1).
func appendChunkFrame(enc *zstd.Encoder, dst, src []byte, sum uint64) []byte {
	if len(src) == 0 {
		panic("compress: appendChunkFrame of empty input")
	}
	start := len(dst)
	return addFrameChecksum(enc.EncodeAll(src, dst), start, sum)
}

// addFrameChecksum turns the frame that starts at dst[start:] and ends
// dst, written without a content checksum, into the frame with it: the
// flag bit in the Frame_Header_Descriptor (the byte after the magic) and
// the low 32 bits of sum, the XXH64 of the content, after the last block.
func addFrameChecksum(dst []byte, start int, sum uint64) []byte {
	dst[start+4] |= fhdChecksumFlag
	return binary.LittleEndian.AppendUint32(dst, uint32(sum))
}

// chunkFrameBound is the largest frame appendChunkFrame makes of n bytes,
// so output buffers can be allocated once instead of grown by append.
func chunkFrameBound(enc *zstd.Encoder, n int) int {
	return enc.MaxEncodedSize(n) + 4
}

// outBufSize is the output buffer: header frames (a few hundred bytes
// each) are gathered into large writes; a chunk frame larger than what is
// left goes out in one write of its own.
const outBufSize = 1 << 20

// readAhead tells the kernel that a large source file is read from start
// to end, so cold reads (a USB disk, a network share) get a larger
// read-ahead window. A hint on our read-only descriptor: it never changes
// the source. Errors only mean no hint.
func readAhead(f store.File, size int64) {
	if size < readAheadMin {
		return
	}
	if fder, ok := f.(interface{ Fd() uintptr }); ok {
		unix.Fadvise(int(fder.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	}
}

// readAheadMin: smaller files are read in one call; the default
// read-ahead covers them.
const readAheadMin = 1 << 20
