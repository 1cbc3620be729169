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

// TestCompressCommand covers the compress command line: the archive is a
// store for every other command, lists like its source, and the output
// rules (no overwrite, never inside the store) hold.
func TestCompressCommand(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	out := filepath.Join(dir, "pc.tar.zst")
	code, stdout, stderr := runCLI(t, "compress", sp, "-o", out, "--verify", "--chunk-size", "64KiB", "--level", "fastest")
	if code != 0 || !strings.Contains(stdout, "verified:") {
		t.Fatalf("compress: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// The archive lists exactly like its source.
	_, fromStore, _ := runCLI(t, "ls", "-R", sp)
	code, fromArchive, stderr := runCLI(t, "ls", "-R", out)
	if code != 0 || fromArchive != fromStore {
		t.Fatalf("ls of the archive differs from ls of the store (exit %d, %s):\n%s\n---\n%s", code, stderr, fromArchive, fromStore)
	}
	code, stdout, _ = runCLI(t, "info", "--json", out)
	var rep infoReport
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.StoreType != "archive" || rep.Summary.Files != int64(fixtures.USMT4Expect.Files+2) {
		t.Fatalf("info on the archive: exit %d %+v", code, rep)
	}
	// A manifest of the store verifies the archive.
	m := filepath.Join(dir, "m.ndjson")
	if code, _, stderr := runCLI(t, "index", sp, "-o", m); code != 0 {
		t.Fatalf("index: %d %s", code, stderr)
	}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"compress", sp, "-o", out}, exitcodes.Usage, "already exists"},
		{[]string{"compress", sp, "-o", filepath.Join(sp, "USMT", "x.tar.zst")}, exitcodes.Usage, "inside the store"},
		{[]string{"compress", sp}, exitcodes.Usage, "needs -o"},
		{[]string{"compress", sp, "-o", out + "2", "--level", "max"}, exitcodes.Usage, "unknown compression level"},
		{[]string{"compress", sp, "-o", out + "2", "--chunk-size", "1KiB"}, exitcodes.Usage, "--chunk-size must be"},
		{[]string{"compress", sp, "-o", out + "2", "--frame-size", "8MiB"}, exitcodes.Usage, "--frame-size must be"},
		{[]string{"compress", sp, "-o", out + "2", "--frame-size", "32KiB"}, exitcodes.Usage, "--frame-size must be"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%v: exit %d, want %d with %q: %s", tc.args, code, tc.code, tc.msg, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(sp, "USMT", "x.tar.zst")); err == nil {
		t.Fatal("something was written inside the store")
	}
	if code, _, stderr := runCLI(t, "compress", sp, "-o", out, "--force"); code != 0 {
		t.Fatalf("--force: %d %s", code, stderr)
	}
	// --frame-size: reported, and the archive's format version follows it.
	for _, tc := range []struct {
		args    []string
		frame   int64
		version string
	}{
		{nil, 128 << 10, "usmtkit archive v2"},
		{[]string{"--frame-size", "256KiB"}, 256 << 10, "usmtkit archive v2"},
		{[]string{"--frame-size", "4MiB"}, 4 << 20, "usmtkit archive v1"},
	} {
		o := filepath.Join(dir, "f.tar.zst")
		code, stdout, stderr := runCLI(t, append([]string{"compress", "--json", "--force", sp, "-o", o}, tc.args...)...)
		var rep compressReport
		if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.FrameSize != tc.frame || rep.ChunkSize != 4<<20 {
			t.Fatalf("%v: exit %d %+v %s", tc.args, code, rep, stderr)
		}
		if _, stdout, _ := runCLI(t, "info", o); !strings.Contains(stdout, tc.version) {
			t.Errorf("%v: info says %q, want %s", tc.args, stdout, tc.version)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".pc.tar.zst.tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

// TestCompressReportsSkipped: FIFOs and sockets cannot be archived; they
// are listed and the run exits 3, never silently dropped.
func TestCompressReportsSkipped(t *testing.T) {
	h := fixtures.Hostile(t, t.TempDir())
	out := filepath.Join(t.TempDir(), "h.tar.zst")
	code, stdout, stderr := runCLI(t, "compress", "--json", h.StorePath, "-o", out)
	if code != exitcodes.Partial {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, stdout, stderr)
	}
	var rep compressReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	var skipped []string
	for _, s := range rep.Skipped {
		skipped = append(skipped, s.Path)
	}
	got := strings.Join(skipped, ",")
	if !strings.Contains(got, h.FIFO) || !strings.Contains(got, h.Socket) {
		t.Fatalf("skipped %v, want the FIFO and the socket", skipped)
	}
}

// TestSalvageCommand: a healthy archive salvages completely (exit 0); a
// truncated one gives back what came before the cut and exits 3.
func TestSalvageCommand(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	out := filepath.Join(dir, "a.tar.zst")
	if code, _, stderr := runCLI(t, "compress", sp, "-o", out); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, stderr := runCLI(t, "salvage", out, filepath.Join(dir, "whole"))
	if code != 0 || !strings.Contains(stdout, "index:       intact") {
		t.Fatalf("healthy salvage: exit %d\n%s\n%s", code, stdout, stderr)
	}
	want, _ := os.ReadFile(filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/report.docx"))
	got, _ := os.ReadFile(filepath.Join(dir, "whole", "USMT/File/C$/Users/jdoe/Documents/report.docx"))
	if string(got) != string(want) {
		t.Fatal("salvaged file differs")
	}
	data, _ := os.ReadFile(out)
	cut := filepath.Join(dir, "cut.tar.zst")
	os.WriteFile(cut, data[:len(data)*2/3], 0o644)
	code, stdout, stderr = runCLI(t, "salvage", "--json", cut, filepath.Join(dir, "part"))
	var rep salvageReport
	if code != exitcodes.Partial || json.Unmarshal([]byte(stdout), &rep) != nil {
		t.Fatalf("truncated salvage: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if rep.IndexOK || rep.EndOfArchive || rep.Intact == 0 {
		t.Fatalf("report %+v", rep)
	}
	if code, _, _ := runCLI(t, "salvage", out); code != exitcodes.Usage {
		t.Fatalf("missing DEST: exit %d", code)
	}
}
