package hardlinkscan

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

func TestCheckRemovableRefusesDangerousRoots(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 32)
	home := t.TempDir()
	t.Setenv("HOME", filepath.Join(home, "me"))
	if err := os.MkdirAll(filepath.Join(home, "me"), 0o755); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(v.Mount, "USMTMIG")
	liveIn := filepath.Join(v.Mount, "USMTMIG", "live")
	if err := os.MkdirAll(liveIn, 0o755); err != nil {
		t.Fatal(err)
	}
	linkToHome := filepath.Join(t.TempDir(), "looks-like-a-store")
	if err := os.Symlink(filepath.Join(home, "me"), linkToHome); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		root string
		live []LiveRoot
		want string
	}{
		{"/", nil, "top-level"},
		{"/tmp", nil, "top-level"},
		{"/etc", nil, "top-level"},
		{v.Mount, nil, "root of a mounted volume"},
		{filepath.Join(home, "me"), nil, "home directory"},
		{home, nil, "holding the home directory"},
		{linkToHome, nil, "home directory"},
		{store, []LiveRoot{{Drive: "C", Path: liveIn}}, "holds the live volume folder"},
	} {
		err := CheckRemovable(c.root, c.live)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.root, err, c.want)
		}
	}
	if err := CheckRemovable(store, []LiveRoot{{Drive: "C", Path: v.Mount}}); err != nil {
		t.Errorf("a store folder on the volume: %v", err)
	}
}

// Remove never follows a symlink and never enters or removes a mount point
// inside the store; it reports what it left.
func TestRemoveStaysInsideTheStore(t *testing.T) {
	if os.Geteuid() != 0 {
		fixtures.Unavailable(t, "mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	store := filepath.Join(dir, "store")
	write(t, filepath.Join(outside, "precious.txt"), []byte("keep me"), fixtures.DefaultMtime)
	write(t, filepath.Join(store, "USMT/File/C$/a.txt"), []byte("a"), fixtures.DefaultMtime)
	if err := os.Symlink(outside, filepath.Join(store, "USMT/File/C$/link-to-outside")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "precious.txt"), filepath.Join(store, "file-link")); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(store, "USMT/mounted")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt).CombinedOutput(); err != nil {
		fixtures.Unavailable(t, fmt.Sprintf("mount tmpfs: %v %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	write(t, filepath.Join(mnt, "other-fs.txt"), []byte("other"), fixtures.DefaultMtime)

	res, err := Remove(context.Background(), []string{store})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "precious.txt")); err != nil || string(b) != "keep me" {
		t.Errorf("outside file: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "other-fs.txt")); err != nil {
		t.Errorf("the mounted file system was entered: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(store, "USMT/File")); err == nil {
		t.Errorf("USMT/File should be gone")
	}
	if res.Skipped != 1 || len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error, "another file system") {
		t.Errorf("result %+v", res)
	}
	if res.Files != 1 || res.Others != 2 {
		t.Errorf("removed files %d others %d", res.Files, res.Others)
	}
	if len(res.Roots) != 0 {
		t.Errorf("the root must stay while something is left in it: %v", res.Roots)
	}
}
