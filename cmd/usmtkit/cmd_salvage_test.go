package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

// Salvage onto a real NTFS volume mounted by ntfs-3g with windows_names,
// which refuses b:colon.txt, CON.txt, "trail." and "space " (EINVAL), from
// an archive of a store made on NTFS (where those names and a 300-byte
// name, 100 UTF-16 units, are legal: fixtures.RejectedNames): every entry is written, the odd names
// escaped or shortened as extract writes them, the entries after them
// (Music, Pictures, D$) too; exit 0. Into a DEST that already holds one
// of the files, that file is left as it was, listed as not written, and
// every other entry is written; exit 3.
func TestSalvageToNTFSWindowsNames(t *testing.T) {
	vol := fixtures.NewNTFSVolume(t, 96)
	sp := fixtures.USMT4(t, filepath.Join(vol.Mount, "src"))
	docs := "USMT/File/C$/Users/jdoe/Documents/"
	odd := map[string]string{} // name -> written ("": shortened)
	long := ""
	for _, r := range fixtures.RejectedNames {
		odd[r.Name] = r.Written
		if r.Written == "" {
			long = r.Name
		}
	}
	for name := range odd {
		if err := os.WriteFile(filepath.Join(sp, docs, name), []byte("odd "+name), 0o644); err != nil {
			t.Fatalf("making %q on NTFS: %v", name, err)
		}
	}
	archive := filepath.Join(t.TempDir(), "odd.tar.zst")
	if code, _, stderr := runCLI(t, "compress", sp, "-o", archive); code != 0 {
		t.Fatalf("compress: exit %d\n%s", code, stderr)
	}
	vol.Remount(t, "windows_names")
	if err := os.WriteFile(filepath.Join(vol.Mount, "x:y.txt"), nil, 0o644); err == nil {
		t.Fatal("ntfs-3g accepted x:y.txt: windows_names is not in effect")
	}

	dest := filepath.Join(vol.Mount, "restore")
	code, stdout, stderr := runCLI(t, "salvage", "--json", archive, dest)
	var rep salvageReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 {
		t.Fatalf("salvage: exit %d (%v)\n%s\n%s", code, err, stdout, stderr)
	}
	if rep.Names != "windows" || rep.TargetFS != "ntfs-3g" || rep.RefusedCount != 0 || rep.EscapedCount != int64(len(odd)) {
		t.Errorf("report %+v", rep)
	}
	if w := rep.escapedAs(docs + long); w == "" || len(filepath.Base(w)) > 255 || !strings.Contains(w, "~") {
		t.Errorf("the 300-byte name written as %q", w)
	}
	for name, written := range odd {
		if name == long {
			written = filepath.Base(rep.escapedAs(docs + long))
		}
		b, err := os.ReadFile(filepath.Join(dest, docs, written))
		if err != nil || string(b) != "odd "+name {
			t.Errorf("%q: written as %q: %q %v", name, written, b, err)
		}
	}
	for _, p := range fixtures.USMT4Expect.Paths {
		if _, err := os.Lstat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not salvaged: %v", err)
		}
	}
	if !rep.EndOfArchive || !rep.IndexOK || rep.Intact == 0 || rep.DamagedCount+rep.LostCount != 0 {
		t.Errorf("report %+v", rep)
	}

	// A DEST holding one of the files already.
	const reportPath = "USMT/File/C$/Users/jdoe/Documents/report.docx"
	dest2 := filepath.Join(vol.Mount, "restore2")
	existing := filepath.Join(dest2, reportPath)
	if err := os.MkdirAll(filepath.Dir(existing), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(existing, []byte("the technician's copy"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, "salvage", "--json", archive, dest2)
	rep = salvageReport{}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != exitcodes.Partial {
		t.Fatalf("salvage into a DEST with a file: exit %d (%v)\n%s\n%s", code, err, stdout, stderr)
	}
	if rep.RefusedCount != 1 || len(rep.Refused) != 1 || rep.Refused[0].Path != reportPath || !strings.Contains(rep.Refused[0].Error, "already exists") {
		t.Errorf("not written: %+v", rep.Refused)
	}
	if b, _ := os.ReadFile(existing); string(b) != "the technician's copy" {
		t.Errorf("the existing file was changed: %q", b)
	}
	for _, p := range fixtures.USMT4Expect.Paths {
		if _, err := os.Lstat(filepath.Join(dest2, p)); err != nil {
			t.Errorf("not salvaged: %v", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dest2, docs, "b%3Acolon.txt")); err != nil || string(b) != "odd b:colon.txt" {
		t.Errorf("b:colon.txt: %q %v", b, err)
	}
}

// escapedAs is the DEST path an escaped store path was written under.
func (r *salvageReport) escapedAs(storePath string) string {
	for _, e := range r.Escaped {
		if e.Path == storePath {
			return e.Written
		}
	}
	return ""
}
