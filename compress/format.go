package compress

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/store"
)

// Format constants. docs/format.md is the specification; change both or
// neither.
const (
	// FormatVersion is the newest major format version: this package
	// reads versions 1 to FormatVersion. It writes version 2 (data chunks
	// made of several zstd frames, docs/format.md §1) unless every chunk
	// is one frame (WriteOptions.FrameSize equal to the chunk size), when
	// it writes version 1, which older readers open.
	FormatVersion = 2
	// formatSingleFrame is the version whose chunks are one frame each.
	formatSingleFrame = 1

	zstdMagic      = 0xFD2FB528 // bytes 28 B5 2F FD
	skippableMagic = 0x184D2A5B // bytes 5B 2A 4D 18: our TOC and footer frames
	skippableMask  = 0xFFFFFFF0 // any 0x184D2A5? is a skippable frame
	skippableBase  = 0x184D2A50

	footerSize        = 72 // 8-byte skippable header + 64-byte payload
	footerPayloadSize = 64
	footerMagic       = "USMTZ\x00F1"

	// Footer flag bits.
	flagChunkXXH = 1 << 0 // per-chunk xxhash64 in the chunk table
	flagFrameCRC = 1 << 1 // every zstd frame carries its content checksum
	knownFlags   = flagChunkXXH | flagFrameCRC

	tocMagic        = "UZTOC\x00\x00\x01"
	tocHeaderSize   = 128
	entryRecSize    = 80
	chunkRecSize    = 24
	tocKindFieldLen = 32

	// Limits. They bound every allocation a hostile archive can cause.
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 64 << 20
	DefaultChunkSize = 4 << 20
	// DefaultFrameSize is how much of a chunk one zstd frame holds: a
	// random read decodes at most one frame of each chunk it touches
	// (docs/format.md §1). Allowed MinChunkSize..the chunk size.
	DefaultFrameSize = 128 << 10
	maxChunkCSize    = 2 * MaxChunkSize // zstd never expands by more than a few bytes per block
	maxTOCCSize      = 2 << 30          // the skippable length field is a u32 anyway
	maxSymlinkLen    = 64 << 10
	maxNameLen       = 1<<16 - 1
	noIndex          = ^uint32(0)
	noHeader         = ^uint64(0)
	// DefaultMaxTOCBytes caps the decoded TOC a reader accepts (about 6
	// million entries); ReaderOptions.MaxTOCBytes changes it.
	DefaultMaxTOCBytes = 1 << 30
)

// TOC entry types.
const (
	tocFile     = 0
	tocDir      = 1
	tocHardlink = 2
	tocSymlink  = 3
)

// TOC entry flags.
const (
	entHasBtime   = 1 << 0
	entHasAttrs   = 1 << 1
	entIncomplete = 1 << 2 // zero-filled: the source could not be read completely
	entChanged    = 1 << 3 // the source changed while it was read (informational)
)

// Errors of this package. Open and Salvage wrap them with the path and what
// to do next.
var (
	// ErrNoIndex: the file has no valid footer, so its TOC cannot be found
	// (not an archive, or one that was truncated or never finished).
	ErrNoIndex = errors.New("no valid usmtkit archive footer (the archive is truncated, unfinished, or not a usmtkit archive)")
	// ErrVersion: the archive was written by a newer format version.
	ErrVersion = errors.New("archive format version not supported")
)

// footer is the fixed 64-byte payload of the last skippable frame.
type footer struct {
	tocOffset  uint64 // offset of the TOC skippable frame
	tocCSize   uint64 // compressed TOC bytes (the frame's payload)
	tocUSize   uint64
	tocXXH     uint64
	entryCount uint64
	version    uint32
	flags      uint32
}

