package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/usmtkit/usmtkit/fixtures"
)

// migFuzzSeeds are the crafted MIGs every MIG fuzz target starts from
// (more are kept in testdata/fuzz).
func migFuzzSeeds() [][]byte {
	bad := fixtures.ZlibPayload([]byte("sum"))
	bad[len(bad)-1] ^= 1
	odd := fixtures.BuildMIGRecords([]fixtures.MIGSpec{
		{Name: `File\C:\Users\jdoe\a.txt`, Content: []byte("a")},
		{Name: `Registry\HKCU\x`, Content: []byte("r")},
		{Name: `File\C:\Users\jdoe\a.txt`, Content: []byte("twice")},
		{Name: `File\C:\Users\jdoe\dir`, Content: []byte("file or folder")},
		{Name: `File\C:\Users\jdoe\dir\b.txt`, Content: []byte("b")},
		{Name: `File\C:\Users\jdoe\notzlib`, Payload: []byte("not zlib at all")},
		{Name: `File\C:\Users\jdoe\badsum`, Payload: bad},
		{NameRaw: []byte("F\x00:\x00x"), Content: []byte("odd")},
	})
	plain := fixtures.MIGFile(false, nil)
	return [][]byte{
		plain,
		append(append([]byte{}, plain...), make([]byte, 8)...),
		fixtures.MIGFile(true, nil),
		fixtures.TruncatedMIG(false, nil),
		odd,
		fixtures.BuildMIGRecords([]fixtures.MIGSpec{{Name: `File\C:\z.bin`, Payload: fixtures.ZlibBombPayload(2)}}),
		fixtures.BuildMIGRecords([]fixtures.MIGSpec{{Name: `File\C:\a`, Content: []byte("x"), SizeField: fixtures.U32(0xffffffe8)}}),
	}
}

// fuzzLimits keeps one input from inflating or walking for long.
func fuzzLimits(f *testing.F) {
	oldInflate, oldRecords := migMaxInflate, migMaxRecords
	migMaxInflate, migMaxRecords = 8<<20, 1<<16
	f.Cleanup(func() { migMaxInflate, migMaxRecords = oldInflate, oldRecords })
}

// FuzzVerifyMIG feeds arbitrary bytes to the record verifier (the walk,
// then every payload inflated): no panic, every record inside the file,
// and nothing reported OK that does not inflate.
func FuzzVerifyMIG(f *testing.F) {
	fuzzLimits(f)
	for _, s := range migFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := walkMIG(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		n := 0
		last := int64(-1)
		err = verifyMIG(context.Background(), bytes.NewReader(data), info, true, func(c MIGRecordCheck) {
			n++
			if c.Offset <= last || c.Offset+24 > int64(len(data)) || c.Stored < 0 || c.Name == "" {
				t.Fatalf("impossible record: %+v after %d", c, last)
			}
			if c.OK && c.Offset+24+c.Stored > int64(len(data)) {
				t.Fatalf("record past the end reported OK: %+v", c)
			}
			if !c.OK && c.Detail == "" {
				t.Fatalf("CORRUPTED without a reason: %+v", c)
			}
			last = c.Offset
		})
		if err != nil {
			t.Fatal(err)
		}
		if int64(n)*24 > int64(len(data)) {
			t.Fatalf("%d records in %d bytes", n, len(data))
		}
	})
}

