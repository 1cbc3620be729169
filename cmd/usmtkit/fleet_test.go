package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
)

// fleetShare builds a share copy of n folder stores, PC000..PC<n-1> under
// SMPSTORE_1A2B3C4D$; store i holds i+1 user files of size bytes (so a
// report mixed between stores shows in the counts). It returns the share
// root and the stores' folders.
func fleetShare(t testing.TB, dir string, n, size int) (string, []string) {
	t.Helper()
	root := filepath.Join(dir, "share")
	tree := fixtures.Tree{}
	var stores []string
	for i := 0; i < n; i++ {
		base := fmt.Sprintf("SMPSTORE_1A2B3C4D$/PC%03d", i)
		stores = append(stores, filepath.Join(root, base))
		tree[base+"/USMT/catalog.mig"] = fixtures.File{Data: fixtures.PseudoRandom(base+"catalog", 64)}
		for f := 0; f <= i%7; f++ {
			tree[fmt.Sprintf("%s/USMT/File/C$/Users/u%03d/Documents/f%d.txt", base, i, f)] = fixtures.File{Data: fixtures.Text(fmt.Sprintf("%s/%d", base, f), size)}
		}
	}
	fixtures.Build(t, root, tree)
	return root, stores
}

// fleetJSON splits verify/index --json output of a run over many stores
// into its objects by type.
type fleetOut struct {
	blocks [][]map[string]any // each store's objects, ending with its "store" object
	stores map[string]map[string]any
	total  map[string]any
}

func parseFleetJSON(t *testing.T, out string) fleetOut {
	t.Helper()
	f := fleetOut{stores: map[string]map[string]any{}}
	var cur []map[string]any
	for _, v := range jsonValues(t, out) {
		m := v.(map[string]any)
		switch m["type"] {
		case "total":
			f.total = m
		case "store":
			cur = append(cur, m)
			f.blocks = append(f.blocks, cur)
			cur = nil
			f.stores[m["path"].(string)] = m
		default:
			cur = append(cur, m)
		}
	}
	if f.total == nil || len(cur) != 0 {
		t.Fatalf("no total, or objects after the last store:\n%s", out)
	}
	return f
}

