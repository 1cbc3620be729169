package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

// rawFrame builds a zstd frame of one raw block holding content (or, with
// rle, one RLE block of content[0] repeated len(content) times), with its
// content size and checksum (RFC 8878 §3.1.1).
func rawFrame(content []byte, rle bool) []byte {
	f := binary.LittleEndian.AppendUint32(nil, zstdMagic)
	f = append(f, 0x80|fhdSingleSegment|fhdChecksumFlag) // 4-byte size, single segment, checksum
	f = binary.LittleEndian.AppendUint32(f, uint32(len(content)))
	bh := uint32(1) | uint32(len(content))<<3 // last block, raw
	if rle {
		bh |= zstdBlockRLE << 1
	}
	f = append(f, byte(bh), byte(bh>>8), byte(bh>>16))
	if rle {
		f = append(f, content[0])
	} else {
		f = append(f, content...)
	}
	return binary.LittleEndian.AppendUint32(f, uint32(xxhash.Sum64(content)))
}

// TestFrameShapeRaw: the walk tells a frame of one raw or RLE block from
// any other (hand-made frames, checked against the zstd decoder), and a
// frame cut anywhere is a truncated frame, never a shape.
func TestFrameShapeRaw(t *testing.T) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	content := make([]byte, 5000)
	for i := range content {
		content[i] = byte(i * 7)
	}
	same := bytes.Repeat([]byte{0x42}, 3000)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		t.Fatal(err)
	}
	coded := enc.EncodeAll(bytes.Repeat([]byte("some text to compress "), 300), nil)
	twoRaw := rawFrame(content, false)
	{
		// The same content in two raw blocks: not one block, so decoded.
		h := twoRaw[:9]
		b1 := uint32(2000) << 3
		b2 := uint32(1) | uint32(3000)<<3
		f := append([]byte(nil), h...)
		f = append(f, byte(b1), byte(b1>>8), byte(b1>>16))
		f = append(f, content[:2000]...)
		f = append(f, byte(b2), byte(b2>>8), byte(b2>>16))
		f = append(f, content[2000:]...)
		twoRaw = binary.LittleEndian.AppendUint32(f, uint32(xxhash.Sum64(content)))
	}
	for _, c := range []struct {
		name  string
		frame []byte
		kind  uint8
	}{
		{"raw", rawFrame(content, false), frameRaw},
		{"rle", rawFrame(same, true), frameRLE},
		{"coded", coded, frameCoded},
		{"two-raw-blocks", twoRaw, frameCoded},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, err := dec.DecodeAll(c.frame, nil)
			if err != nil {
				t.Fatalf("the test frame does not decode: %v", err)
			}
			s, err := zstdFrameShape(sliceReader(c.frame), 0, uint64(len(c.frame)))
			if err != nil || s.n != int64(len(c.frame)) || s.fcs != int64(len(want)) || s.kind != c.kind || !s.sum {
				t.Fatalf("shape %+v, %v", s, err)
			}
			if s.kind != frameCoded {
				a := &Archive{f: bytes.NewReader(c.frame)}
				got := make([]byte, len(want))
				if err := a.readRawFrame(frameLoc{kind: s.kind, body: s.body, sum: s.sum}, got, true); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("read into place: %v, same bytes %v", err, bytes.Equal(got, want))
				}
				// The checksum read with the content, into the room after it.
				got = make([]byte, len(want), len(want)+4)
				if err := a.readRawFrame(frameLoc{kind: s.kind, body: s.body, sum: s.sum}, got, true); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("read into place with room: %v", err)
				}
			}
			for cut := 0; cut < len(c.frame); cut++ {
				if _, err := zstdFrameShape(sliceReader(c.frame[:cut]), 0, uint64(cut)); err == nil {
					t.Fatalf("frame cut at %d of %d: no error", cut, len(c.frame))
				}
			}
		})
	}
	// A damaged byte in the content or the checksum of a raw or RLE frame.
	for _, c := range []struct {
		frame []byte
		at    int
	}{
		{rawFrame(content, false), 12 + 100}, {rawFrame(content, false), 12 + 5000 + 2},
		{rawFrame(same, true), 12}, {rawFrame(same, true), 13},
	} {
		c.frame[c.at] ^= 0x10
		s, err := zstdFrameShape(sliceReader(c.frame), 0, uint64(len(c.frame)))
		if err != nil || s.kind == frameCoded {
			t.Fatalf("shape of a damaged frame: %+v, %v", s, err)
		}
		a := &Archive{f: bytes.NewReader(c.frame)}
		got := make([]byte, s.fcs)
		if err := a.readRawFrame(frameLoc{kind: s.kind, body: s.body, sum: true}, got, true); !errors.Is(err, zstd.ErrCRCMismatch) {
			t.Errorf("byte %d damaged: %v", c.at, err)
		}
		if _, err := dec.DecodeAll(c.frame, nil); err == nil {
			t.Errorf("byte %d damaged: the zstd decoder sees nothing either", c.at)
		}
	}
	// A file that ends inside a raw frame's content: an error, not a panic.
	f := rawFrame(content, false)
	a := &Archive{f: bytes.NewReader(f[:len(f)/2])}
	if err := a.readRawFrame(frameLoc{kind: frameRaw, body: 12, sum: true}, make([]byte, len(content)), true); err == nil {
		t.Errorf("a raw frame past the end of the file read without an error")
	}
}

