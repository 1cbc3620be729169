//go:build cgo

package compress

import (
	"errors"
	"fmt"
	"sync"

	czstd "github.com/DataDog/zstd"
	"github.com/klauspost/compress/zstd"
)

const cDecoderBuiltIn = true

// cDecoders holds C decompression contexts (one is not safe for concurrent
// use); a context the pool drops is freed by its finalizer.
var cDecoders = sync.Pool{New: func() any { return czstd.NewCtx() }}

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
	ctx := cDecoders.Get().(czstd.Ctx)
	defer cDecoders.Put(ctx)
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
