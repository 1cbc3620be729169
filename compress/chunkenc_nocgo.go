//go:build !cgo

package compress

// cEncoderBuiltIn: this build has no C zstd encoder (no cgo).
const cEncoderBuiltIn = false

func newCChunkEncoder(l Level, threads int) (chunkEncoder, error) {
	panic("compress: the C zstd encoder is not built in")
}
