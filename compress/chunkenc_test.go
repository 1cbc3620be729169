package compress

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/fixtures"
)

// builtInEncoders are the chunk encoders of this build.
func builtInEncoders() []string {
	if cEncoderBuiltIn {
		return []string{EncoderGo, EncoderC}
	}
	return []string{EncoderGo}
}

// TestChunkEncoders: every built-in encoder, at every level, makes frames
// that the zstd decoder accepts with their content checksum and decodes to
// the input, stays within its bound, appends after what dst holds, and a
// wrong checksum makes the frame fail.
func TestChunkEncoders(t *testing.T) {
	if !cEncoderBuiltIn {
		// scripts/test.sh installs gcc and runs the suite with cgo, then
		// this package again with CGO_ENABLED=0 on purpose.
		if os.Getenv("CI") != "" && os.Getenv("CGO_ENABLED") != "0" {
			t.Fatal("CI: this test binary was built without cgo, so the C zstd encoder is untested: install gcc")
		}
		t.Log("this build has no cgo: only the Go encoder is tested")
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	sizes := []int{1, 16, 255, 1536, 128 << 10, 128<<10 + 1, 1 << 20, DefaultChunkSize + 511}
	kinds := map[string]func(n int) []byte{
		"text":   func(n int) []byte { return fixtures.Text("chunk encoders", n) },
		"random": func(n int) []byte { return fixtures.PseudoRandom("chunk encoders", n) },
		"zeros":  func(n int) []byte { return make([]byte, n) },
	}
	for _, name := range builtInEncoders() {
		for _, l := range []Level{LevelFastest, LevelDefault, LevelBetter} {
			enc, err := newChunkEncoderFor(name, l, 2)
			if err != nil {
				t.Fatal(err)
			}
			if enc.name() != name {
				t.Errorf("encoder %q calls itself %q", name, enc.name())
			}
			for kind, gen := range kinds {
				for _, n := range sizes {
					src := gen(n)
					prefix := []byte("prefix")
					for _, dst := range [][]byte{bytes.Clone(prefix), append(make([]byte, 0, enc.bound(n)+len(prefix)), prefix...)} {
						frame, err := enc.appendFrame(dst, src, xxhash.Sum64(src))
						if err != nil {
							t.Fatalf("%s %s %s %d: %v", name, l, kind, n, err)
						}
						if !bytes.Equal(frame[:len(prefix)], prefix) {
							t.Fatalf("%s %s %s %d: the prefix was overwritten", name, l, kind, n)
						}
						frame = frame[len(prefix):]
						if len(frame) > enc.bound(n) {
							t.Errorf("%s %s %s %d: frame of %d bytes over the bound %d", name, l, kind, n, len(frame), enc.bound(n))
						}
						var h zstd.Header
						if err := h.Decode(frame); err != nil || !h.HasCheckSum {
							t.Errorf("%s %s %s %d: header %v, checksum flag %v", name, l, kind, n, err, h.HasCheckSum)
						}
						got, err := dec.DecodeAll(frame, nil)
						if err != nil || !bytes.Equal(got, src) {
							t.Fatalf("%s %s %s %d: decoding: %v (equal %v)", name, l, kind, n, err, bytes.Equal(got, src))
						}
					}
				}
			}
			src := fixtures.Text("wrong sum", 300<<10)
			bad, err := enc.appendFrame(nil, src, xxhash.Sum64(src)+1)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := dec.DecodeAll(bad, nil); err == nil {
				t.Errorf("%s %s: a frame with a wrong checksum decoded without error", name, l)
			}
			enc.close()
		}
	}
	if err := CheckEncoder("lzma"); err == nil {
		t.Error("an unknown encoder was accepted")
	}
	if err := CheckEncoder(EncoderC); (err == nil) != cEncoderBuiltIn {
		t.Errorf("CheckEncoder(c) = %v with the C encoder built in: %v", err, cEncoderBuiltIn)
	}
}

// TestEncodersRoundTrip: an archive written with each built-in encoder
// reads back identical through usmtkit, verifies, and restores with GNU
// tar; the sizes are close.
func TestEncodersRoundTrip(t *testing.T) {
	requireTool(t, "tar", "zstd", "bash")
	dir := buildTestTree(t)
	src := openPlain(t, dir)
	sizes := map[string]int64{}
	for _, name := range builtInEncoders() {
		t.Run(name, func(t *testing.T) {
			path, res := writeArchive(t, src, WriteOptions{ChunkSize: testChunk, Threads: 2, Encoder: name})
			if res.Encoder != name {
				t.Errorf("result says encoder %q", res.Encoder)
			}
			sizes[name] = res.BytesOut
			a := openArchive(t, path)
			compareStores(t, src, a)
			if err := a.VerifyAll(context.Background(), func(p string, chunk int, err error) {
				if err != nil {
					t.Errorf("verify %s chunk %d: %v", p, chunk, err)
				}
			}); err != nil {
				t.Fatal(err)
			}
			x, _ := tarExtract(t, path, true)
			compareDirs(t, dir, x)
		})
	}
	if g, c := sizes[EncoderGo], sizes[EncoderC]; c != 0 && (c > g*21/20 || g > c*21/20) {
		t.Errorf("archive sizes differ by more than 5%%: go %d, c %d", g, c)
	}
}

// TestWholeFrameDecoders: the C and the Go decoder (whichever are built
// in) decode a chunk frame alike, and report a checksum mismatch with the
// same error, so reports do not depend on the build.
func TestWholeFrameDecoders(t *testing.T) {
	enc, err := newChunkEncoderFor(EncoderGo, LevelDefault, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.close()
	src := fixtures.Text("whole frame", 700<<10)
	good, err := enc.appendFrame(nil, src, xxhash.Sum64(src))
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := enc.appendFrame(nil, src, xxhash.Sum64(src)+1)
	defer func() { forceGoDecoder = false }()
	for _, goDec := range []bool{true, false} {
		if !goDec && !cDecoderBuiltIn {
			continue
		}
		forceGoDecoder = goDec
		got, err := decodeWholeFrame(good, len(src))
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("go decoder %v: %v (equal %v)", goDec, err, bytes.Equal(got, src))
		}
		if _, err := decodeWholeFrame(bad, len(src)); err == nil || err.Error() != zstd.ErrCRCMismatch.Error() {
			t.Errorf("go decoder %v: wrong checksum gave %v", goDec, err)
		}
		if _, err := decodeWholeFrame(good[:len(good)/2], len(src)); err == nil {
			t.Errorf("go decoder %v: a cut frame decoded", goDec)
		}
		if got, err := decodeWholeFrame(good, len(src)-1); err == nil && len(got) == len(src) {
			t.Errorf("go decoder %v: more bytes than wanted came back", goDec)
		}
	}
}
