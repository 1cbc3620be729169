package compress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// smallArchive is a valid archive of a few entries, the fuzz seed (format
// version 1: chunks of one frame).
func smallArchive(t testing.TB) []byte {
	return smallArchiveOpts(t, WriteOptions{ChunkSize: MinChunkSize})
}

// smallFramedArchive is smallArchive in format version 2: its 70000-byte
// file is one chunk of two frames, so a read in its middle takes the
// frame walk (reader_frames.go).
func smallFramedArchive(t testing.TB) []byte {
	return smallArchiveOpts(t, WriteOptions{ChunkSize: 2 * MinChunkSize, FrameSize: MinChunkSize})
}

// smallRawFramedArchive is smallFramedArchive whose 70000-byte file is
// incompressible: its frames are stored raw (reader_raw.go).
func smallRawFramedArchive(t testing.TB) []byte {
	noise := make([]byte, 70000)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	return smallArchiveData(t, WriteOptions{ChunkSize: 2 * MinChunkSize, FrameSize: MinChunkSize}, noise)
}

func smallArchiveOpts(t testing.TB, opts WriteOptions) []byte {
	return smallArchiveData(t, opts, fixtures.Text("b", 70000))
}

func smallArchiveData(t testing.TB, opts WriteOptions, big []byte) []byte {
	dir := filepath.Join(t.TempDir(), "src")
	if err := (fixtures.Tree{
		"a.txt":       fixtures.File{Data: []byte("hello\n")},
		"d/b.txt":     fixtures.File{Data: big},
		"d/link":      fixtures.Hardlink{Target: "a.txt"},
		"d/sym":       fixtures.Symlink{Target: "../a.txt"},
		"d/e/empty":   fixtures.File{},
		"bad\xffname": fixtures.File{Data: []byte("x")},
	}).Build(dir); err != nil {
		t.Fatal(err)
	}
	path, _ := writeArchive(t, openPlain(t, dir), opts)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exerciseArchive opens an archive from bytes and uses every read path;
// it must never panic, whatever the bytes.
func exerciseArchive(data []byte) {
	r := bytes.NewReader(data)
	ft, raw, err := readIndex(r, int64(len(data)), 64<<20)
	if err != nil {
		return
	}
	t, err := parseTOC(raw, ft.entryCount, ft.tocOffset)
	if err != nil || checkFrameSize(ft, t) != nil {
		return
	}
	a := newArchive(r, "fuzz", int64(len(data)), ft, t, ReaderOptions{CacheBytes: 1 << 20})
	n := 0
	a.Walk(context.Background(), func(e *store.Entry, _ error) error {
		if n++; n > 10000 {
			return fmt.Errorf("enough")
		}
		a.Stat(e.StorePath)
		if e.Type == store.TypeDir {
			a.ReadDir(e.StorePath)
		}
		if e.Type == store.TypeFile {
			if f, err := a.Open(e); err == nil {
				buf := make([]byte, 4096)
				f.ReadAt(buf, 0)
				f.ReadAt(buf, e.Size/2)
				f.Close()
			}
		}
		return nil
	})
	a.VerifyAll(context.Background(), func(string, int, error) {})
}

// FuzzIndex feeds arbitrary files to the footer and TOC parser and then
// through every reader path.
func FuzzIndex(f *testing.F) {
	f.Add(smallArchive(f))
	f.Add(smallFramedArchive(f))
	f.Add(smallRawFramedArchive(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		exerciseArchive(data)
	})
}

// FuzzSalvage feeds arbitrary bytes to the frame walker and the salvage
// state machine.
func FuzzSalvage(f *testing.F) {
	f.Add(smallArchive(f))
	f.Add(smallFramedArchive(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := salvage(context.Background(), bytes.NewReader(data), int64(len(data)), func(e *SalvagedEntry, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			if err != nil && e.Type != store.TypeFile {
				t.Fatalf("non-file %q has data error %v", e.Path, err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("salvage of bytes failed: %v", err)
		}
	})
}

// TestFuzzSeedCorpus keeps the checked-in seed corpus in step with the
// format: regenerate with USMTZ_WRITE_SEEDS=1 go test -run TestFuzzSeedCorpus.
func TestFuzzSeedCorpus(t *testing.T) {
	good := smallArchive(t)
	seeds := map[string][]byte{"valid": good}
	// Variations the fuzzers should start from: truncations and flips in
	// each region.
	seeds["truncated-half"] = good[:len(good)/2]
	seeds["no-footer"] = good[:len(good)-footerSize]
	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 0x40
		return b
	}
	seeds["flip-footer"] = flip(len(good) - 30)
	seeds["flip-toc"] = flip(len(good) - footerSize - 20)
	seeds["flip-data"] = flip(len(good) / 3)
	if os.Getenv("USMTZ_WRITE_SEEDS") == "" {
		for _, fz := range []string{"FuzzIndex", "FuzzSalvage"} {
			ents, err := os.ReadDir(filepath.Join("testdata/fuzz", fz))
			if err != nil || len(ents) < len(seeds) {
				t.Errorf("seed corpus for %s missing (%v); regenerate with USMTZ_WRITE_SEEDS=1", fz, err)
			}
		}
		return
	}
	for _, fz := range []string{"FuzzIndex", "FuzzSalvage"} {
		d := filepath.Join("testdata/fuzz", fz)
		os.MkdirAll(d, 0o755)
		for name, b := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(d, "seed-"+name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
