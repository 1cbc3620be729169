package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/fusefs"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/store"
)

// writeMIG writes data as DIR/NAME/USMT.MIG.
func writeMIG(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name, "USMT.MIG")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// winToDest is where --layout windows puts a Windows path below DEST.
func winToDest(dest, win string) string {
	return filepath.Join(dest, win[:1], filepath.FromSlash(strings.ReplaceAll(win[3:], `\`, "/")))
}

// TestExtractExperimentalMIG: extract --experimental-mig writes every File
// record of an unencrypted MIG byte for byte under its Windows path, lists
// what it left out (text and --json) and exits 3 for it; it says
// EXPERIMENTAL on stderr and in --json; a clean MIG exits 0; without the
// flag nothing changes (exit 13), and the flag does not open what is not
// a readable MIG.
func TestExtractExperimentalMIG(t *testing.T) {
	dir := t.TempDir()
	data, want, wantLeft := fixtures.MIGWithOddities()
	odd := writeMIG(t, dir, "odd", data)

	code, _, stderr := runCLI(t, "extract", odd, filepath.Join(dir, "no-flag"))
	if code != exitcodes.Unsupported || !strings.Contains(stderr, "--experimental-mig") {
		t.Errorf("without the flag: exit %d, %s", code, stderr)
	}

	dest := filepath.Join(dir, "out-json")
	code, out, stderr := runCLI(t, "extract", "--experimental-mig", "--json", odd, dest)
	if code != exitcodes.Partial || !strings.Contains(stderr, "usmtkit: warning: EXPERIMENTAL") || !strings.Contains(stderr, "left out") {
		t.Fatalf("exit %d (want 3)\n%s", code, stderr)
	}
	for win, content := range want {
		b, err := os.ReadFile(winToDest(dest, win))
		if err != nil || string(b) != content {
			t.Errorf("%s: %d bytes (want %d), %v", win, len(b), len(content), err)
		}
	}
	var sum struct {
		Extracted int64 `json:"extracted"`
		MIG       *struct {
			Note         string             `json:"note"`
			Files        int64              `json:"files"`
			LeftOut      []store.MIGLeftOut `json:"left_out"`
			LeftOutCount int64              `json:"left_out_count"`
		} `json:"experimental_mig"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.MIG == nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if !strings.HasPrefix(sum.MIG.Note, "EXPERIMENTAL") || sum.Extracted != int64(len(want)) || sum.MIG.Files != int64(len(want)) ||
		sum.MIG.LeftOutCount != int64(len(wantLeft)+1) || len(sum.MIG.LeftOut) != len(wantLeft)+1 {
		t.Errorf("summary: extracted %d, %+v", sum.Extracted, sum.MIG)
	}
	for _, l := range sum.MIG.LeftOut {
		if l.Why == "" || l.Offset <= 0 {
			t.Errorf("left out without a reason or an offset: %+v", l)
		}
	}

	// Text summary of a clean MIG: exit 0, EXPERIMENTAL said, nothing left out.
	clean := writeMIG(t, dir, "clean", fixtures.MIGFile(false, nil))
	code, out, stderr = runCLI(t, "extract", "--experimental-mig", clean, filepath.Join(dir, "out-clean"))
	if code != 0 || !strings.Contains(out, "extracted 4 files") || !strings.Contains(out, "EXPERIMENTAL") || strings.Contains(out, "LEFT OUT") {
		t.Errorf("clean: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCLI(t, "extract", "--experimental-mig", odd, filepath.Join(dir, "out-text"))
	if code != exitcodes.Partial || !strings.Contains(out, "LEFT OUT (USMT.MIG records not interpreted): 10") || !strings.Contains(out, `C:\Users\jdoe\notzlib.txt (record at`) {
		t.Errorf("text summary: exit %d\n%s", code, out)
	}

	// What the flag refuses.
	sp := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{writeMIG(t, dir, "enc", fixtures.MIGFile(true, nil))}, exitcodes.Encrypted, "/decrypt /key:"},
		{[]string{sp}, exitcodes.Usage, "drop --experimental-mig"},
		{[]string{"--layout", "store", clean}, exitcodes.Usage, "catalog.mig"},
	} {
		args := append([]string{"extract", "--experimental-mig"}, c.args...)
		code, out, stderr := runCLI(t, append(args, filepath.Join(dir, "refused"))...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d (want %d)\n%s%s", c.args, code, c.code, out, stderr)
		}
	}

	// The built binary gives the same exit status.
	cmd := exec.Command(buildBinary(t), "extract", "--experimental-mig", "-q", odd, filepath.Join(dir, "out-bin"))
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitcodes.Partial {
		t.Errorf("binary: %v (want exit 3)", err)
	}
}

// TestMountExperimentalMIG mounts a crafted MIG for real: the files read
// back byte for byte, EXPERIMENTAL.txt sits at the mount's root in both
// views and lists what was left out, and the mount ends with exit 3 (0
// for a clean MIG). --background reports 3 at once.
func TestMountExperimentalMIG(t *testing.T) {
	dir := t.TempDir()
	data, want, _ := fixtures.MIGWithOddities()
	odd := writeMIG(t, dir, "odd", data)

	mnt := emptyDir(t)
	s := startMount(t, &mountOptions{ExperimentalMIG: true}, odd, mnt)
	for win, content := range want {
		b, err := os.ReadFile(winToDest(mnt, win))
		if err != nil || string(b) != content {
			t.Errorf("%s: %d bytes (want %d), %v", win, len(b), len(content), err)
		}
	}
	marker, err := os.ReadFile(filepath.Join(mnt, store.MIGMarkerName))
	if err != nil || !strings.Contains(string(marker), "INFERRED") || !strings.Contains(string(marker), "Left out: 10") ||
		!strings.Contains(string(marker), `C:\Users\jdoe\twice.txt`) {
		t.Errorf("EXPERIMENTAL.txt: %v\n%s", err, marker)
	}
	kids, _ := os.ReadDir(mnt)
	var names []string
	for _, k := range kids {
		names = append(names, k.Name())
	}
	if strings.Join(names, " ") != "C D EXPERIMENTAL.txt" {
		t.Errorf("mount root: %v", names)
	}
	if out := s.out.String(); !strings.Contains(out, "warning: EXPERIMENTAL") || !strings.Contains(out, "left out: ") {
		t.Errorf("stderr: %s", out)
	}
	if err := s.stop(t); !errors.Is(err, exitcodes.ErrPartial) {
		t.Errorf("the mount ended with %v, want exit 3", err)
	}

	// The store view has the marker at its root too; a clean MIG ends with 0.
	clean := writeMIG(t, dir, "clean", fixtures.MIGFile(false, nil))
	mnt2 := emptyDir(t)
	s2 := startMount(t, &mountOptions{ExperimentalMIG: true, View: "store"}, clean, mnt2)
	if _, err := os.Stat(filepath.Join(mnt2, store.MIGMarkerName)); err != nil {
		t.Errorf("store view: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt2, "USMT/File/C$/Users/jdoe/Desktop/notes.txt")); err != nil || len(b) != 2500 {
		t.Errorf("store view file: %d bytes, %v", len(b), err)
	}
	if err := s2.stop(t); err != nil {
		t.Errorf("clean MIG: the mount ended with %v", err)
	}

	// --background: the parent exits 3 while the child serves.
	mnt3 := emptyDir(t)
	cmd := helper(t, "mount", "--background", "--experimental-mig", odd, mnt3)
	out, err := cmd.CombinedOutput()
	t.Cleanup(func() {
		if _, ok := fusefs.MountAt(mnt3); ok {
			_ = fusefs.LazyUnmount(mnt3)
		}
	})
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitcodes.Partial || !strings.Contains(string(out), "serving ") {
		t.Fatalf("mount --background: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(mnt3, store.MIGMarkerName)); err != nil {
		t.Errorf("background mount: %v", err)
	}
	if code, _, stderr := runCLI(t, "umount", mnt3); code != 0 {
		t.Errorf("umount: %d %s", code, stderr)
	}
	waitMounted(t, mnt3, false)
}
