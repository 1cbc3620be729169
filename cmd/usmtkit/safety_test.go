package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

// readDeep reads the file at root/rel, a path past PATH_MAX, one
// component at a time (openat, no symlink followed).
func readDeep(t *testing.T, root, rel string) []byte {
	t.Helper()
	fd, err := syscall.Open(root, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rel, "/")
	for i, c := range parts {
		flags := syscall.O_RDONLY | syscall.O_NOFOLLOW
		if i < len(parts)-1 {
			flags |= syscall.O_DIRECTORY
		}
		nfd, err := syscall.Openat(fd, c, flags, 0)
		syscall.Close(fd)
		if err != nil {
			t.Fatalf("%s: component %d (%q) of %d: %v", root, i, c, len(parts), err)
		}
		fd = nfd
	}
	defer syscall.Close(fd)
	buf := make([]byte, 4096)
	n, err := syscall.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestDeepTreeEveryCommand is the deep-tree case of the hostile catalogue
// (fixtures.HostileCatalogue): a store with a chain of 4,096 folders, its
// paths far past PATH_MAX, is read completely by info, index + verify,
// extract, compress (and verify of the archive) and mount (of the store
// and of the archive), and the file at the bottom comes out intact. How
// fast is scripts/bench/deep.sh's business.
func TestDeepTreeEveryCommand(t *testing.T) {
	requireMount(t)
	start := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what); start = time.Now() }
	dir := t.TempDir()
	f := fixtures.DeepTree(t, dir, fixtures.DeepTreeLevels)
	winRel := "C/Users/deep/" + strings.Repeat("d/", f.Levels) + "leaf.txt" // extract's and mount's Windows layout
	if len(winRel) <= 4096 {
		t.Fatalf("the leaf's path is only %d bytes", len(winRel))
	}

	step("fixture")
	code, out, errs := runCLI(t, "info", "--json", f.StorePath)
	step("info")
	if code != exitcodes.OK {
		t.Fatalf("info: exit %d\n%s", code, errs)
	}
	var info struct {
		Summary struct {
			Files int64 `json:"files"`
			Dirs  int64 `json:"dirs"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatal(err)
	}
	if info.Summary.Files != int64(f.RegularFiles)+2 || info.Summary.Dirs < int64(f.Levels) {
		t.Errorf("info counted %d files and %d folders; want %d files (%d data + 2 control) and over %d folders",
			info.Summary.Files, info.Summary.Dirs, f.RegularFiles+2, f.RegularFiles, f.Levels)
	}

	man := filepath.Join(dir, "deep.manifest")
	if code, _, errs := runCLI(t, "index", "-o", man, f.StorePath); code != exitcodes.OK {
		t.Fatalf("index: exit %d\n%s", code, errs)
	}
	step("index")
	if code, out, errs := runCLI(t, "verify", "--manifest", man, f.StorePath); code != exitcodes.OK || !strings.Contains(out, "result:     OK") {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}

	step("verify")
	dest := filepath.Join(dir, "out")
	if code, _, errs := runCLI(t, "extract", f.StorePath, dest); code != exitcodes.OK {
		t.Fatalf("extract: exit %d\n%s", code, errs)
	}
	if got := readDeep(t, dest, winRel); !bytes.Equal(got, f.LeafData) {
		t.Errorf("extracted leaf %q, want %q", got, f.LeafData)
	}

	step("extract")
	arch := filepath.Join(dir, "deep.tar.zst")
	if code, _, errs := runCLI(t, "compress", "-o", arch, f.StorePath); code != exitcodes.OK {
		t.Fatalf("compress: exit %d\n%s", code, errs)
	}
	step("compress")
	if code, out, errs := runCLI(t, "verify", arch); code != exitcodes.OK {
		t.Fatalf("verify of the archive: exit %d\n%s%s", code, out, errs)
	}
	step("verify archive")
	for _, src := range []string{f.StorePath, arch} {
		mnt := emptyDir(t)
		s := startMount(t, &mountOptions{}, src, mnt)
		if got := readDeep(t, mnt, winRel); !bytes.Equal(got, f.LeafData) {
			t.Errorf("%s: leaf read through the mount %q, want %q", src, got, f.LeafData)
		}
		if err := s.stop(t); err != nil {
			t.Errorf("%s: mount ended with %v", src, err)
		}
		step("mount " + src)
	}
}

// TestStatsPathInsideStore: --stats is an output and follows the one
// outside-the-store rule, symlinks resolved.
func TestStatsPathInsideStore(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	os.Symlink(sp, filepath.Join(dir, "link"))
	for _, p := range []string{filepath.Join(sp, "stats.json"), filepath.Join(dir, "link", "USMT", "stats.json")} {
		if _, err := checkStatsPath(p, []string{sp}); exitcodes.FromError(err) != exitcodes.Usage || !strings.Contains(err.Error(), "inside the store") {
			t.Errorf("--stats %s: %v", p, err)
		}
	}
	if got, err := checkStatsPath(filepath.Join(dir, "stats.json"), []string{sp}); err != nil || got != filepath.Join(dir, "stats.json") {
		t.Errorf("--stats outside: %q, %v", got, err)
	}
}
