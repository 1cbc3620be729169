package compress

import (
	"bytes"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/fixtures"
)

// TestAppendChunkFrameIdentical: a chunk frame made with the checksum
// added by appendChunkFrame is byte for byte the frame of an encoder that
// computes the checksum itself, at every level, for small, block-sized,
// multi-block and chunk-sized inputs, compressible or not; and its output
// bound holds.
func TestAppendChunkFrameIdentical(t *testing.T) {
	sizes := []int{1, 15, 16, 100, 255, 256, 1536, 65791, 65792, 128 << 10, 128<<10 + 1, 1 << 20, DefaultChunkSize + 511}
	if testing.Short() {
		sizes = sizes[:len(sizes)-1]
	}
	kinds := map[string]func(n int) []byte{
		"text":   func(n int) []byte { return fixtures.Text("chunk frame", n) },
		"random": func(n int) []byte { return fixtures.PseudoRandom("chunk frame", n) },
		"zeros":  func(n int) []byte { return make([]byte, n) },
	}
	for _, l := range []Level{LevelFastest, LevelDefault, LevelBetter} {
		ref, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l.zstd()), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := newChunkEncoder(l, 1)
		if err != nil {
			t.Fatal(err)
		}
		for name, gen := range kinds {
			for _, n := range sizes {
				src := gen(n)
				prefix := []byte("prefix")
				want := ref.EncodeAll(src, bytes.Clone(prefix))
				got := appendChunkFrame(enc, bytes.Clone(prefix), src, xxhash.Sum64(src))
				if !bytes.Equal(got, want) {
					t.Errorf("%s %s %d bytes: frame differs from the checksumming encoder's (%d vs %d bytes)", l, name, n, len(got), len(want))
				}
				if len(got)-len(prefix) > chunkFrameBound(enc, n) {
					t.Errorf("%s %s %d bytes: frame of %d bytes over the bound %d", l, name, n, len(got)-len(prefix), chunkFrameBound(enc, n))
				}
			}
		}
		ref.Close()
		enc.Close()
	}
}

// TestChunkFrameDecodes: the zstd decoder verifies the added checksum, and
// rejects a frame whose checksum is wrong.
func TestChunkFrameDecodes(t *testing.T) {
	enc, err := newChunkEncoder(LevelDefault, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	src := fixtures.Text("decode", 300<<10)
	frame := appendChunkFrame(enc, nil, src, xxhash.Sum64(src))
	got, err := dec.DecodeAll(frame, nil)
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("decoding the chunk frame: %v (equal %v)", err, bytes.Equal(got, src))
	}
	bad := appendChunkFrame(enc, nil, src, xxhash.Sum64(src)+1)
	if _, err := dec.DecodeAll(bad, nil); err == nil {
		t.Fatal("a frame with a wrong checksum decoded without error")
	}
}
