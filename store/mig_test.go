package store_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// migAt moves a synthetic MIG's records so the first starts at first
// (zero bytes fill the gap after the 8-byte signature).
func migAt(b []byte, first int) []byte {
	out := append([]byte{}, b[:8]...)
	out = append(out, make([]byte, first-8)...)
	return append(out, b[fixtures.MIGFirstRecordPlain:]...)
}

// TestMIGVerdictsAgainstFile: every crafted MIG is judged by usmtkit and by
// libmagic (file -b, the external oracle); the encryption verdicts and the
// first names agree, except where a line below says why they cannot.
func TestMIGVerdictsAgainstFile(t *testing.T) {
	fixtures.RequireTool(t, "file")
	plain, recs := fixtures.BuildMIG(false, nil)
	enc := fixtures.MIGFile(true, nil)
	first := recs[0].Name
	cases := []struct {
		name      string
		data      []byte
		encrypted bool
		damaged   bool
		// fileDisagrees is why libmagic's verdict differs from ours ("" = it agrees).
		fileDisagrees string
	}{
		{name: "plain-0x18", data: plain},
		{name: "plain-0x20", data: migAt(plain, 0x20),
			fileDisagrees: "file(1) looks for the zlib stream only when the first record is at 0x18"},
		{name: "plain-0x34", data: migAt(plain, 0x34),
			fileDisagrees: "file(1) calls any first record past 0x18 'with password'; its payload inflates, so it is not encrypted"},
		{name: "plain-photorec-tail", data: append(append([]byte{}, plain...), make([]byte, 8)...)},
		{name: "plain-garbage-after-tail", data: append(append([]byte{}, plain...), bytes.Repeat([]byte{0xAB}, 13)...), damaged: true},
		{name: "plain-truncated", data: fixtures.TruncatedMIG(false, nil), damaged: true},
		{name: "encrypted", data: enc, encrypted: true},
		{name: "encrypted-truncated", data: fixtures.TruncatedMIG(true, nil), encrypted: true, damaged: true},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".MIG")
			if err := os.WriteFile(p, c.data, 0o644); err != nil {
				t.Fatal(err)
			}
			info, err := store.WalkMIG(p)
			if err != nil {
				t.Fatal(err)
			}
			if info.Encrypted != c.encrypted || info.Damaged() != c.damaged {
				t.Errorf("encrypted %v damaged %v (%+v), want %v %v", info.Encrypted, info.Damaged(), info, c.encrypted, c.damaged)
			}
			if info.EncryptionEvidence == "" {
				t.Error("no evidence given for the verdict")
			}
			if len(info.FirstNames) == 0 || info.FirstNames[0] != first {
				t.Errorf("first names %q, want %q first (names are read in both kinds)", info.FirstNames, first)
			}
			out, err := exec.Command("file", "-b", p).Output()
			if err != nil {
				t.Fatal(err)
			}
			magic := string(out)
			fileEnc := strings.Contains(magic, "with password")
			if !fileEnc && !strings.Contains(magic, "without password") {
				t.Fatalf("file(1) does not recognise the file: %q", magic)
			}
			if fileEnc != info.Encrypted {
				if c.fileDisagrees == "" {
					t.Errorf("file(1) says %q, usmtkit says encrypted=%v", strings.TrimSpace(magic), info.Encrypted)
				}
				return
			}
			if c.fileDisagrees != "" {
				t.Errorf("file(1) now agrees (%q): drop the documented disagreement %q", strings.TrimSpace(magic), c.fileDisagrees)
			}
			// file(1) prints the first name only where it finds the first
			// record (0x18); it reads a fixed-size string, so compare the prefix.
			if i := strings.Index(magic, "1st "); i >= 0 && !strings.HasPrefix(magic[i+4:], first) {
				t.Errorf("file(1) names %q first, usmtkit %q", magic[i+4:], first)
			}
		})
	}
}
