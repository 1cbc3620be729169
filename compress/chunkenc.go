package compress

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// chunkEncoder turns data chunks into zstd frames carrying the content
// checksum. The writer's workers share one and call appendFrame
// concurrently.
//
// Two implementations make the same format (any conforming zstd frame is a
// valid chunk frame; docs/format.md): the C zstd library, built in when
// cgo is available (chunkenc_cgo.go), compresses about twice as fast per
// core as the pure-Go encoder at the same ratio (measured on the benchmark
// profile store: 315-444 against 188-205 MB/s at level 3), which is what
// lets compress keep up with `tar | zstd -3 -T0`; the pure-Go encoder
// (klauspost/compress) is the fallback of builds without a C compiler.
type chunkEncoder interface {
	// appendFrame appends to dst the frame of src with the content
	// checksum; sum must be the XXH64 of src, which must not be empty.
	appendFrame(dst, src []byte, sum uint64) ([]byte, error)
	// bound is the largest frame appendFrame makes of n bytes.
	bound(n int) int
	// name says which encoder this is, for reports.
	name() string
	close()
}

// EncoderGo and EncoderC name the chunk encoders (WriteOptions.Encoder,
// WriteResult.Encoder).
const (
	EncoderGo = "go"
	EncoderC  = "c"
)

// CheckEncoder says whether which names an encoder this build has ("" is
// always fine), so a caller can refuse a bad option before any work.
func CheckEncoder(which string) error {
	switch which {
	case "", EncoderGo:
		return nil
	case EncoderC:
		if !cEncoderBuiltIn {
			return fmt.Errorf("this usmtkit was built without cgo: the C zstd encoder is not available (use the Go encoder)")
		}
		return nil
	}
	return fmt.Errorf("unknown zstd encoder %q: use %q or %q", which, EncoderGo, EncoderC)
}

// newChunkEncoderFor returns the encoder named by which ("" picks the
// fastest built in: C when there is cgo) for threads concurrent workers.
func newChunkEncoderFor(which string, l Level, threads int) (chunkEncoder, error) {
	if err := CheckEncoder(which); err != nil {
		return nil, err
	}
	if which == EncoderC || (which == "" && cEncoderBuiltIn) {
		return newCChunkEncoder(l, threads)
	}
	return newGoChunkEncoder(l, threads)
}

// goChunkEncoder is the pure-Go encoder (writer_perf.go has its tricks).
type goChunkEncoder struct{ enc *zstd.Encoder }

func newGoChunkEncoder(l Level, threads int) (chunkEncoder, error) {
	enc, err := newChunkEncoder(l, threads)
	if err != nil {
		return nil, err
	}
	return goChunkEncoder{enc}, nil
}

func (g goChunkEncoder) appendFrame(dst, src []byte, sum uint64) ([]byte, error) {
	return appendChunkFrame(g.enc, dst, src, sum), nil
}
func (g goChunkEncoder) bound(n int) int { return chunkFrameBound(g.enc, n) }
func (g goChunkEncoder) name() string    { return EncoderGo }
func (g goChunkEncoder) close()          { g.enc.Close() }
