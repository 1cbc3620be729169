//go:build !cgo

package compress

const cDecoderBuiltIn = false

func decodeWholeFrameC(frame []byte, want int) ([]byte, error) {
	panic("compress: the C zstd decoder is not built in")
}

func decodeFrameIntoC(frame, dst []byte) ([]byte, error) {
	panic("compress: the C zstd decoder is not built in")
}
