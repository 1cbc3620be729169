package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/golden")

// runCLI runs a whole command line in-process and returns its exit status
// and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"usmtkit"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// golden compares got with testdata/golden/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/usmtkit -run %s -update to create it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

func TestInfoEveryKind(t *testing.T) {
	dir := t.TempDir()
	usmt4 := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	usmt3 := fixtures.USMT3(t, filepath.Join(dir, "u3"))
	plain := fixtures.Plain(t, filepath.Join(dir, "plain"))
	multi := fixtures.MultiVolume(t, filepath.Join(dir, "mv"))
	hl := fixtures.HardLinkStore(t, filepath.Join(dir, "vol"))
	for _, tc := range []struct {
		name      string
		args      []string
		storeType string
		files     int64
		users     int
	}{
		{"usmt4", []string{usmt4}, "uncompressed", int64(fixtures.USMT4Expect.Files + 2), 3}, // its in-store link pair is not a hard-link store
		{"usmt4-drive-level", []string{filepath.Join(usmt4, "USMT", "File", "C$")}, "uncompressed", int64(fixtures.USMT4Expect.Files + 2), 3},
		{"usmt3", []string{usmt3}, "uncompressed", int64(fixtures.USMT3Expect.Files + len(fixtures.USMT3Expect.Control)), len(fixtures.USMT3Expect.Users)},
		{"plain", []string{plain}, "plain", int64(fixtures.PlainExpect.Files), 0},
		{"multi-volume", multi, "uncompressed", int64(fixtures.MultiVolumeExpect[0].Files + fixtures.MultiVolumeExpect[1].Files + len(fixtures.MultiVolumeExpect[0].Control) + len(fixtures.MultiVolumeExpect[1].Control)), -1},
		{"hard-link", []string{hl.StorePath}, "hard-link", int64(len(hl.Linked) + len(hl.Copied) + 2), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, append([]string{"info", "--json"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var rep infoReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("%v in %s", err, out)
			}
			if rep.StoreType != tc.storeType || !rep.Readable || rep.Summary.Files != tc.files {
				t.Fatalf("type %s readable %v files %d; want %s, %d", rep.StoreType, rep.Readable, rep.Summary.Files, tc.storeType, tc.files)
			}
			if tc.users >= 0 && len(rep.Summary.Users) != tc.users {
				t.Fatalf("users %+v, want %d", rep.Summary.Users, tc.users)
			}
			if len(rep.Roots) != len(tc.args) {
				t.Fatalf("roots %v", rep.Roots)
			}
		})
	}
}

func TestInfoGolden(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	code, out, _ := runCLI(t, "info", sp)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	golden(t, "info-usmt4.txt", strings.ReplaceAll(out, sp, "$STORE"))

	code, out, _ = runCLI(t, "ls", "-R", sp)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	golden(t, "ls-R-usmt4.txt", out)

	code, out, _ = runCLI(t, "ls", sp, `c:\users\jdoe`)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	golden(t, "ls-jdoe.txt", out)
}

