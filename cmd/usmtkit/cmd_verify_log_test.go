package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

// verify --log onto a name that is a hard link to a store file replaces
// the name; the store file (the other name of the old inode) is untouched.
func TestVerifyLogNeverWritesThroughAHardLink(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	storeFile := filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/report.docx")
	before, err := os.ReadFile(storeFile)
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "verify.log")
	if err := os.Link(storeFile, log); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "verify", sp, "--log", log); code != 0 {
		t.Fatalf("verify --log: exit %d %s", code, stderr)
	}
	after, err := os.ReadFile(storeFile)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the store file changed through the log's hard link (%v)", err)
	}
	got, err := os.ReadFile(log)
	if err != nil || !strings.Contains(string(got), "CATALOG") {
		t.Fatalf("the log: %v %q", err, got)
	}
}
