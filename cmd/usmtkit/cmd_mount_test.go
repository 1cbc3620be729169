package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/fusefs"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/store"
)

// requireMount stops a test that needs real FUSE mounts (fixtures policy:
// a failure when CI is set, a skip with a hint elsewhere).
func requireMount(t *testing.T) { t.Helper(); fixtures.RequireFUSE(t) }

// syncBuffer is a bytes.Buffer safe for the serving goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// served is a runMount running in this process.
type served struct {
	mnt    string
	cancel context.CancelFunc
	done   chan error
	out    *syncBuffer
}

// startMount runs runMount in a goroutine and returns once it serves.
// Cleanup stops it (Ctrl-C) and checks nothing is left mounted.
func startMount(t *testing.T, o *mountOptions, args ...string) *served {
	t.Helper()
	requireMount(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{mnt: args[len(args)-1], cancel: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	o.Stdout, o.Stderr = s.out, s.out
	if o.View == "" {
		o.View = "windows"
	}
	if o.Umask == "" {
		o.Umask = "000"
	}
	o.UID, o.GID = -1, -1
	if o.CacheSize == 0 {
		o.CacheSize = 8
	}
	ready := make(chan string, 1)
	o.onReady = func(mnt string) { ready <- mnt }
	go func() { s.done <- runMount(ctx, o, args) }()
	select {
	case m := <-ready:
		s.mnt = m
	case err := <-s.done:
		cancel()
		t.Fatalf("mount failed: %v\n%s", err, s.out)
	case <-time.After(20 * time.Second):
		t.Fatalf("mount not ready after 20 s\n%s", s.out)
	}
	t.Cleanup(func() {
		s.stop(t)
		if _, ok := fusefs.MountAt(s.mnt); ok {
			t.Errorf("%s still mounted after the test", s.mnt)
			_ = fusefs.LazyUnmount(s.mnt)
		}
	})
	return s
}

// stop is Ctrl-C: it returns runMount's error.
func (s *served) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Errorf("runMount did not return 20 s after Ctrl-C\n%s", s.out)
		_ = fusefs.LazyUnmount(s.mnt)
		return nil
	}
}

func emptyDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMountCommandServesAndStops(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	mnt := emptyDir(t)
	s := startMount(t, &mountOptions{}, sp, mnt)
	if !strings.Contains(s.out.String(), "serving "+sp+" at "+mnt+" (read-only, passthrough") ||
		!strings.Contains(s.out.String(), "run `usmtkit umount "+mnt+"` to stop") {
		t.Errorf("serving line: %q", s.out)
	}
	b, err := os.ReadFile(filepath.Join(mnt, "C/Users/jdoe/Documents/report.docx"))
	if err != nil || len(b) != 20000 {
		t.Fatalf("reading through the mount: %d bytes, %v", len(b), err)
	}
	for _, op := range []struct {
		what string
		err  error
	}{
		{"create", os.WriteFile(filepath.Join(mnt, "C/new.txt"), []byte("x"), 0o644)},
		{"unlink", os.Remove(filepath.Join(mnt, "C/Users/jdoe/Documents/report.docx"))},
		{"mkdir", os.Mkdir(filepath.Join(mnt, "C/newdir"), 0o755)},
		{"chmod", os.Chmod(filepath.Join(mnt, "C/Users"), 0o777)},
	} {
		if !errors.Is(op.err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", op.what, op.err)
		}
	}
	if err := s.stop(t); err != nil {
		t.Errorf("Ctrl-C: runMount returned %v, want nil", err)
	}
	if _, ok := fusefs.MountAt(mnt); ok {
		t.Errorf("still mounted after Ctrl-C")
	}
}