// sliceReader is a byte slice as an io.ReaderAt.
func sliceReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// rawFramesOf returns the frames of chunk k of big.bin as a reader walks
// them, and the indexes of those stored raw.
func rawFramesOf(t *testing.T, a *Archive, f *archiveFile, k uint32) ([]frameLoc, []int) {
	t.Helper()
	c := f.first + k
	want := int(a.t.chunk(c).uSize)
	if int(k) == len(f.ends)-1 {
		want += int(tarPad(f.size))
	}
	fr, _, err := a.walkFrames(c, want, nil, want)
	if err != nil {
		t.Fatal(err)
	}
	var raw []int
	for i := range fr[:len(fr)-1] {
		if fr[i].kind == frameRaw {
			raw = append(raw, i)
		}
	}
	return fr, raw
}

// TestRawFramesReadIntoPlace: the test file's incompressible runs are
// frames of one raw block; random reads into them and whole reads of
// their chunks return the source's bytes.
func TestRawFramesReadIntoPlace(t *testing.T) {
	_, path, want := framedArchive(t)
	a := openArchive(t, path)
	f := openBig(t, a)
	total := 0
	for k := uint32(0); k < uint32(len(f.ends)); k++ {
		fr, raw := rawFramesOf(t, a, f, k)
		total += len(raw)
		for _, i := range raw {
			off := f.chunkStart(int(k)) + int64(fr[i].u) + 1000
			buf := make([]byte, 4096)
			if n, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
				t.Fatalf("read in raw frame %d of chunk %d: %v", i, k, err)
			}
		}
	}
	if total < 4 {
		t.Fatalf("only %d raw frames in the test file", total)
	}
	got, err := readAll(t, a, &store.Entry{StorePath: "big.bin"})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("whole read: %v", err)
	}
}

// TestRawFrameDamage: a byte flipped in a raw frame's content or in its
// checksum fails a random read of that frame (ErrCorrupt, EIO in a
// mount), while other frames of the chunk still read until the damage is
// known; the whole read of the chunk fails (its xxhash64), and the chunk
// stays damaged.
func TestRawFrameDamage(t *testing.T) {
	_, good, want := framedArchive(t)
	a := openArchive(t, good)
	f := openBig(t, a)
	k := uint32(1)
	fr, raw := rawFramesOf(t, a, f, k)
	if len(raw) == 0 {
		t.Fatal("no raw frame in chunk 1")
	}
	i := raw[0]
	other := 0
	if other == i {
		other = 1
	}
	for _, c := range []struct {
		name string
		at   int64
	}{
		{"content", fr[i].off + int64(fr[i].body) + 777},
		{"checksum", fr[i+1].off - 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := storetest.CopyToTemp(t, good)
			flipByte(t, path, c.at)
			a := openArchive(t, path)
			f := openBig(t, a)
			buf := make([]byte, 4096)
			start := f.chunkStart(int(k))
			okOff := start + int64(fr[other].u)
			if n, err := f.ReadAt(buf, okOff); err != nil || !bytes.Equal(buf[:n], want[okOff:okOff+int64(n)]) {
				t.Fatalf("read of an intact frame of the chunk: %v", err)
			}
			badOff := start + int64(fr[i].u) + 10
			if _, err := f.ReadAt(buf, badOff); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "chunk 1 of 4") {
				t.Fatalf("read of the damaged raw frame: %v", err)
			}
			if _, err := f.ReadAt(buf, okOff); !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("read of a chunk known damaged: %v", err)
			}
			// A fresh reader that reads the chunk whole finds it too: the
			// content by the chunk's xxhash64; a damaged checksum of a raw
			// frame is not read by a whole-chunk decode (the xxhash64
			// covers the content), so verify is what reports it.
			b := openArchive(t, path)
			_, err := readAll(t, b, &store.Entry{StorePath: "big.bin"})
			if c.name == "content" && !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("whole read: %v", err)
			}
			if c.name == "checksum" && err != nil {
				t.Errorf("whole read of intact content: %v", err)
			}
		})
	}
}