// FuzzMIGStore feeds arbitrary bytes to the experimental reader: no
// panic; the walk is in ComparePaths order; every file reads back its
// listed size, the same bytes read in order and read backwards; nothing
// both shown and left out.
func FuzzMIGStore(f *testing.F) {
	fuzzLimits(f)
	for _, s := range migFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := walkMIG(bytes.NewReader(data), int64(len(data)))
		if err != nil || info.Encrypted {
			return
		}
		s, err := openMIGReader(context.Background(), bytes.NewReader(data), info, 0, "fuzz.MIG", MIGStoreOptions{Marker: true})
		if err != nil {
			t.Fatal(err)
		}
		prev, files := "", int64(0)
		err = s.Walk(context.Background(), func(e *Entry, err error) error {
			if e.StorePath != "" && ComparePaths(prev, e.StorePath) >= 0 {
				t.Fatalf("walk order: %q then %q", prev, e.StorePath)
			}
			prev = e.StorePath
			if e.Type != TypeFile {
				return nil
			}
			if e.Control != (e.Name() == MIGMarkerName) {
				t.Fatalf("%s: control %v", e.StorePath, e.Control)
			}
			if !e.Control {
				files++
				if !utf8.ValidString(e.StorePath) || !strings.HasPrefix(e.StorePath, "USMT/File/") || e.WinPath == "" {
					t.Fatalf("bad path %q (%q)", e.StorePath, e.WinPath)
				}
			}
			st, err := s.Stat(e.StorePath)
			if err != nil || st.Size != e.Size {
				t.Fatalf("Stat(%s): %v %v", e.StorePath, st, err)
			}
			fh, err := s.Open(e)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			fwd, err := io.ReadAll(io.NewSectionReader(fh, 0, e.Size+1))
			if err != nil || int64(len(fwd)) != e.Size {
				t.Fatalf("%s: read %d of %d bytes: %v", e.StorePath, len(fwd), e.Size, err)
			}
			// Backwards, in 1000-byte steps: every step behind the window restarts the stream.
			back := make([]byte, e.Size)
			for end := e.Size; end > 0; end -= 1000 {
				start := max(0, end-1000)
				if _, err := fh.ReadAt(back[start:end], start); err != nil && err != io.EOF {
					t.Fatalf("%s: ReadAt(%d): %v", e.StorePath, start, err)
				}
			}
			if !bytes.Equal(fwd, back) {
				t.Fatalf("%s: forward and backward reads differ", e.StorePath)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files != s.Files() {
			t.Fatalf("walked %d files, Files() = %d", files, s.Files())
		}
		left, n := s.LeftOut()
		if n < int64(len(left)) || files+n > int64(info.Records)+1+int64(len(left)) {
			t.Fatalf("%d files and %d left out from %d records", files, n, info.Records)
		}
	})
}

// FuzzMIGName checks the record-name rules: a name decodes only when it is
// valid UTF-16, and a File name maps to a store path whose Windows path is
// the name itself (drive letter upper-cased).
func FuzzMIGName(f *testing.F) {
	for _, s := range []string{`File\C:\Users\jdoe\a.txt`, `File\c:\x`, `Registry\HKCU\x`, `File\\\srv\x`, `File\C:\a\\b`, `File\C:\`, "File\\C:\\\U0001F600"} {
		var b []byte
		for _, u := range utf16.Encode([]rune(s)) {
			b = binary.LittleEndian.AppendUint16(b, u)
		}
		f.Add(b)
	}
	f.Add([]byte{'F', 0, 0x00, 0xD8, 'x', 0}) // an unpaired surrogate
	f.Add([]byte{'F', 0, 'x'})                // an odd length
	f.Fuzz(func(t *testing.T, raw []byte) {
		name, err := decodeMIGName(raw)
		if err != nil {
			return
		}
		if !utf8.ValidString(name) || strings.ContainsRune(name, 0) || strings.ContainsRune(name, utf8.RuneError) && !bytes.Contains(raw, []byte{0xfd, 0xff}) {
			t.Fatalf("decoded %q from %x", name, raw)
		}
		sp, why := migFileStorePath(name)
		if (sp == "") == (why == "") {
			t.Fatalf("%q: store path %q and reason %q", name, sp, why)
		}
		if sp == "" {
			return
		}
		win, control := MapPath(KindUSMTDir, sp)
		want := MIGWindowsPath(name)
		want = strings.ToUpper(want[:1]) + want[1:]
		if control || win != want {
			t.Fatalf("%q -> %q -> %q, want %q", name, sp, win, want)
		}
	})
}

// TestWriteMIGFuzzSeeds writes the seeds of the MIG fuzz targets to
// testdata/fuzz (USMTKIT_WRITE_FUZZ_SEEDS=1; the files are committed).
func TestWriteMIGFuzzSeeds(t *testing.T) {
	if os.Getenv("USMTKIT_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set USMTKIT_WRITE_FUZZ_SEEDS=1 to rewrite the seed files")
	}
	for _, target := range []string{"FuzzWalkMIG", "FuzzVerifyMIG", "FuzzMIGStore"} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range migFuzzSeeds() {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("mig-seed-%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
