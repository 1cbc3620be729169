//go:build cgo

package compress

import (
	"fmt"

	czstd "github.com/DataDog/zstd"
)

// cEncoderBuiltIn: this build has the C zstd encoder.
const cEncoderBuiltIn = true

// cChunkEncoder compresses with the C zstd library through
// github.com/DataDog/zstd, one compression context per worker (a context
// is not safe for concurrent use; the pool hands each call its own).
type cChunkEncoder struct {
	level int
	ctxs  chan czstd.Ctx
}

func newCChunkEncoder(l Level, threads int) (chunkEncoder, error) {
	e := &cChunkEncoder{level: l.cLevel(), ctxs: make(chan czstd.Ctx, max(threads, 1))}
	for range cap(e.ctxs) {
		e.ctxs <- czstd.NewCtx()
	}
	return e, nil
}

// cLevel is the C zstd level of a Level: the pure-Go encoder's levels are
// modelled on these (klauspost/compress documents SpeedFastest as about
// level 1, SpeedDefault as about 3, SpeedBetterCompression as about 7).
func (l Level) cLevel() int {
	switch l {
	case LevelFastest:
		return 1
	case LevelBetter:
		return 7
	default:
		return 3
	}
}

func (e *cChunkEncoder) appendFrame(dst, src []byte, sum uint64) ([]byte, error) {
	if len(src) == 0 {
		panic("compress: appendFrame of empty input")
	}
	ctx := <-e.ctxs
	defer func() { e.ctxs <- ctx }()
	start := len(dst)
	// CompressLevel writes from the start of the slice it is given when
	// its capacity is enough, and allocates otherwise.
	room := dst[start:cap(dst)]
	frame, err := ctx.CompressLevel(room[:0], src, e.level)
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if len(frame) < 6 {
		return nil, fmt.Errorf("zstd: a frame of %d bytes is too short", len(frame))
	}
	if len(room) > 0 && &frame[0] == &room[0] {
		dst = dst[:start+len(frame)]
	} else {
		dst = append(dst, frame...)
	}
	// The frame has no checksum (the library's default): add it from the
	// XXH64 the writer computed anyway.
	return addFrameChecksum(dst, start, sum), nil
}

func (e *cChunkEncoder) bound(n int) int { return czstd.CompressBound(n) + 4 }
func (e *cChunkEncoder) name() string    { return EncoderC }
func (e *cChunkEncoder) close()          {}
