package compress

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/store"
)

// millionArchive writes an archive file whose TOC lists dirs×perDir files
// of one chunk each, built with the writer's TOC builder. The data region
// is a sparse hole: only the index is read when opening.
func millionArchive(tb testing.TB, dirs, perDir int) string {
	tb.Helper()
	b := tocBuilder{kind: store.KindUSMTDir, version: "USMT 4+", chunkSize: DefaultChunkSize, createdNs: time.Now().UnixNano()}
	off := uint64(0)
	add := func(e *tocEntry) uint32 {
		e.hdrOff, e.linkTarget = off, noIndex
		off += 300
		i, err := b.addEntry(e)
		if err != nil {
			tb.Fatal(err)
		}
		return i
	}
	add(&tocEntry{typ: tocDir})
	for d := range dirs {
		di := add(&tocEntry{parent: 0, name: fmt.Sprintf("Folder %04d", d), typ: tocDir, mtime: 1})
		for f := range perDir {
			add(&tocEntry{parent: di, name: fmt.Sprintf("Document %06d - final.docx", f), typ: tocFile, size: 20000, mtime: 2, mode: 0o644})
			if err := b.addChunk(off, 9000, 20000, 0); err != nil {
				tb.Fatal(err)
			}
			off += 9000
		}
	}
	raw, err := b.finish()
	if err != nil {
		tb.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	defer enc.Close()
	tocFrame, foot, err := indexFrames(enc, raw, int64(off), uint64(b.count()), formatSingleFrame)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "million.tar.zst")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(append(tocFrame, foot...), int64(off)); err != nil {
		tb.Fatal(err)
	}
	return path
}

// TestMillionEntryTOC: a one-million-entry TOC loads in about a second and
// takes well under 200 MB. The numbers are logged for
// scripts/bench/compress.sh.
func TestMillionEntryTOC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1M-entry TOC (several seconds)")
	}
	path := millionArchive(t, 1000, 1000)
	fi, _ := os.Stat(path)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	a, err := Open(path, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("TOC load: %d entries in %v, retained heap %.1f MB, peak total alloc %.1f MB (index %d bytes on disk)",
		a.EntryCount(), elapsed, float64(heap)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6, fi.Size()-int64(a.ft.tocOffset))
	if heap > 200<<20 {
		t.Errorf("the TOC takes %d MB, want well under 200", heap>>20)
	}
	if !raceEnabled && elapsed > 3*time.Second {
		t.Errorf("loading took %v, want about a second", elapsed)
	}
	// The index is usable: lookups and a full walk.
	e, err := a.Stat("Folder 0999/Document 000999 - final.docx")
	if err != nil || e.Size != 20000 || e.WinPath != "" {
		t.Errorf("stat: %+v %v", e, err)
	}
	start = time.Now()
	n := 0
	a.Walk(context.Background(), func(*store.Entry, error) error { n++; return nil })
	t.Logf("walk of %d entries: %v", n, time.Since(start))
	if n != 1000*1000+1000+1 {
		t.Errorf("walked %d entries", n)
	}
	runtime.KeepAlive(a)
	a.Close()
}

func BenchmarkOpenMillionTOC(b *testing.B) {
	path := millionArchive(b, 1000, 1000)
	b.ReportAllocs()
	for b.Loop() {
		a, err := Open(path, ReaderOptions{})
		if err != nil {
			b.Fatal(err)
		}
		a.Close()
	}
}
