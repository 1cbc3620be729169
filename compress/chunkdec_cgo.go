//go:build cgo

package compress

import (
	"errors"
	"fmt"

	czstd "github.com/DataDog/zstd"
	"github.com/klauspost/compress/zstd"
)

const cDecoderBuiltIn = true

// cDecoders holds C decompression contexts (one is not safe for concurrent
// use). It is a bounded free list, not a sync.Pool: a sync.Pool is emptied
// by garbage collections, and a new context's first decode cost about
// 1 ms of CPU (allocating and initialising its tables and window), which
// was the whole 99th percentile of random 4 KiB reads on a mount
// (docs/mount.md, the tail). Contexts beyond maxCDecoders (more decodes
// at once than that) are dropped and freed by their finalizer.
var cDecoders = make(chan czstd.Ctx, maxCDecoders)

// maxCDecoders: the mount decodes on at most a few threads at once
// (readers, one decode ahead, verify's one per CPU).
const maxCDecoders = 8

func getCDecoder() czstd.Ctx {
	select {
	case c := <-cDecoders:
		return c
	default:
		return czstd.NewCtx()
	}
}

func putCDecoder(c czstd.Ctx) {
	select {
	case cDecoders <- c:
	default:
	}
}

// decodeWholeFrameC decodes frame with the C library into a buffer of
// exactly want bytes: a frame that decodes to more is an error, one that
// decodes to less gives a shorter result.
func decodeWholeFrameC(frame []byte, want int) ([]byte, error) {
	if len(frame) == 0 {
		return nil, errors.New("empty frame")
	}
	if want == 0 {
		// The C call needs room to write into; a chunk is never empty.
		return nil, fmt.Errorf("a chunk of 0 bytes")
	}
	return decodeFrameIntoC(frame, make([]byte, want))
}

// decodeFrameIntoC decodes frame into dst: a frame that decodes to more
// than len(dst) is an error, one that decodes to less gives a shorter
// result.
func decodeFrameIntoC(frame, dst []byte) ([]byte, error) {
	if len(frame) == 0 {
		return nil, errors.New("empty frame")
	}
	if len(dst) == 0 {
		return nil, fmt.Errorf("a chunk of 0 bytes")
	}
	ctx := getCDecoder()
	defer putCDecoder(ctx)
	n, err := ctx.DecompressInto(dst, frame)
	if err != nil {
		if err.Error() == "Restored data doesn't match checksum" {
			// The same words as the Go decoder, so reports do not depend
			// on the build.
			return nil, zstd.ErrCRCMismatch
		}
		return nil, err
	}
	return dst[:n], nil
}
