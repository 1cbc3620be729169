package manifest

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the manifest reader: it must refuse
// damage with an error, never panic, and never hand out records from a
// manifest whose checksum does not hold.
func FuzzReader(f *testing.F) {
	f.Add([]byte(`{"format":"usmtkit-manifest","version":1,"hashed":true,"hash":"xxh64"}` + "\n"))
	f.Add([]byte("not a manifest\n"))
	f.Add([]byte{})
	if seed, err := seedManifest(f); err == nil {
		f.Add(seed)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "m.ndjson")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Open(p)
		if err != nil {
			return
		}
		defer r.Close()
		n := int64(0)
		for {
			rec, err := r.Next()
			if err != nil || rec == nil {
				break
			}
			n++
			if n > r.Records() {
				t.Fatalf("more records (%d) than the trailer declares (%d)", n, r.Records())
			}
		}
	})
}

// seedManifest is a small valid manifest, so the fuzzer starts from the
// real shape.
func seedManifest(f *testing.F) ([]byte, error) {
	var b bytesBuffer
	w, err := NewWriter(&b, Header{Created: "2026-01-01T00:00:00Z", Tool: "usmtkit test", Hashed: true})
	if err != nil {
		return nil, err
	}
	for _, r := range []Record{
		{StorePath: "", Type: "dir"},
		{StorePath: "USMT", Type: "dir"},
		{StorePath: "USMT/catalog.mig", Type: "file", Control: true, Size: 3, XXH64: "0123456789abcdef"},
	} {
		if err := w.Write(&r); err != nil {
			return nil, err
		}
	}
	if _, err := w.Close(); err != nil {
		return nil, err
	}
	return b.data, nil
}

type bytesBuffer struct{ data []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) { b.data = append(b.data, p...); return len(p), nil }