func TestLsFiltersAndJSON(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	code, out, _ := runCLI(t, "ls", "-R", "--json", "--user", "ASMITH", sp)
	if code != 0 {
		t.Fatal(code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r["win_path"].(string), `C:\Users\asmith`) {
			t.Fatalf("--user asmith listed %v", r["win_path"])
		}
	}
	if len(lines) != 5 { // asmith, Favorites, Pictures, cat.jpg + the profile folder
		t.Logf("%s", out)
	}
	code, out, _ = runCLI(t, "ls", "-R", "--drive", "d", sp)
	if code != 0 || strings.Contains(out, `C:\`) || !strings.Contains(out, `D:\Data\shared.xlsx`) {
		t.Fatalf("--drive d: %d\n%s", code, out)
	}
	code, _, stderr := runCLI(t, "ls", "--drive", "CD", sp)
	if code != exitcodes.Usage || !strings.Contains(stderr, "--drive takes one letter") {
		t.Fatalf("bad --drive: %d %s", code, stderr)
	}
}

func TestExitCodesForBadInput(t *testing.T) {
	dir := t.TempDir()
	notStore := filepath.Join(dir, "x.txt")
	os.WriteFile(notStore, []byte("x"), 0o644)
	sp := fixtures.USMT4(t, filepath.Join(dir, "pc"))
	enc := fixtures.MIGStore(t, filepath.Join(dir, "enc"), true)
	plainMIG := fixtures.MIGStore(t, filepath.Join(dir, "mig"), false)
	share := fixtures.SMPShare(t, filepath.Join(dir, "smp"))
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"info", filepath.Join(dir, "missing")}, exitcodes.NoStore, "does not exist"},
		{[]string{"info", notStore}, exitcodes.NoStore, "is a file, but not a USMT.MIG"},
		{[]string{"info", filepath.Join(dir, "pc")}, exitcodes.NoStore, "holds one: run the command on that folder"},
		{[]string{"info"}, exitcodes.Usage, "needs at least one STORE"},
		{[]string{"info", "--bogus", sp}, exitcodes.Usage, "flag provided but not defined"},
		{[]string{"nosuchcommand"}, exitcodes.Usage, "unknown command"},
		// ls lists a MIG's records (TestLsMIG); extract cannot read them.
		{[]string{"extract", enc, filepath.Join(dir, "x-enc")}, exitcodes.Encrypted, "usmtutils /extract"},
		{[]string{"extract", plainMIG, filepath.Join(dir, "x-mig")}, exitcodes.Unsupported, "usmtutils /extract"},
		{[]string{"ls", share.Root}, exitcodes.NoStore, "state migration point share"},
		{[]string{"info", enc}, exitcodes.OK, ""},
		{[]string{"info", share.Root}, exitcodes.OK, ""},
		{[]string{"ls", sp, `C:\Users\nobody`}, exitcodes.Failure, "is not in the store"},
	} {
		code, out, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr+out, tc.msg) {
			t.Errorf("%v: exit %d (want %d)\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out, stderr)
		}
		if code != 0 && !strings.HasPrefix(stderr, "usmtkit: ") {
			t.Errorf("%v: message must start with 'usmtkit: ': %q", tc.args, stderr)
		}
	}
	// info on a MIG says what it is and what to do.
	_, out, _ := runCLI(t, "info", enc)
	for _, want := range []string{"encrypted:   yes", "readable:    no", "usmtutils /extract"} {
		if !strings.Contains(out, want) {
			t.Errorf("info on an encrypted MIG lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = runCLI(t, "info", "--json", share.Root)
	var rep infoReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Members) != len(share.Stores) {
		t.Fatalf("share listing: %v %+v", err, rep.Members)
	}
}

func TestHostileStoreCLI(t *testing.T) {
	h := fixtures.Hostile(t, t.TempDir())
	code, out, stderr := runCLI(t, "ls", "-R", "--json", h.StorePath)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sawBad, sawLong bool
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			StorePath    string `json:"store_path"`
			StorePathB64 string `json:"store_path_b64"`
		}
		json.Unmarshal([]byte(l), &r)
		if r.StorePathB64 != "" {
			sawBad = true
		}
		if len(r.StorePath) > 4096 {
			sawLong = true
		}
	}
	if !sawBad || !sawLong {
		t.Fatalf("non-UTF-8 name kept: %v; path over PATH_MAX listed: %v", sawBad, sawLong)
	}
	code, out, _ = runCLI(t, "info", h.StorePath)
	if code != 0 || !strings.Contains(out, "FIFOs/sockets/devices (listed, never read)") {
		t.Fatalf("info: %d\n%s", code, out)
	}
}

var buildOnce sync.Once
var builtBinary string

// buildBinary builds usmtkit into a world-readable folder, so tests can run
// it as another user.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		d, err := os.MkdirTemp("", "usmtkit-bin-")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
		p := filepath.Join(d, "usmtkit")
		cmd := exec.Command("go", "build", "-o", p, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		builtBinary = p
	})
	if builtBinary == "" {
		t.Fatal("usmtkit binary not built")
	}
	return builtBinary
}

// TestPermissionDenied runs the CLI as an unprivileged user against a store
// with a folder and a file it may not read: both are listed, counted and
// give exit 3 — never dropped silently.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		fixtures.Unavailable(t, "needs root to run the reader as another user (CI runs as root)")
	}
	bin := buildBinary(t)
	top, err := os.MkdirTemp("", "usmtkit-perm-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		filepath.Walk(top, func(p string, _ os.FileInfo, _ error) error { os.Chmod(p, 0o755); return nil })
		os.RemoveAll(top)
	}()
	os.Chmod(top, 0o755)
	h := fixtures.Hostile(t, top)
	runAs := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, b.String()
	}
	code, out := runAs("info", h.StorePath)
	if code != exitcodes.Partial || !strings.Contains(out, "UNREADABLE:  1 entries") || !strings.Contains(out, "Locked") || !strings.Contains(out, "permission denied") {
		t.Fatalf("info as nobody: exit %d\n%s", code, out)
	}
	code, out = runAs("ls", "-R", h.StorePath)
	if code != exitcodes.Partial || !strings.Contains(out, "Locked: permission denied") {
		t.Fatalf("ls as nobody: exit %d\n%s", code, out)
	}
	// The unreadable file is found by a command that reads contents.
	outDir := filepath.Join(top, "out")
	os.Mkdir(outDir, 0o777)
	os.Chmod(outDir, 0o777)
	code, out = runAs("index", h.StorePath, "-o", filepath.Join(outDir, "m.ndjson"))
	if code != exitcodes.Partial || !strings.Contains(out, filepath.Base(h.NoAccessFile)) || !strings.Contains(out, "Locked") {
		t.Fatalf("index as nobody: exit %d\n%s", code, out)
	}
}

func TestDemo(t *testing.T) {
	code, out, stderr := runCLI(t, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"$ usmtkit info", "hard-link store", `C:\Users\jdoe\Documents\resume.docx`, "demo finished: every step succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

func TestPermuteArgs(t *testing.T) {
	app := newApp(&globalOptions{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
	for in, want := range map[string]string{
		"usmtkit info S --json":          "usmtkit info --json S",
		"usmtkit info S -q":              "usmtkit -q info S",
		"usmtkit ls S C:\\x -R --user u": "usmtkit ls -R --user u S C:\\x",
		"usmtkit ls S -- -R":             "usmtkit ls S -- -R",
		"usmtkit -q info S":              "usmtkit -q info S",
	} {
		got := strings.Join(permuteArgs(app, strings.Fields(in)), " ")
		if got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

// TestVerboseIndexListsFiles: -v names every file with its hash on stderr.
func TestVerboseIndexListsFiles(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "s"))
	code, _, stderr := runCLI(t, "index", sp, "-o", filepath.Join(dir, "m.ndjson"), "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	n := strings.Count(stderr, "\n")
	if !strings.Contains(stderr, `C:\Users\jdoe\Documents\report.docx`) || n < fixtures.USMT4Expect.Files {
		t.Fatalf("-v listed %d lines:\n%s", n, stderr)
	}
}

// TestPlainTarZstdIsNoStore: a `tar | zstd` file made by GNU tar and zstd is
// not a usmtkit archive: every reading command exits 10 and points at tar.
func TestPlainTarZstdIsNoStore(t *testing.T) {
	fixtures.RequireTool(t, "tar", "zstd")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "docs", "a.txt"), bytes.Repeat([]byte("plain tar\n"), 500), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	tz := filepath.Join(dir, "plain.tar.zst")
	sh := "tar -C " + src + " -cf - docs | zstd -q -o " + tz
	if out, err := exec.Command("sh", "-c", sh).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", sh, err, out)
	}
	for _, args := range [][]string{
		{"info", tz}, {"ls", tz}, {"extract", tz, filepath.Join(dir, "out")}, {"mount", tz, filepath.Join(dir, "mnt")},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitcodes.NoStore || !strings.Contains(stderr, "tar --zstd -xf") {
			t.Errorf("%v: exit %d, stderr %q; want %d and a tar hint", args, code, stderr, exitcodes.NoStore)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("extract created its destination for a file it cannot read")
	}
}

// TestInfoMIGDamageExits3: info on a damaged USMT.MIG (cut short, or with
// bytes after its last record) reports the damage and exits 3; a healthy
// one, with or without PhotoRec's 8-byte tail, exits 0. Names are listed
// for encrypted files too.
func TestInfoMIGDamageExits3(t *testing.T) {
	dir := t.TempDir()
	plain := fixtures.MIGFile(false, nil)
	for _, c := range []struct {
		name string
		data []byte
		code int
		want string
	}{
		{"healthy", plain, 0, "records:"},
		{"tail", append(append([]byte{}, plain...), make([]byte, 8)...), 0, "tail:"},
		{"truncated", fixtures.TruncatedMIG(false, nil), exitcodes.Partial, "damage:      the file is truncated"},
		{"garbage", append(append([]byte{}, plain...), bytes.Repeat([]byte{1}, 100)...), exitcodes.Partial, "damage:"},
		{"encrypted", fixtures.MIGFile(true, nil), 0, `record:    File\C:\Users\jdoe\Documents\a.docx`},
	} {
		p := filepath.Join(dir, c.name, "USMT.MIG")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCLI(t, "info", p)
		if code != c.code || !strings.Contains(out, c.want) || !strings.Contains(out, "evidence:") {
			t.Errorf("%s: exit %d (want %d), output lacks %q or the evidence:\n%s%s", c.name, code, c.code, c.want, out, errs)
		}
	}
}

// TestVerifyMIG: verify on a USMT.MIG checks every record (NAME<TAB>STATUS
// in the Windows view), exits 0 when clean and 3 when a payload is
// damaged; an encrypted one is checked at the structure level and says so.
func TestVerifyMIG(t *testing.T) {
	dir := t.TempDir()
	good, recs := fixtures.BuildMIG(false, nil)
	bad := append([]byte{}, good...)
	// One flipped byte in the middle of the second record's zlib stream.
	r := recs[1]
	bad[r.Offset+24+int64(r.NameLen)+8+int64(r.Size-r.NameLen-8)/2] ^= 0x55
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name, "USMT.MIG")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, out, errs := runCLI(t, "verify", write("good", good), "--report", "all")
	if code != 0 || !strings.Contains(out, "C:\\Users\\jdoe\\Documents\\a.docx\tOK") || !strings.Contains(out, "level:       contents") {
		t.Errorf("good: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "verify", write("bad", bad))
	if code != exitcodes.Partial || !strings.Contains(out, "C:\\Users\\jdoe\\Desktop\\notes.txt\tCORRUPTED") || strings.Contains(out, "a.docx\tOK") {
		t.Errorf("bad: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, "verify", write("enc", fixtures.MIGFile(true, nil)), "--json")
	var sum map[string]any
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &sum) != nil || sum["level"] != "structure" || !strings.Contains(sum["note"].(string), "/decrypt /key:") {
		t.Errorf("encrypted: exit %d\n%s%s", code, out, errs)
	}
}

// TestLsMIG: ls on a USMT.MIG lists its records in the Windows view, for
// an encrypted file too (its names are readable), and exits 3 on a
// truncated one.
func TestLsMIG(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		code int
	}{
		{"plain", fixtures.MIGFile(false, nil), 0},
		{"enc", fixtures.MIGFile(true, nil), 0},
		{"cut", fixtures.TruncatedMIG(false, nil), exitcodes.Partial},
	} {
		p := filepath.Join(dir, c.name, "USMT.MIG")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCLI(t, "ls", p)
		if code != c.code || !strings.Contains(out, `  C:\Users\jdoe\Documents\a.docx`) || strings.Contains(out, `File\C:`) {
			t.Errorf("%s: exit %d (want %d)\n%s%s", c.name, code, c.code, out, errs)
		}
	}
}
