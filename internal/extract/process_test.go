package extract

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// These tests run a real usmtkit binary (built once from ./cmd/usmtkit)
// and interrupt it the way a user or a power cut does: SIGKILL and
// SIGINT in the middle of a big file.

var cli struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cli.dir != "" {
		os.RemoveAll(cli.dir)
	}
	os.Exit(code)
}

// usmtkitBinary builds cmd/usmtkit once per test binary. CGO is off: the
// extract path needs no C code, and the test then needs no C compiler.
func usmtkitBinary(t *testing.T) string {
	t.Helper()
	cli.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if cli.dir, cli.err = os.MkdirTemp("", "usmtkit-extract-test-"); cli.err != nil {
			return
		}
		cli.path = filepath.Join(cli.dir, "usmtkit")
		cmd := exec.Command(goTool, "build", "-o", cli.path, "github.com/usmtkit/usmtkit/cmd/usmtkit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			cli.err = fmt.Errorf("go build ./cmd/usmtkit: %v\n%s", err, out)
		}
	})
	if cli.err != nil {
		t.Fatal(cli.err)
	}
	return cli.path
}

const bigSize = 48 << 20

// interruptSource builds a directory store of small files, two big files
// (more than bigFile each, so each is its own batch) and more small
// files, and an archive of it. It returns the store root and the archive.
func interruptSource(t *testing.T, dir string) (root, archive string) {
	t.Helper()
	root = filepath.Join(dir, "src")
	tree := fixtures.Tree{"USMT/catalog.mig": fixtures.File{Data: []byte("catalog")}}
	for i := 0; i < 150; i++ {
		tree[fmt.Sprintf("USMT/File/C$/Users/jdoe/a/f%03d.txt", i)] = fixtures.File{Data: fixtures.Text(fmt.Sprint("a", i), 2000+i)}
		tree[fmt.Sprintf("USMT/File/C$/Users/jdoe/z/f%03d.txt", i)] = fixtures.File{Data: fixtures.Text(fmt.Sprint("z", i), 3000+i)}
	}
	tree["USMT/File/C$/Users/jdoe/big1.bin"] = fixtures.File{Data: fixtures.PseudoRandom("extract/int1", bigSize)}
	tree["USMT/File/C$/Users/jdoe/big2.bin"] = fixtures.File{Data: fixtures.PseudoRandom("extract/int2", bigSize+12345)}
	fixtures.Build(t, root, tree)
	s, err := store.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	archive = filepath.Join(dir, "store.tar.zst")
	if _, err := compress.CreateFile(context.Background(), archive, s, compress.WriteOptions{}, false); err != nil {
		t.Fatal(err)
	}
	return root, archive
}

