package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

type inodeInfo struct {
	size  int64
	nlink uint64
}

// inodes maps every regular file's inode under root to its size and link count.
func inodes(t *testing.T, root string) map[uint64]inodeInfo {
	t.Helper()
	out := map[uint64]inodeInfo{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		out[st.Ino] = inodeInfo{size: st.Size, nlink: uint64(st.Nlink)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func freeSpace(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// rd removes exactly the store: live files stay with one link less, the
// bytes that vanish are the bytes it announced, and the free space grows
// by about as much.
func TestRdRemovesExactlyTheStore(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 64)
	h := fixtures.HardLinkStore(t, v.Mount)
	// A read-only live file: Windows must clear the attribute (on the
	// shared inode) to delete a link; through ntfs-3g it stays set.
	resume := filepath.Join(h.Live, "Documents/resume.docx")
	if err := fixtures.SetNTFSAttrib(resume, fixtures.NTFSAttrArchive|fixtures.NTFSAttrReadOnly); err != nil {
		t.Fatal(err)
	}
	before := inodes(t, v.Mount)
	liveBefore := inodes(t, h.Live)
	freeBefore := freeSpace(t, v.Mount)

	// Dry run: says what it would free, removes nothing.
	code, out, errOut := runCLI(t, "rd", h.StorePath, "--live", "C="+v.Mount, "--json")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errOut)
	}
	var dry rdReport
	if err := json.Unmarshal([]byte(out), &dry); err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Refused || dry.Removed != nil || dry.LostFiles != 0 {
		t.Errorf("dry run report: %+v", dry)
	}
	if _, err := os.Stat(h.StorePath); err != nil {
		t.Fatalf("the dry run removed the store: %v", err)
	}

	code, out, errOut = runCLI(t, "rd", h.StorePath, "--live", "C="+v.Mount, "--yes", "--json")
	if code != 0 {
		t.Fatalf("rd --yes: exit %d: %s\n%s", code, errOut, out)
	}
	var rep rdReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(h.StorePath); !os.IsNotExist(err) {
		t.Errorf("the store folder is still there: %v", err)
	}
	if rep.Removed == nil || rep.Removed.Files != int64(len(h.Linked)+len(h.Copied)+2) || rep.Removed.Skipped != 0 {
		t.Errorf("removed: %+v", rep.Removed)
	}
	// Live files: all there, one link fewer for the linked ones.
	liveAfter := inodes(t, h.Live)
	if len(liveAfter) != len(liveBefore) {
		t.Errorf("live files %d, were %d", len(liveAfter), len(liveBefore))
	}
	for ino, b := range liveBefore {
		a, ok := liveAfter[ino]
		want := b.nlink - 1
		if b.nlink == 1 {
			want = 1 // outlook.pst: the store held a copy, not a link
		}
		if !ok || a.size != b.size || a.nlink != want {
			t.Errorf("live inode %d: %+v -> %+v", ino, b, a)
		}
	}
	if a, err := fixtures.ReadNTFSAttrib(resume); err != nil || a != fixtures.NTFSAttrArchive|fixtures.NTFSAttrReadOnly {
		t.Errorf("live read-only attribute after rd: %#x %v", a, err)
	}
	// The inodes that vanished are exactly the bytes announced.
	after := inodes(t, v.Mount)
	var vanished int64
	for ino, b := range before {
		if _, ok := after[ino]; !ok {
			vanished += b.size
		}
	}
	if vanished != dry.BytesFreed || vanished != 65536+2048+512 {
		t.Errorf("vanished %d bytes, announced %d", vanished, dry.BytesFreed)
	}
	// Free space: small files live inside the MFT record on NTFS and free
	// no cluster; directory index blocks free a little more. Allow that.
	gained := freeSpace(t, v.Mount) - freeBefore
	t.Logf("free space grew by %d bytes; rd announced %d; inodes that vanished held %d", gained, dry.BytesFreed, vanished)
	if gained < 65536 || gained > dry.BytesFreed+256<<10 {
		t.Errorf("free space grew by %d bytes, announced %d", gained, dry.BytesFreed)
	}
}

func TestRdRefusesToLoseData(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 64)
	h := fixtures.HardLinkStore(t, v.Mount)
	brokenLinks(t, h)

	code, out, errOut := runCLI(t, "rd", h.StorePath, "--live", "C="+v.Mount, "--yes")
	if code != exitcodes.Failure || !strings.Contains(errOut, "exist only in the store") || !strings.Contains(out, "clip.mp4") {
		t.Errorf("with lost data: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(h.StorePath, jdoeStore, "Videos/clip.mp4")); err != nil {
		t.Fatalf("a refused rd removed something: %v", err)
	}
	// Without --live nothing can be checked: refuse, and say how.
	code, _, errOut = runCLI(t, "rd", h.StorePath, "--yes")
	if code != exitcodes.Failure || !strings.Contains(errOut, "--live "+v.Mount) {
		t.Errorf("without --live: exit %d: %s", code, errOut)
	}
	// --force removes it anyway.
	code, out, errOut = runCLI(t, "rd", h.StorePath, "--live", "C="+v.Mount, "--yes", "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d: %s %s", code, out, errOut)
	}
	if _, err := os.Lstat(h.StorePath); !os.IsNotExist(err) {
		t.Errorf("store still there after --force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.Live, "Archive/todo.txt")); err != nil {
		t.Errorf("the moved live file is gone: %v", err)
	}
}

func TestRdRefusesDangerousRoots(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 32)
	fixtures.HardLinkStore(t, v.Mount)
	for _, args := range [][]string{
		{"rd", "--plain", v.Mount, "--yes", "--force"},
		{"rd", "--plain", "/", "--yes", "--force"},
		{"rd", "--plain", "/tmp", "--yes", "--force"},
	} {
		code, _, errOut := runCLI(t, args...)
		if code == 0 || !strings.Contains(errOut, "refusing") {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(v.Mount, "Users/jdoe/Documents/resume.docx")); err != nil {
		t.Fatal(err)
	}
}

// Both volumes of a two-volume store are removed in one go.
func TestRdTwoVolumes(t *testing.T) {
	c := fixtures.NewNTFSVolume(t, 32)
	d := fixtures.NewNTFSVolume(t, 32)
	hc := fixtures.HardLinkStore(t, c.Mount)
	liveD := filepath.Join(d.Mount, "Data/y.bin")
	if err := os.MkdirAll(filepath.Dir(liveD), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(liveD, []byte("on d"), 0o644); err != nil {
		t.Fatal(err)
	}
	storeD := filepath.Join(d.Mount, "USMTMIG")
	if err := os.MkdirAll(filepath.Join(storeD, "USMT/File/D$/Data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(liveD, filepath.Join(storeD, "USMT/File/D$/Data/y.bin")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "rd", hc.StorePath, storeD, "--live", "C="+c.Mount, "--live", "D="+d.Mount, "--yes")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, p := range []string{hc.StorePath, storeD} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there", p)
		}
	}
	if b, err := os.ReadFile(liveD); err != nil || string(b) != "on d" {
		t.Errorf("live D file: %q %v", b, err)
	}
}
