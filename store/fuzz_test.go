package store

import (
	"bytes"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

// FuzzWalkMIG feeds arbitrary bytes to the USMT.MIG structural walk: it
// must never panic, loop forever or claim more records than fit.
func FuzzWalkMIG(f *testing.F) {
	f.Add(fixtures.MIGFile(false, []string{`File\C:\Users\jdoe\a.docx`}))
	f.Add(fixtures.MIGFile(true, nil))
	f.Add(fixtures.TruncatedMIG(false, nil))
	f.Add([]byte("1giM\x02\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := walkMIG(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if IsMIGSignature(data) {
				t.Fatalf("a MIG signature was refused: %v", err)
			}
			return
		}
		if int64(info.Records)*24 > int64(len(data)) || info.ChainEnd > int64(len(data))+1<<32+24 {
			t.Fatalf("impossible walk over %d bytes: %+v", len(data), info)
		}
	})
}

// FuzzPaths checks the path helpers on arbitrary store paths.
func FuzzPaths(f *testing.F) {
	for _, s := range []string{"USMT/File/C$/Users/jdoe/a.txt", "USMT/catalog.mig", "USMT3/File/d$", "", "a/b", "USMT/File/C$"} {
		f.Add(s, "USMT/File/C$/x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		win, control := MapPath(KindUSMTDir, a)
		if control && win != "" {
			t.Fatalf("control file %q with a Windows path %q", a, win)
		}
		if win != "" && DriveOf(win) == "" {
			t.Fatalf("windows path %q of %q has no drive", win, a)
		}
		if c1, c2 := ComparePaths(a, b), ComparePaths(b, a); c1 != -c2 {
			t.Fatalf("ComparePaths not antisymmetric on %q %q: %d %d", a, b, c1, c2)
		}
		if ComparePaths(a, a) != 0 {
			t.Fatalf("ComparePaths(%q, itself) != 0", a)
		}
	})
}
