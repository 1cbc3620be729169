package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/store"
)

const efsRel = `C:\Users\jdoe\Documents\secret.docx`

// efsStore builds a hard-link store on a real ntfs-3g volume with one
// NTFS-encrypted file, as ScanState /efs:hardlink (or /efs:copyraw) leaves
// it: the encrypted attribute is set on the fixture's live file through
// ntfs-3g's system.ntfs_efsinfo, and the store links it.
func efsStore(t *testing.T) (*fixtures.NTFSVolume, fixtures.HardLink) {
	t.Helper()
	vol := fixtures.NewNTFSVolume(t, 32)
	hl := fixtures.HardLinkStore(t, vol.Mount)
	vol.Remount(t, "efs_raw")
	live := filepath.Join(hl.Live, "Documents/secret.docx")
	if err := fixtures.MakeEFSFile(live, []byte("an EFS stream, not the user's words")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(live, filepath.Join(hl.StorePath, "USMT/File/C$/Users/jdoe/Documents/secret.docx")); err != nil {
		t.Fatal(err)
	}
	if a, err := fixtures.ReadNTFSAttrib(live); err != nil || a&fixtures.NTFSAttrEncrypted == 0 {
		t.Fatalf("the fixture is not encrypted: %#x %v", a, err)
	}
	return vol, hl
}

// Every command says "raw EFS data: decrypt on Windows" next to an
// encrypted file; none presents it as ordinary content. Readable (efs_raw
// mount): exit 0, and verify's OK line names them. Unreadable (a plain
// mount, as technicians mount): verify and extract exit 3 and say why.
func TestEFSFlaggedByEveryCommand(t *testing.T) {
	vol, hl := efsStore(t)

	// info: a count, in text and JSON.
	code, out, errOut := runCLI(t, "info", hl.StorePath)
	if code != 0 || !strings.Contains(out, "EFS:         1 files") || !strings.Contains(out, store.EFSNote) {
		t.Errorf("info: exit %d:\n%s%s", code, out, errOut)
	}
	var rep struct {
		Summary struct {
			EFSFiles int64 `json:"efs_files"`
		} `json:"summary"`
	}
	if _, out, _ = runCLI(t, "info", hl.StorePath, "--json"); json.Unmarshal([]byte(out), &rep) != nil || rep.Summary.EFSFiles != 1 {
		t.Errorf("info --json efs_files: %d\n%s", rep.Summary.EFSFiles, out)
	}

	// ls: the E column and the note on the file's line only; JSON fields.
	code, out, _ = runCLI(t, "ls", "-R", hl.StorePath)
	if code != 0 {
		t.Fatalf("ls: exit %d", code)
	}
	marked := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, efsRel) {
			if !strings.HasPrefix(l, "-") || l[5] != 'E' || !strings.HasSuffix(l, "  ["+store.EFSNote+"]") {
				t.Errorf("ls line of the EFS file: %q", l)
			}
			marked++
		} else if strings.Contains(l, store.EFSNote) || (len(l) > 5 && l[5] == 'E') {
			t.Errorf("an ordinary entry is marked: %q", l)
		}
	}
	if marked != 1 {
		t.Errorf("ls -R shows the EFS file %d times:\n%s", marked, out)
	}
	_, out, _ = runCLI(t, "ls", "-R", "--json", hl.StorePath)
	efsLines := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("ls --json: %v: %s", err, l)
		}
		if r["efs"] == true {
			efsLines++
			if r["win_path"] != efsRel || r["note"] != store.EFSNote {
				t.Errorf("ls --json EFS record: %v", r)
			}
		}
	}
	if efsLines != 1 {
		t.Errorf("ls --json: %d EFS records", efsLines)
	}

	// verify on the efs_raw mount: the raw stream reads, so OK, but the OK
	// line and a note per file say what it is.
	code, out, errOut = runCLI(t, "verify", hl.StorePath)
	if code != 0 || !strings.Contains(out, "EFS:        1 files") ||
		!strings.Contains(out, "result:     OK: every file checked at the data level; 1 of them hold raw EFS data: decrypt on Windows") ||
		!strings.Contains(errOut, "note: "+efsRel+": "+store.EFSNote) {
		t.Errorf("verify (efs_raw): exit %d:\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "verify", hl.StorePath, "--report", "all", "--json")
	if code != 0 || !strings.Contains(out, `"efs":true,"note":"`+store.EFSNote+`"`) || !strings.Contains(out, `"efs_files":1`) {
		t.Errorf("verify --json (efs_raw): exit %d:\n%s", code, out)
	}

	// extract: a note per file, the count and the list, in text and JSON.
	dest := filepath.Join(t.TempDir(), "out")
	code, out, errOut = runCLI(t, "extract", hl.StorePath, dest)
	if code != 0 || !strings.Contains(out, "EFS:        1 files") || !strings.Contains(out, efsRel+"  ["+store.EFSNote+"]") ||
		!strings.Contains(errOut, "note: "+efsRel+": "+store.EFSNote) {
		t.Errorf("extract: exit %d:\n%s%s", code, out, errOut)
	}
	var ex struct {
		EFS      int64    `json:"efs"`
		EFSFiles []string `json:"efs_files"`
	}
	code, out, _ = runCLI(t, "extract", hl.StorePath, filepath.Join(t.TempDir(), "out2"), "--json")
	if code != 0 || json.Unmarshal([]byte(lastLine(out)), &ex) != nil || ex.EFS != 1 || len(ex.EFSFiles) != 1 || ex.EFSFiles[0] != efsRel {
		t.Errorf("extract --json: exit %d: %+v\n%s", code, ex, out)
	}

	// As a technician mounts the disk: ntfs-3g refuses to read encrypted
	// files. verify and extract say UNREADABLE/damaged with the EFS words
	// and how to read the raw stream; exit 3.
	vol.Remount(t, "ro")
	code, out, errOut = runCLI(t, "verify", hl.StorePath)
	if code != exitcodes.Partial || !strings.Contains(out, "UNREADABLE") || !strings.Contains(out, store.EFSNote) || !strings.Contains(out, "efs_raw") {
		t.Errorf("verify (plain mount): exit %d:\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "extract", hl.StorePath, filepath.Join(t.TempDir(), "out3"), "--continue")
	if code != exitcodes.Partial || !strings.Contains(out+errOut, "efs_raw") || !strings.Contains(out, "EFS:        1 files") {
		t.Errorf("extract (plain mount): exit %d:\n%s%s", code, out, errOut)
	}
	if code, out, _ = runCLI(t, "ls", hl.StorePath, `C:\Users\jdoe\Documents`); code != 0 || !strings.Contains(out, "secret.docx  ["+store.EFSNote+"]") {
		t.Errorf("ls (plain mount): exit %d:\n%s", code, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
