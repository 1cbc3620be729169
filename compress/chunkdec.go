package compress

// decodeWholeFrame decodes the zstd frame of a whole chunk, checking its
// content checksum, into a new buffer of capacity want (the size the TOC
// gives; the caller checks the length). The C zstd library decodes when it
// is built in (chunkdec_cgo.go: 10-35 % faster than klauspost/compress on
// the profile store); salvage and partial decoding keep the Go decoder,
// which can report what it decoded before an error.
func decodeWholeFrame(frame []byte, want int) ([]byte, error) {
	if cDecoderBuiltIn && !forceGoDecoder {
		return decodeWholeFrameC(frame, want)
	}
	dec, err := chunkDecoder()
	if err != nil {
		return nil, err
	}
	return dec.DecodeAll(frame, make([]byte, 0, want))
}

// decodeWholeFrameInto is decodeWholeFrame into dst (its length is the
// size the TOC gives): a buffer a caller reuses, so that decoding costs
// no allocation, zeroing and page faults of a new buffer (verify).
func decodeWholeFrameInto(frame, dst []byte) ([]byte, error) {
	if cDecoderBuiltIn && !forceGoDecoder {
		return decodeFrameIntoC(frame, dst)
	}
	dec, err := chunkDecoder()
	if err != nil {
		return nil, err
	}
	return dec.DecodeAll(frame, dst[:0])
}

// forceGoDecoder makes decodeWholeFrame use the Go decoder (tests compare
// the two).
var forceGoDecoder = false