func TestMountOptionsCLI(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	mnt := emptyDir(t)
	startMount(t, &mountOptions{View: "store", Umask: "027", CaseInsensitive: true}, sp, mnt)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, "usmt/file/c$/users/JDOE/documents/Report.docx"), &st); err != nil {
		t.Fatalf("case-insensitive lookup in the store view: %v", err)
	}
	if st.Mode&0o777 != 0o440 || st.Uid != uint32(os.Geteuid()) {
		t.Errorf("mode %o uid %d; want 0440 (umask 027) owned by the mounting user", st.Mode&0o777, st.Uid)
	}
}

func TestMountArchiveAndShareCLI(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	src, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "store.tar.zst")
	if _, err := compress.CreateFile(context.Background(), arch, src, compress.WriteOptions{}, false); err != nil {
		t.Fatal(err)
	}
	src.Close()
	t.Run("archive", func(t *testing.T) {
		mnt := emptyDir(t)
		s := startMount(t, &mountOptions{CacheSize: 1}, arch, mnt)
		if !strings.Contains(s.out.String(), "passthrough off: archive data is decoded by usmtkit") {
			t.Errorf("serving line: %q", s.out)
		}
		a, _ := os.ReadFile(filepath.Join(mnt, "C/Users/jdoe/Documents/report.docx"))
		b, _ := os.ReadFile(filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/report.docx"))
		if len(a) != 20000 || !bytes.Equal(a, b) {
			t.Errorf("archive file differs from the source (%d bytes)", len(a))
		}
	})
	t.Run("share", func(t *testing.T) {
		sh := fixtures.SMPShare(t, filepath.Join(dir, "smp"))
		mnt := emptyDir(t)
		s := startMount(t, &mountOptions{}, sh.Root, mnt)
		if !strings.Contains(s.out.String(), "(4 stores)") {
			t.Errorf("serving line: %q", s.out)
		}
		for _, m := range sh.Stores {
			p := filepath.Join(mnt, m.ID)
			if m.Kind == fixtures.SMPKindDir {
				if _, err := os.Stat(filepath.Join(p, "C/Users/jdoe/Documents/a.txt")); err != nil {
					t.Errorf("readable member: %v", err)
				}
				continue
			}
			b, err := os.ReadFile(filepath.Join(p, fusefs.ReadmeName))
			want := "compressed USMT.MIG"
			if !m.Encrypted {
				want = "mount the share with --experimental-mig"
			}
			if err != nil || !strings.Contains(string(b), want) || (m.Encrypted && !strings.Contains(string(b), "encrypted")) {
				t.Errorf("%s README: %q, %v", m.ID, b, err)
			}
		}
	})
	// --experimental-mig on a share copy reads its unencrypted MIG members
	// (each with EXPERIMENTAL.txt at its root), leaves the encrypted ones
	// as README.txt and the folder store as it was.
	t.Run("share with --experimental-mig", func(t *testing.T) {
		sh := fixtures.SMPShare(t, filepath.Join(dir, "smp-mig"))
		mnt := emptyDir(t)
		s := startMount(t, &mountOptions{ExperimentalMIG: true}, sh.Root, mnt)
		if out := s.out.String(); !strings.Contains(out, "(4 stores); 1 USMT.MIG read by the EXPERIMENTAL reader") ||
			strings.Count(out, "warning: EXPERIMENTAL") != 1 {
			t.Errorf("output: %q", out)
		}
		for _, m := range sh.Stores {
			p := filepath.Join(mnt, m.ID)
			switch {
			case m.Kind == fixtures.SMPKindDir:
				if _, err := os.Stat(filepath.Join(p, "C/Users/jdoe/Documents/a.txt")); err != nil {
					t.Errorf("folder member: %v", err)
				}
			case m.Encrypted:
				if b, err := os.ReadFile(filepath.Join(p, fusefs.ReadmeName)); err != nil || !strings.Contains(string(b), "encrypted") {
					t.Errorf("%s README: %q, %v", m.ID, b, err)
				}
			default:
				if b, err := os.ReadFile(filepath.Join(p, "C/Users/jdoe/Desktop/notes.txt")); err != nil || len(b) != 2500 {
					t.Errorf("MIG member file: %d bytes, %v", len(b), err)
				}
				if b, err := os.ReadFile(filepath.Join(p, store.MIGMarkerName)); err != nil || !strings.Contains(string(b), "INFERRED") {
					t.Errorf("MIG member %s: %q, %v", store.MIGMarkerName, b, err)
				}
			}
		}
		if err := s.stop(t); err != nil {
			t.Errorf("the mount ended with %v", err)
		}
	})
}