// TestRawFrameHostile: a raw frame whose block header claims more bytes
// than the frame has (past the chunk's end, or into the next frame) or
// fewer than its content size fails every read of its chunk as damage,
// never with wrong bytes or a panic.
func TestRawFrameHostile(t *testing.T) {
	_, good, want := framedArchive(t)
	a := openArchive(t, good)
	f := openBig(t, a)
	var k uint32
	var fr []frameLoc
	var raw []int
	for k = 0; k < uint32(len(f.ends)); k++ {
		if fr, raw = rawFramesOf(t, a, f, k); len(raw) > 0 {
			break
		}
	}
	if len(raw) == 0 {
		t.Fatal("no raw frame")
	}
	i := raw[len(raw)-1]
	for _, c := range []struct {
		name  string
		delta int
	}{
		{"longer", 1}, {"past-the-chunk", 1 << 16}, {"shorter", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := storetest.CopyToTemp(t, good)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			hdr := fr[i].off + int64(fr[i].body) - 3
			bh := uint32(b[hdr]) | uint32(b[hdr+1])<<8 | uint32(b[hdr+2])<<16
			size := int(bh>>3) + c.delta
			bh = bh&7 | uint32(size)<<3
			b[hdr], b[hdr+1], b[hdr+2] = byte(bh), byte(bh>>8), byte(bh>>16)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			a := openArchive(t, path)
			f := openBig(t, a)
			buf := make([]byte, 4096)
			off := f.chunkStart(int(k)) + int64(fr[i].u) + 5
			n, err := f.ReadAt(buf, off)
			if err == nil && !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
				t.Fatal("wrong bytes without an error")
			}
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("random read of the frame: %v", err)
			}
			b2 := openArchive(t, path)
			if _, err := readAll(t, b2, &store.Entry{StorePath: "big.bin"}); !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("whole read: %v", err)
			}
		})
	}
}

// FuzzFrameShape feeds arbitrary bytes to the frame walk; a frame it
// takes for raw or RLE must read into place to exactly what the zstd
// decoder makes of it whenever both succeed, and a checksum the decoder
// accepts must be accepted here.
func FuzzFrameShape(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	content := make([]byte, 3000)
	for i := range content {
		content[i] = byte(r.Uint32())
	}
	f.Add(rawFrame(content, false))
	f.Add(rawFrame(content[:1], false))
	f.Add(rawFrame(bytes.Repeat([]byte{9}, 700), true))
	f.Add(rawFrame(content, false)[:100])
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc.EncodeAll(content, nil))
	f.Add(enc.EncodeAll(bytes.Repeat([]byte("abc"), 500), nil))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(1<<20))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := zstdFrameShape(bytes.NewReader(b), 0, uint64(len(b)))
		if err != nil {
			return
		}
		if s.n <= 0 || s.n > int64(len(b)) {
			t.Fatalf("frame length %d of %d bytes", s.n, len(b))
		}
		if s.kind == frameCoded {
			return
		}
		// The frame is its header, one block and the checksum.
		n := int64(s.body) + s.fcs
		if s.kind == frameRLE {
			n = int64(s.body) + 1
		}
		if s.sum {
			n += 4
		}
		if s.fcs < 0 || s.fcs > maxBlockSize || n != s.n {
			t.Fatalf("raw shape %+v", s)
		}
		a := &Archive{f: bytes.NewReader(b[:s.n])}
		got := make([]byte, s.fcs)
		ourErr := a.readRawFrame(frameLoc{kind: s.kind, body: s.body, sum: s.sum}, got, true)
		want, decErr := dec.DecodeAll(b[:s.n], nil)
		if ourErr == nil && decErr == nil && !bytes.Equal(got, want) {
			t.Fatalf("read into place differs from the decoder's output")
		}
		if decErr == nil && ourErr != nil {
			t.Fatalf("the decoder takes the frame, the raw read fails: %v", ourErr)
		}
	})
}