func (f *footer) marshal() []byte {
	b := make([]byte, footerSize)
	binary.LittleEndian.PutUint32(b[0:], skippableMagic)
	binary.LittleEndian.PutUint32(b[4:], footerPayloadSize)
	p := b[8:]
	binary.LittleEndian.PutUint64(p[0:], f.tocOffset)
	binary.LittleEndian.PutUint64(p[8:], f.tocCSize)
	binary.LittleEndian.PutUint64(p[16:], f.tocUSize)
	binary.LittleEndian.PutUint64(p[24:], f.tocXXH)
	binary.LittleEndian.PutUint64(p[32:], f.entryCount)
	binary.LittleEndian.PutUint32(p[40:], f.version)
	binary.LittleEndian.PutUint32(p[44:], f.flags)
	binary.LittleEndian.PutUint64(p[48:], xxhash.Sum64(p[:48]))
	copy(p[56:], footerMagic)
	return b
}

// parseFooter checks the last 72 bytes of a file of the given size and
// everything about the TOC location that can be checked without reading it.
func parseFooter(b []byte, fileSize int64, maxTOC uint64) (*footer, error) {
	if len(b) != footerSize || fileSize < footerSize+8 {
		return nil, fmt.Errorf("%w: the file is too short", ErrNoIndex)
	}
	if binary.LittleEndian.Uint32(b[0:]) != skippableMagic || binary.LittleEndian.Uint32(b[4:]) != footerPayloadSize {
		return nil, ErrNoIndex
	}
	p := b[8:]
	if string(p[56:64]) != footerMagic {
		return nil, ErrNoIndex
	}
	if xxhash.Sum64(p[:48]) != binary.LittleEndian.Uint64(p[48:]) {
		return nil, fmt.Errorf("%w: footer checksum mismatch", ErrNoIndex)
	}
	f := &footer{
		tocOffset:  binary.LittleEndian.Uint64(p[0:]),
		tocCSize:   binary.LittleEndian.Uint64(p[8:]),
		tocUSize:   binary.LittleEndian.Uint64(p[16:]),
		tocXXH:     binary.LittleEndian.Uint64(p[24:]),
		entryCount: binary.LittleEndian.Uint64(p[32:]),
		version:    binary.LittleEndian.Uint32(p[40:]),
		flags:      binary.LittleEndian.Uint32(p[44:]),
	}
	if f.version < formatSingleFrame || f.version > FormatVersion {
		return nil, fmt.Errorf("%w: the archive is format version %d, this usmtkit reads versions 1 to %d; upgrade usmtkit", ErrVersion, f.version, FormatVersion)
	}
	if f.flags&^knownFlags != 0 {
		return nil, fmt.Errorf("%w: the footer sets unknown flags %#x; upgrade usmtkit", ErrVersion, f.flags&^knownFlags)
	}
	end := uint64(fileSize) - footerSize
	if f.tocCSize == 0 || f.tocCSize > maxTOCCSize || f.tocOffset >= end || end-f.tocOffset < 8 || end-f.tocOffset-8 != f.tocCSize {
		return nil, fmt.Errorf("%w: the footer's TOC location (offset %d, %d bytes) does not fit the file size %d", store.ErrCorrupt, f.tocOffset, f.tocCSize, fileSize)
	}
	if f.entryCount == 0 || f.entryCount >= uint64(noIndex) {
		return nil, fmt.Errorf("%w: the footer claims %d entries", store.ErrCorrupt, f.entryCount)
	}
	if f.tocUSize > maxTOC {
		return nil, fmt.Errorf("%w: the TOC would take %d bytes of memory, more than the limit of %d (raise ReaderOptions.MaxTOCBytes if the archive is trusted)", store.ErrCorrupt, f.tocUSize, maxTOC)
	}
	if f.tocUSize < tocHeaderSize+entryRecSize*f.entryCount {
		return nil, fmt.Errorf("%w: the footer's TOC size %d is too small for %d entries", store.ErrCorrupt, f.tocUSize, f.entryCount)
	}
	return f, nil
}

// skippableHeader returns the 8-byte header of one of our skippable frames.
func skippableHeader(n uint32) []byte {
	var h [8]byte
	binary.LittleEndian.PutUint32(h[0:], skippableMagic)
	binary.LittleEndian.PutUint32(h[4:], n)
	return h[:]
}

// tarPad is the number of zero bytes that pad a tar entry of size n.
func tarPad(n int64) int64 { return (512 - n%512) % 512 }