func TestMountRefusesBadMountpoints(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "x"), 0o755)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	inside := filepath.Join(sp, "USMT", "empty")
	os.MkdirAll(inside, 0o755)
	for _, tc := range []struct {
		name   string
		args   []string
		want   string
		status int
	}{
		{"missing mountpoint, checked before the store", []string{filepath.Join(dir, "no-such-store"), filepath.Join(dir, "nope")}, "does not exist: create it first", exitcodes.Failure},
		{"not empty", []string{sp, full}, "is not empty", exitcodes.Failure},
		{"a file", []string{sp, file}, "is not a directory", exitcodes.Failure},
		{"inside the store", []string{sp, inside}, "inside the store", exitcodes.Failure},
		{"the store itself", []string{inside, inside}, "is the store itself", exitcodes.Failure},
		{"one argument", []string{sp}, "needs a STORE and a MOUNTPOINT", exitcodes.Usage},
		{"bad view", []string{"--view", "tree", sp, emptyDir(t)}, "unknown view", exitcodes.Usage},
		{"bad umask", []string{"--umask", "9", sp, emptyDir(t)}, "--umask takes octal", exitcodes.Usage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, append([]string{"mount"}, tc.args...)...)
			if code != tc.status || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.status, tc.want)
			}
		})
	}
	// A mountpoint that is already a mount is refused.
	requireMount(t)
	mnt := emptyDir(t)
	startMount(t, &mountOptions{}, sp, mnt)
	code, _, stderr := runCLI(t, "mount", sp, mnt)
	if code != exitcodes.Failure || !strings.Contains(stderr, "already a mount point") || !strings.Contains(stderr, "usmtkit umount") {
		t.Errorf("mounting twice: exit %d, %q", code, stderr)
	}
}

// TestMountHelperProcess is not a test: it is the usmtkit command line in
// a child process (USMTKIT_MOUNT_HELPER_ARGS, separated by the unit separator \x1f), so tests can
// kill a server or let it detach without touching this process.
func TestMountHelperProcess(t *testing.T) {
	args := os.Getenv("USMTKIT_MOUNT_HELPER_ARGS")
	if args == "" {
		t.Skip("helper for other tests")
	}
	ctx, stop := signalContext()
	defer stop()
	os.Exit(run(ctx, append([]string{"usmtkit"}, strings.Split(args, "\x1f")...), os.Stdout, os.Stderr))
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// helper starts the usmtkit command line in a child process.
func helper(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "USMTKIT_MOUNT_HELPER_ARGS="+strings.Join(args, "\x1f"))
	return cmd
}

func waitMounted(t *testing.T, mnt string, want bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if _, ok := fusefs.MountAt(mnt); ok == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: mounted is not %v after 10 s", mnt, want)
}

