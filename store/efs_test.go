package store_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// A file ntfs-3g reports as encrypted is counted and flagged; without
// efs_raw its open fails with the EFS words instead of a bare EACCES.
func TestEFSOnNTFS(t *testing.T) {
	vol := fixtures.NewNTFSVolume(t, 32)
	hl := fixtures.HardLinkStore(t, vol.Mount)
	vol.Remount(t, "efs_raw")
	live := filepath.Join(hl.Live, "Documents/secret.docx")
	if err := fixtures.MakeEFSFile(live, []byte("not the user's words, an EFS stream")); err != nil {
		t.Fatal(err)
	}
	rel := "USMT/File/C$/Users/jdoe/Documents/secret.docx"
	if err := os.Link(live, filepath.Join(hl.StorePath, rel)); err != nil {
		t.Fatal(err)
	}
	if a, err := fixtures.ReadNTFSAttrib(live); err != nil || a&fixtures.NTFSAttrEncrypted == 0 {
		t.Fatalf("fixture not encrypted: %#x %v", a, err)
	}

	for _, opts := range []string{"efs_raw", "ro"} {
		vol.Remount(t, opts)
		s, err := store.Open(hl.StorePath)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := store.Summarize(context.Background(), s, nil)
		if err != nil || sum.EFSFiles != 1 || sum.EFSBytes == 0 {
			t.Fatalf("%s: efs files %d bytes %d: %v", opts, sum.EFSFiles, sum.EFSBytes, err)
		}
		e, err := s.Stat(rel)
		if err != nil || !store.IsEFS(e) {
			t.Fatalf("%s: %+v %v", opts, e, err)
		}
		plain, _ := s.Stat(hl.Linked[0])
		if store.IsEFS(plain) {
			t.Errorf("%s: an ordinary file is flagged EFS", opts)
		}
		// ntfs-3g opens an encrypted file either way; without efs_raw it
		// refuses the read.
		var rerr error
		f, err := s.Open(e)
		if err == nil {
			_, rerr = f.ReadAt(make([]byte, 16), 0)
			f.Close()
		}
		switch opts {
		case "efs_raw":
			if err != nil || rerr != nil {
				t.Errorf("efs_raw: open %v, read %v", err, rerr)
			}
		case "ro":
			if err == nil {
				err = rerr
			}
			if err == nil || !strings.Contains(err.Error(), store.EFSNote) || !errors.Is(err, fs.ErrPermission) {
				t.Errorf("ro without efs_raw: error %v, want the EFS words and a permission error", err)
			}
		}
		s.Close()
	}
}