// sums lists the regular files below root: slash path -> sha256. Temporary
// files are listed apart.
func sums(t *testing.T, root string) (files map[string][32]byte, tmps []string) {
	t.Helper()
	files = map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if isTmpName(de.Name()) {
			tmps = append(tmps, rel)
			return nil
		}
		if de.Name() == lockName {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, tmps
}

// startMidBig starts usmtkit with args and stops it (SIGSTOP) while one of
// the big files is half written under its temporary name. It returns the
// stopped process and what it printed so far (the buffers keep filling).
func startMidBig(t *testing.T, dest string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(usmtkitBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	midBig := func() bool {
		ents, _ := os.ReadDir(filepath.Join(dest, "USMT/File/C$/Users/jdoe"))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".big") && isTmpName(e.Name()) {
				if fi, err := e.Info(); err == nil && fi.Size() > 0 && fi.Size() < bigSize {
					return true
				}
			}
		}
		return false
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if midBig() {
			cmd.Process.Signal(syscall.SIGSTOP)
			// Stopped now: make sure it still is in the middle of a big file.
			time.Sleep(20 * time.Millisecond)
			if midBig() {
				return cmd, &stdout, &stderr
			}
			cmd.Process.Signal(syscall.SIGCONT)
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	t.Fatalf("never caught usmtkit in the middle of a big file\n%s\n%s", stdout.String(), stderr.String())
	return nil, nil, nil
}

// checkNoWrongFile checks that every file under a real name in dest is
// the store's file, byte for byte: an interrupted run may leave files out
// and temporary files behind, never a partial or wrong file under a real
// name.
func checkNoWrongFile(t *testing.T, label string, want map[string][32]byte, dest string) (got map[string][32]byte, tmps []string) {
	t.Helper()
	got, tmps = sums(t, dest)
	for rel, sum := range got {
		if w, ok := want[rel]; !ok || w != sum {
			t.Errorf("%s: %s is under its real name but is not the store's file", label, rel)
		}
	}
	return got, tmps
}

// resume reruns with --skip-existing and checks that the tree is then
// complete, byte for byte, with no temporary file left.
func resume(t *testing.T, label, src, dest string, want map[string][32]byte, stale int) {
	t.Helper()
	cmd := exec.Command(usmtkitBinary(t), "extract", src, dest, "--layout", "store", "--skip-existing", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: resume: %v\n%s\n%s", label, err, stdout.String(), stderr.String())
	}
	var sum struct {
		Stale int `json:"stale_temps_removed"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Stale != stale {
		t.Errorf("%s: resume removed %d stale temporary files, want %d", label, sum.Stale, stale)
	}
	got, tmps := sums(t, dest)
	if len(tmps) != 0 {
		t.Errorf("%s: temporary files left after the resume: %v", label, tmps)
	}
	for rel, s := range want {
		if g, ok := got[rel]; !ok || g != s {
			t.Errorf("%s: %s missing or different after the resume", label, rel)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d files after the resume, want %d", label, len(got), len(want))
	}
}

// kill -9 (or a power cut) in the middle of a big file: no file under a
// real name is partial or wrong, and a --skip-existing rerun finishes the
// tree byte for byte. Files written before the big one may still be
// under temporary names (their batch was being flushed): the rerun writes
// them again.
func TestExtractKilledMidBigFile(t *testing.T) {
	dir := t.TempDir()
	root, archive := interruptSource(t, dir)
	want, _ := sums(t, root)
	for _, src := range []string{root, archive} {
		label := filepath.Base(src)
		dest := filepath.Join(dir, "out-"+label)
		cmd, _, _ := startMidBig(t, dest, "-q", "extract", src, dest, "--layout", "store")
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Wait()
		got, tmps := checkNoWrongFile(t, label, want, dest)
		t.Logf("%s: after the kill: %d of %d files in place, %d temporary files", label, len(got), len(want), len(tmps))
		if len(tmps) == 0 || len(got) == len(want) {
			t.Fatalf("%s: the kill did not land in the middle (%d files, temporary files %v)", label, len(got), tmps)
		}
		resume(t, label, src, dest, want, len(tmps))
	}
}

// Ctrl-C in the middle of a big file: exit status 130, the error says the
// run was interrupted, no temporary file is left, every file under a real
// name is complete, and a --skip-existing rerun finishes the tree.
func TestExtractSIGINT(t *testing.T) {
	dir := t.TempDir()
	root, archive := interruptSource(t, dir)
	want, _ := sums(t, root)
	for _, src := range []string{root, archive} {
		label := filepath.Base(src)
		dest := filepath.Join(dir, "out-"+label)
		cmd, stdout, stderr := startMidBig(t, dest, "extract", src, dest, "--layout", "store")
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Process.Signal(syscall.SIGCONT)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("%s: want exit status 130 after SIGINT, got %v\n%s\n%s", label, err, stdout, stderr)
		}
		t.Logf("%s: after SIGINT:\nstdout: %s\nstderr: %s", label, stdout, stderr)
		if !strings.Contains(strings.ToLower(stderr.String()), "interrupt") {
			t.Errorf("%s: the error does not say the run was interrupted:\n%s", label, stderr)
		}
		if strings.Contains(strings.ToLower(stdout.String()+stderr.String()), "success") {
			t.Errorf("%s: success printed after an interrupt:\n%s\n%s", label, stdout, stderr)
		}
		got, tmps := checkNoWrongFile(t, label, want, dest)
		if len(tmps) != 0 {
			t.Errorf("%s: temporary files left after SIGINT: %v", label, tmps)
		}
		if _, err := os.Stat(filepath.Join(dest, lockName)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: the lock file is left (%v)", label, err)
		}
		if len(got) == len(want) {
			t.Fatalf("%s: the interrupt did not land in the middle", label)
		}
		resume(t, label, src, dest, want, 0)
	}
}