// TestMountRecoversStaleMountpoint kills a serving usmtkit with SIGKILL,
// sees the mountpoint fail with ENOTCONN, and mounts on it again.
func TestMountRecoversStaleMountpoint(t *testing.T) {
	requireMount(t)
	sp := fixtures.USMT4(t, t.TempDir())
	mnt := emptyDir(t)
	cmd := helper(t, "mount", sp, mnt)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if fusefs.IsStale(mnt) {
			_ = fusefs.LazyUnmount(mnt)
		}
	})
	// Kill only once it serves: go-fuse's start-up opens a file on the new
	// mount from the server itself, and a server killed right then would
	// hang in its own FLUSH at exit (seen here: a process stuck in D state).
	for i := 0; !strings.Contains(out.String(), "serving "); i++ {
		if i > 400 {
			cmd.Process.Kill()
			t.Fatalf("the helper did not serve within 20 s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	me, _ := fusefs.MountAt(mnt)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		if me != nil {
			fusefs.AbortConn(me.Dev) // free it, or it stays in D state for good
		}
		t.Fatalf("the killed server did not exit within 10 s")
	}
	// stat may still be answered from cached attributes; statfs and
	// listing always reach the (dead) connection.
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("statfs of a killed server's mountpoint: %v, want ENOTCONN", err)
	}
	if _, err := os.ReadDir(mnt); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("listing a killed server's mountpoint: %v, want ENOTCONN", err)
	}
	s := startMount(t, &mountOptions{}, sp, mnt)
	if !strings.Contains(s.out.String(), "left mounted by a usmtkit that was killed; detached it") {
		t.Errorf("recovery not reported: %q", s.out)
	}
	if _, err := os.Stat(filepath.Join(mnt, "C/Users/jdoe/Documents/report.docx")); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

// TestMountBackgroundAndBusyUmount: --background returns once serving;
// umount of a busy mount names the process and detaches it; the server
// then exits when the process lets go.
func TestMountBackgroundAndBusyUmount(t *testing.T) {
	requireMount(t)
	sp := fixtures.USMT4(t, t.TempDir())
	mnt := emptyDir(t)
	cmd := helper(t, "mount", "--background", sp, mnt)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mount --background: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if _, ok := fusefs.MountAt(mnt); ok {
			_ = fusefs.LazyUnmount(mnt)
		}
	})
	if !strings.Contains(string(out), "serving ") || !strings.Contains(string(out), "(background pid ") {
		t.Fatalf("output %q", out)
	}
	pidStr := string(out)[strings.LastIndex(string(out), "pid ")+4:]
	pid, _ := strconv.Atoi(strings.TrimRight(pidStr, ")\n"))
	if _, ok := fusefs.MountAt(mnt); !ok {
		t.Fatalf("not mounted after --background returned")
	}

	// A process with its working directory in the mount keeps it busy
	// (sleep runs from /usr/bin, never from the mount).
	busy := exec.Command("sleep", "30")
	busy.Dir = filepath.Join(mnt, "C", "Users")
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer busy.Process.Kill()
	code, _, stderr := runCLI(t, "umount", "--no-lazy", mnt)
	if code != exitcodes.Failure || !strings.Contains(stderr, "is busy, in use by: "+strconv.Itoa(busy.Process.Pid)+" (sleep)") {
		t.Errorf("umount --no-lazy of a busy mount: exit %d, %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "umount", mnt)
	if code != 0 || !strings.Contains(stderr, strconv.Itoa(busy.Process.Pid)+" (sleep)") || !strings.Contains(stderr, "detached it") {
		t.Errorf("umount of a busy mount: exit %d, %q", code, stderr)
	}
	waitMounted(t, mnt, false)
	busy.Process.Kill()
	busy.Wait()
	for i := 0; i < 200 && pid > 0; i++ {
		if syscall.Kill(pid, 0) != nil {
			return // the background server exited
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("the background server (pid %d) still runs 10 s after its mount was released", pid)
	syscall.Kill(pid, syscall.SIGKILL)
}

func TestMountUmountErrors(t *testing.T) {
	code, _, stderr := runCLI(t, "umount", t.TempDir())
	if code != exitcodes.Failure || !strings.Contains(stderr, "is not mounted") {
		t.Errorf("umount of a plain folder: exit %d, %q", code, stderr)
	}
	code, _, _ = runCLI(t, "umount")
	if code != exitcodes.Usage {
		t.Errorf("umount without a mountpoint: exit %d", code)
	}
}