// A share copy of several stores, one damaged: every store gets its own
// grouped report and line, the damaged one PROBLEMS, exit 3; the journal
// records each store; a re-run skips them all; --redo does them again.
func TestVerifyFleetShareJournal(t *testing.T) {
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 6, 300)
	manifests := filepath.Join(dir, "manifests")
	code, out, stderr := runCLI(t, "index", root, "-o", manifests, "--jobs", "2")
	if code != 0 {
		t.Fatalf("index: exit %d\n%s\n%s", code, out, stderr)
	}
	for i := range stores {
		if _, err := os.Stat(filepath.Join(manifests, fmt.Sprintf("SMPSTORE_1A2B3C4D$_PC%03d.manifest", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Store 3 goes bad: one byte of one file, times kept.
	flipByte(t, filepath.Join(stores[3], "USMT/File/C$/Users/u003/Documents/f2.txt"), 10)

	j := filepath.Join(dir, "verify.journal")
	code, out, stderr = runCLI(t, "verify", root, "--manifest", manifests, "--jobs", "3", "--json", "--journal", j)
	if code != exitcodes.Partial {
		t.Fatalf("exit %d, want 3\n%s\n%s", code, out, stderr)
	}
	f := parseFleetJSON(t, out)
	if len(f.blocks) != len(stores) || f.total["stores"] != json.Number("6") || f.total["ok"] != json.Number("5") || f.total["problems"] != json.Number("1") {
		t.Fatalf("total %v, %d blocks", f.total, len(f.blocks))
	}
	// Grouped: each block is one store's files, its summary, its line.
	for _, b := range f.blocks {
		st := b[len(b)-1]
		sum := b[len(b)-2]
		if sum["type"] != "summary" || sum["store"].([]any)[0] != st["path"] {
			t.Fatalf("block of %s does not end with its own summary: %v", st["path"], sum)
		}
		var i int
		fmt.Sscanf(filepath.Base(st["path"].(string)), "PC%03d", &i)
		files := 0
		for _, o := range b[:len(b)-2] {
			if o["type"] == "file" && o["kind"] == "file" && o["control"] != true {
				files++
				if !strings.Contains(o["path"].(string), fmt.Sprintf(`\u%03d\`, i)) {
					t.Fatalf("store %d's block holds %s", i, o["path"])
				}
			}
		}
		if want := i%7 + 1; files != want {
			t.Errorf("store %d: %d file lines in its block, want %d", i, files, want)
		}
		wantStatus := "ok"
		if i == 3 {
			wantStatus = "problems"
		}
		if st["status"] != wantStatus || st["fields"].(map[string]any)["manifest"] == nil {
			t.Errorf("store %d: %v", i, st)
		}
	}
	if bad := f.stores[stores[3]]; bad["exit_code"] != json.Number("3") || bad["fields"].(map[string]any)["corrupted"] != json.Number("1") {
		t.Errorf("damaged store: %v", bad)
	}

	// The journal: one whole record per store.
	recs, notes, err := journal.Read(j)
	if err != nil || len(notes) != 0 || len(recs) != len(stores) {
		t.Fatalf("journal: %v %v %d records", err, notes, len(recs))
	}
	for _, r := range recs {
		if r.Version != 1 || r.Op != "verify" || r.Started.IsZero() || r.Finished.Before(r.Started) || r.Fields["store_id"] == nil {
			t.Errorf("record %+v", r)
		}
		if (r.Key == stores[3]) != (r.Status == journal.StatusProblems) || (r.Key == stores[3]) != (r.ExitCode == 3) {
			t.Errorf("record %s: status %s exit %d", r.Key, r.Status, r.ExitCode)
		}
	}
	raw, _ := os.ReadFile(j)

	// Again with the same journal: nothing is done again, the damaged
	// store still counts.
	code, out, _ = runCLI(t, "verify", root, "--manifest", manifests, "--journal", j)
	if code != exitcodes.Partial || linesStarting(out, "SKIPPED ") != len(stores) || !strings.Contains(out, "6 skipped (done in the journal)") {
		t.Fatalf("re-run: exit %d\n%s", code, out)
	}
	if again, _ := os.ReadFile(j); !bytes.Equal(again, raw) {
		t.Fatalf("a re-run that skipped everything changed the journal")
	}
	// --redo does them all again and appends.
	code, out, _ = runCLI(t, "verify", root, "--manifest", manifests, "--journal", j, "--redo")
	if code != exitcodes.Partial || linesStarting(out, "SKIPPED ") > 0 || linesStarting(out, "OK ") != 5 {
		t.Fatalf("--redo: exit %d\n%s", code, out)
	}
	if recs, _, _ := journal.Read(j); len(recs) != 2*len(stores) {
		t.Fatalf("after --redo %d records", len(recs))
	}
	if code, _, stderr := runCLI(t, "verify", root, "--redo"); code != exitcodes.Usage || !strings.Contains(stderr, "--redo needs --journal") {
		t.Fatalf("--redo without a journal: %d %s", code, stderr)
	}
}

// --from: one path a line (CRLF, blank lines, comments), a path that is no
// store is FAILED and counted; text lines are one per store and a total.
func TestVerifyFleetFrom(t *testing.T) {
	dir := t.TempDir()
	_, stores := fleetShare(t, dir, 3, 100)
	list := filepath.Join(dir, "stores.txt")
	content := "# stores to check\r\n" + stores[0] + "\r\n\r\n" + stores[2] + "\r\n" + filepath.Join(dir, "gone") + "\r\n"
	os.WriteFile(list, []byte(content), 0o644)
	code, out, stderr := runCLI(t, "verify", "--from", list, "--jobs", "1")
	if code != exitcodes.Partial {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 1 && (f[0] == "OK" || f[0] == "FAILED") {
			got = append(got, f[0]+" "+f[1])
		}
	}
	want := []string{"OK " + stores[0], "OK " + stores[2], "FAILED " + filepath.Join(dir, "gone")}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q\n%s", got, want, out)
	}
	if !strings.Contains(out, "total:      3 stores: 2 OK, 0 with problems, 1 could not be done") || !strings.Contains(out, "does not exist") {
		t.Fatalf("output:\n%s", out)
	}
	// Several STOREs with --each are separate stores; without, volumes.
	code, out, _ = runCLI(t, "verify", "--each", stores[0], stores[1])
	if code != 0 || linesStarting(out, "OK ") != 2 {
		t.Fatalf("--each: %d\n%s", code, out)
	}
	// --jobs is for many stores: with one it is a usage error.
	if code, _, stderr := runCLI(t, "verify", stores[0], "--jobs", "2"); code != exitcodes.Usage || !strings.Contains(stderr, "for runs over many stores") {
		t.Fatalf("--jobs with one store: %d %s", code, stderr)
	}
	// index: two stores with one folder name cannot share a manifest name.
	other := filepath.Join(dir, "elsewhere", "PC000")
	fixtures.Build(t, other, fixtures.Tree{"USMT/catalog.mig": fixtures.File{Data: []byte("c")}, "USMT/File/C$/a.txt": fixtures.File{Data: []byte("a")}})
	code, _, stderr = runCLI(t, "index", "--each", stores[0], other, "-o", filepath.Join(dir, "m"))
	if code != exitcodes.Usage || !strings.Contains(stderr, "PC000.manifest") {
		t.Fatalf("manifest name clash: %d %s", code, stderr)
	}
	// An output inside a store is refused before anything is written.
	code, _, stderr = runCLI(t, "index", "--each", stores[0], stores[1], "-o", filepath.Join(stores[1], "m"))
	if _, err := os.Stat(filepath.Join(stores[1], "m")); code != exitcodes.Usage || err == nil {
		t.Fatalf("-o inside a store: %d %s (%v)", code, stderr, err)
	}
	code, _, stderr = runCLI(t, "verify", "--each", stores[0], stores[1], "--journal", filepath.Join(stores[0], "j"))
	if _, err := os.Stat(filepath.Join(stores[0], "j")); code != exitcodes.Usage || err == nil {
		t.Fatalf("--journal inside a store: %d %s (%v)", code, stderr, err)
	}
}

// SIGKILL in the middle of a run leaves a journal that reads back whole
// (at most a cut last line, ignored); the re-run skips what was recorded
// and does the rest, and in the end every store is in it once.
func TestVerifyFleetKilled(t *testing.T) {
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 80, 256<<10)
	bin := buildBinary(t)
	j := filepath.Join(dir, "j")
	cmd := exec.Command(bin, "verify", root, "--jobs", "1", "--journal", j)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(j)
		if bytes.Count(b, []byte("\n")) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no journal lines after 60 s:\n%s", out.String())
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("the run ended before it was killed (%v): make the stores bigger\n%s", err, out.String())
	}
	recs, notes, err := journal.Read(j)
	if err != nil || len(recs) < 3 || len(recs) >= len(stores) {
		t.Fatalf("journal after SIGKILL: %v, %d records, notes %v", err, len(recs), notes)
	}
	for _, r := range recs {
		if r.Status != journal.StatusOK || r.Key == "" {
			t.Fatalf("record %+v", r)
		}
	}
	done := len(recs)
	code, text, stderr := runCLI(t, "verify", root, "--journal", j, "--jobs", "2")
	if code != 0 || linesStarting(text, "SKIPPED ") != done || linesStarting(text, "OK ") != len(stores)-done {
		t.Fatalf("resume: exit %d, %d done before\n%s\n%s", code, done, text, stderr)
	}
	recs, notes, err = journal.Read(j)
	latest := journal.Latest(recs, "verify")
	if err != nil || len(notes) != 0 || len(recs) != len(stores) || len(latest) != len(stores) {
		t.Fatalf("journal after the resume: %v %v: %d records, %d stores", err, notes, len(recs), len(latest))
	}
}

// linesStarting counts the lines of out that start with prefix.
func linesStarting(out, prefix string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// fleetJSONCases are the runs over many stores TestJSONKeysSnakeCase walks.
func fleetJSONCases(t *testing.T, dir, share, copies, storePath, mig string) [][]string {
	m := filepath.Join(dir, "fleet-manifests")
	return [][]string{
		{"verify", share, "--journal", filepath.Join(dir, "fleet.journal")},
		{"verify", copies, "--report", "all"},
		{"verify", "--each", storePath, mig},
		{"index", share, "-o", m},
		{"index", copies, "-o", filepath.Join(dir, "fleet-manifests-2"), "--journal", filepath.Join(dir, "fleet-index.journal")},
	}
}

// A journal another run holds is refused (exit 2); a journal that cannot be
// written stops the run (exit 1); a run stopped by Ctrl-C exits 130 and
// counts the stores it did not start.
func TestVerifyFleetJournalErrorsAndInterrupt(t *testing.T) {
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 12, 100)
	j := filepath.Join(dir, "j")
	w, _, err := journal.Open(j)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "verify", root, "--journal", j)
	w.Close()
	if code != exitcodes.Usage || !strings.Contains(stderr, "in use by another run") {
		t.Fatalf("a held journal: exit %d: %s", code, stderr)
	}
	// A journal on a full file system: every append fails (ENOSPC).
	full := filepath.Join(dir, "full")
	os.Mkdir(full, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", full).CombinedOutput(); err != nil {
		t.Fatalf("mounting a small tmpfs (tests run as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", full).Run() })
	fj := filepath.Join(full, "j")
	os.WriteFile(fj, nil, 0o644)
	filler, _ := os.Create(filepath.Join(full, "filler"))
	for {
		if _, err := filler.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	filler.Close()
	code, out, stderr := runCLI(t, "verify", root, "--journal", fj, "--jobs", "1")
	if code != exitcodes.Failure || !strings.Contains(out, "result:     STOPPED: writing the journal "+fj) || linesStarting(out, "OK ") >= len(stores) {
		t.Fatalf("an unwritable journal: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, "verify", root, "--journal", "/dev/full"); code != exitcodes.Usage || !strings.Contains(stderr, "regular file") {
		t.Fatalf("a device as the journal: exit %d %s", code, stderr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var o, e bytes.Buffer
	code = run(ctx, []string{"usmtkit", "verify", root, "--json"}, &o, &e)
	f := parseFleetJSON(t, o.String())
	if code != exitcodes.Interrupted || f.total["not_started"] != json.Number(fmt.Sprint(len(stores))) || f.total["exit_code"] != json.Number("130") {
		t.Fatalf("interrupted: exit %d, total %v\n%s", code, f.total, e.String())
	}
}
