package compress

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/store"
)

// Encoder experiments on a real store (scripts/bench/compress.sh builds
// one). Skipped unless USMTKIT_BENCH_STORE names a directory:
//
//	USMTKIT_BENCH_STORE=/tmp/usmtkit-bench-compress/profile-300M/store \
//	  go test ./compress -run TestEncoderOptions -v -count 1
//
// It reads every regular file into memory, cuts it like the writer does
// (chunks, tar padding on the last) and encodes all chunks on one
// goroutine with several encoder settings, printing MB/s and total size.
func TestEncoderOptions(t *testing.T) {
	dir := os.Getenv("USMTKIT_BENCH_STORE")
	if dir == "" {
		t.Skip("USMTKIT_BENCH_STORE not set")
	}
	chunk := DefaultChunkSize
	if s := os.Getenv("USMTKIT_BENCH_CHUNK"); s != "" {
		chunk, _ = strconv.Atoi(s)
	}
	var chunks [][]byte
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		total += int64(len(b))
		for len(b) > chunk {
			chunks = append(chunks, b[:chunk])
			b = b[chunk:]
		}
		chunks = append(chunks, append(b, make([]byte, tarPad(int64(len(b))))...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d chunks, %d bytes", len(chunks), total)
	type cfg struct {
		name string
		opts []zstd.EOption
	}
	base := []zstd.EOption{zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true)}
	with := func(o ...zstd.EOption) []zstd.EOption { return append(append([]zstd.EOption{}, base...), o...) }
	cfgs := []cfg{
		{"default", with(zstd.WithEncoderLevel(zstd.SpeedDefault))},
		{"default win4M", with(zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithWindowSize(4<<20))},
		{"default lowmem", with(zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithLowerEncoderMem(true))},
		{"default alllit", with(zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithAllLitEntropyCompression(true))},
		{"default nosingle", with(zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithSingleSegment(false))},
		{"fastest", with(zstd.WithEncoderLevel(zstd.SpeedFastest))},
		{"better", with(zstd.WithEncoderLevel(zstd.SpeedBetterCompression))},
		{"default again", with(zstd.WithEncoderLevel(zstd.SpeedDefault))},
	}
	if os.Getenv("USMTKIT_BENCH_QUICK") != "" {
		cfgs = cfgs[:1]
	}
	dst := make([]byte, 0, chunk+chunk/8)
	encs := make([]*zstd.Encoder, len(cfgs))
	for i, c := range cfgs {
		if encs[i], err = zstd.NewWriter(nil, c.opts...); err != nil {
			t.Fatal(err)
		}
		defer encs[i].Close()
	}
	best := make([]time.Duration, len(cfgs))
	sizes := make([]int64, len(cfgs))
	// Interleaved rounds, best of each: the machine is noisy.
	for round := range 3 {
		for i, enc := range encs {
			var size int64
			start := time.Now()
			for _, ch := range chunks {
				dst = enc.EncodeAll(ch, dst[:0])
				size += int64(len(dst))
			}
			if d := time.Since(start); round == 0 || d < best[i] {
				best[i] = d
			}
			sizes[i] = size
		}
	}
	for i, c := range cfgs {
		t.Logf("%-18s %7.1f MB/s  %d bytes", c.name, float64(total)/best[i].Seconds()/1e6, sizes[i])
	}
}

// benchHeader is a typical header block set: PAX times, attributes,
// creation time.
func benchHeader(b testing.TB) []byte {
	w := &writer{}
	w.toc.kind = "plain"
	e := &store.Entry{StorePath: "USMT/File/C$/Users/jdoe/Documents/Project 012/quarterly report 000123.docx",
		Type: store.TypeFile, Size: 123456, Mode: 0o644, MtimeNs: 1700000000123456789, AtimeNs: 1700000001123456789,
		CtimeNs: 1700000002123456789, BtimeNs: 1600000000123456789, HasBtime: true, WinAttrs: 0x20, HasWinAttr: true}
	h, err := w.tarHeader(e, tocFile, "")
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte(nil), h...)
}

func BenchmarkHeaderFrame(b *testing.B) {
	hdr := benchHeader(b)
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run(l.String(), func(b *testing.B) {
			enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
			defer enc.Close()
			var dst []byte
			for b.Loop() {
				dst = enc.EncodeAll(hdr, dst[:0])
			}
			b.ReportMetric(float64(len(dst)), "B/frame")
			b.ReportMetric(float64(len(hdr)), "B/header")
		})
	}
}
