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

func init() {
	// Other packages' tests mount NTFS volumes with stores of the same
	// name at the same time: this package's commands must not see them.
	skipVolume = func(m store.Mount) bool { return fixtures.ForeignTestVolume(m.MountPoint, m.Source) }
}

// twoVolumeStore builds a hard-link store on two real ntfs-3g volumes:
// the master C:\USMTMIG (profile jdoe, control files) and D:\USMTMIG
// (D:\Data linked), as ScanState /hardlink leaves them.
func twoVolumeStore(t *testing.T) (c, d *fixtures.NTFSVolume, hc fixtures.HardLink, sd fixtures.SecondVolume) {
	t.Helper()
	c = fixtures.NewNTFSVolume(t, 32)
	d = fixtures.NewNTFSVolume(t, 32)
	hc = fixtures.HardLinkStore(t, c.Mount)
	sd = fixtures.SecondVolumeStore(t, d.Mount, filepath.Base(hc.StorePath))
	return c, d, hc, sd
}

// info on one volume names the other, warns that it is not read, and
// --all-volumes reads both as one store; the other reading commands take
// the flag through the one place stores are opened.
func TestVolumesFoundAndMerged(t *testing.T) {
	_, _, hc, sd := twoVolumeStore(t)

	code, out, errOut := runCLI(t, "info", hc.StorePath)
	if code != 0 {
		t.Fatalf("info: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "this store also has data on "+sd.StorePath) {
		t.Errorf("info does not list the other volume:\n%s", out)
	}
	if !strings.Contains(errOut, "warning: this store also has data on "+sd.StorePath) || !strings.Contains(errOut, "--all-volumes") {
		t.Errorf("no warning on stderr: %s", errOut)
	}

	var rep map[string]any
	code, out, _ = runCLI(t, "info", hc.StorePath, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("info --json: exit %d: %s", code, out)
	}
	ov, _ := rep["other_volumes"].([]any)
	if len(ov) != 1 {
		t.Fatalf("other_volumes: %v", rep["other_volumes"])
	}
	v := ov[0].(map[string]any)
	if v["path"] != sd.StorePath || v["opened"] != false || v["fs_type"] == "" || v["mount_point"] != sd.Volume {
		t.Errorf("other_volumes[0] = %v", v)
	}
	for k := range v {
		if k != strings.ToLower(k) {
			t.Errorf("key %q is not snake_case", k)
		}
	}
	sumOne := rep["summary"].(map[string]any)["files"].(float64)

	// Given both volumes: nothing is missing, no warning.
	code, out, errOut = runCLI(t, "info", hc.StorePath, sd.StorePath)
	if code != 0 || strings.Contains(out, "also has data") || strings.Contains(errOut, "also has data") {
		t.Errorf("both given: exit %d: %s %s", code, out, errOut)
	}

	// --all-volumes: both roots, every file of both.
	code, out, errOut = runCLI(t, "info", hc.StorePath, "--all-volumes", "--json")
	rep = nil
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("info --all-volumes: exit %d: %s %s", code, out, errOut)
	}
	roots, _ := rep["roots"].([]any)
	if len(roots) != 2 || roots[1] != sd.StorePath {
		t.Errorf("roots: %v", rep["roots"])
	}
	if got := rep["summary"].(map[string]any)["files"].(float64); got != sumOne+float64(len(fixtures.SecondVolumeLinked)) {
		t.Errorf("files with --all-volumes: %v, want %v", got, sumOne+float64(len(fixtures.SecondVolumeLinked)))
	}
	if ov, _ := rep["other_volumes"].([]any); len(ov) != 1 || ov[0].(map[string]any)["opened"] != true {
		t.Errorf("other_volumes with --all-volumes: %v", rep["other_volumes"])
	}
	if strings.Contains(errOut, "also has data") {
		t.Errorf("warning despite --all-volumes: %s", errOut)
	}

	// ls, verify, extract read the D: files with the flag, not without.
	code, out, _ = runCLI(t, "ls", "-R", hc.StorePath, "--all-volumes")
	if code != 0 || !strings.Contains(out, `D:\Data\report.txt`) {
		t.Errorf("ls -R --all-volumes: exit %d:\n%s", code, out)
	}
	_, out, _ = runCLI(t, "ls", "-R", hc.StorePath)
	if strings.Contains(out, `D:\Data`) {
		t.Errorf("ls without --all-volumes lists D:\n%s", out)
	}
	if code, out, errOut = runCLI(t, "verify", hc.StorePath, "--all-volumes"); code != 0 {
		t.Errorf("verify --all-volumes: exit %d: %s %s", code, out, errOut)
	}
	dest := filepath.Join(t.TempDir(), "out")
	// mount --all-volumes keeps its mount point and --stats out of the
	// volumes it added, not only out of the one given.
	inD := filepath.Join(sd.StorePath, "mnt")
	if err := os.Mkdir(inD, 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "mount", "--all-volumes", hc.StorePath, inD)
	if code != exitcodes.Failure || !strings.Contains(errOut, "is inside the store "+sd.StorePath) {
		t.Errorf("mount --all-volumes onto the other volume's store: exit %d: %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "mount", "--all-volumes", "--stats", filepath.Join(sd.StorePath, "stats.json"), hc.StorePath, emptyDir(t))
	if code != exitcodes.Usage || !strings.Contains(errOut, "--stats") {
		t.Errorf("mount --all-volumes --stats into the other volume's store: exit %d: %s", code, errOut)
	}
	os.Remove(inD)

	code, _, errOut = runCLI(t, "extract", hc.StorePath, dest, "--all-volumes")
	if code != 0 {
		t.Fatalf("extract --all-volumes: exit %d: %s", code, errOut)
	}
	want, _ := os.ReadFile(sd.Live["USMT/File/D$/Data/report.txt"])
	if got, err := os.ReadFile(filepath.Join(dest, "D", "Data", "report.txt")); err != nil || string(got) != string(want) {
		entries, _ := os.ReadDir(dest)
		t.Errorf("extracted D: file: %v (dest holds %v)", err, entries)
	}
}

// Every store-reading command takes --all-volumes.
func TestAllVolumesFlagOnEveryReadingCommand(t *testing.T) {
	app := newApp(&globalOptions{Stdout: os.Stdout, Stderr: os.Stderr})
	for name := range volumeCommands {
		cmd := app.Command(name)
		if cmd == nil {
			t.Errorf("no command %s", name)
			continue
		}
		found := 0
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				if n == allVolumesFlag {
					found++
				}
			}
		}
		if found != 1 {
			t.Errorf("%s has --all-volumes %d times", name, found)
		}
	}
	newApp(&globalOptions{}) // a second app must not add the flag twice
	for name := range volumeCommands {
		n := 0
		for _, f := range app.Command(name).Flags {
			if f.Names()[0] == allVolumesFlag {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: --all-volumes %d times after a second newApp", name, n)
		}
	}
}

// rd refuses to remove one volume's part of a store that spans two, names
// the other, and removes both with --all-volumes after the hard-link check.
func TestRdAllVolumes(t *testing.T) {
	c, d, hc, sd := twoVolumeStore(t)
	live := []string{"C=" + c.Mount, "--live", "D=" + d.Mount}

	code, _, errOut := runCLI(t, append([]string{"rd", hc.StorePath, "--yes", "--force", "--live"}, live...)...)
	if code != exitcodes.Failure || !strings.Contains(errOut, sd.StorePath) || !strings.Contains(errOut, "--all-volumes") {
		t.Errorf("rd on one volume: exit %d: %s", code, errOut)
	}
	for _, p := range []string{hc.StorePath, sd.StorePath} {
		if _, err := os.Stat(filepath.Join(p, "USMT")); err != nil {
			t.Fatalf("the refused rd removed something: %v", err)
		}
	}

	// A file only in D:'s store: the check over both volumes refuses.
	only := filepath.Join(sd.StorePath, "USMT/File/D$/Data/only-here.txt")
	if err := os.WriteFile(only, []byte("no live copy"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, append([]string{"rd", hc.StorePath, "--all-volumes", "--yes", "--live"}, live...)...)
	if code != exitcodes.Failure || !strings.Contains(out, `D:\Data\only-here.txt`) {
		t.Errorf("rd --all-volumes with data only in the D: store: exit %d:\n%s\n%s", code, out, errOut)
	}
	if err := os.Remove(only); err != nil {
		t.Fatal(err)
	}

	code, out, errOut = runCLI(t, append([]string{"rd", hc.StorePath, "--all-volumes", "--yes", "--json", "--live"}, live...)...)
	if code != 0 {
		t.Fatalf("rd --all-volumes: exit %d: %s %s", code, out, errOut)
	}
	var rep rdReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Roots) != 2 || rep.Removed == nil || len(rep.Removed.Roots) != 2 {
		t.Errorf("rd report: roots %v removed %+v", rep.Roots, rep.Removed)
	}
	for _, p := range []string{hc.StorePath, sd.StorePath} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	for rel, lp := range sd.Live {
		if _, err := os.Stat(lp); err != nil {
			t.Errorf("live file of %s gone: %v", rel, err)
		}
	}
	if _, err := os.Stat(hc.LivePath(hc.Linked[0])); err != nil {
		t.Errorf("live C: file gone: %v", err)
	}
}
