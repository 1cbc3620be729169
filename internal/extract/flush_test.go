package extract

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// manyFiles is a store of n small files in two folders: more than one
// batch (flushFiles) of them.
func manyFiles(n int) *fakeStore {
	f := newFake().dir("USMT").dir("USMT/File").dir("USMT/File/C$").dir("USMT/File/C$/a").dir("USMT/File/C$/b")
	for i := 0; i < n; i++ {
		dir := "a"
		if i >= n/2 {
			dir = "b"
		}
		f.file(fmt.Sprintf("USMT/File/C$/%s/f%05d.txt", dir, i), "", fmt.Sprintf("content %d", i))
	}
	return f
}

func setSyncBatch(t *testing.T, fn func(fd int, ops []pendingOp) error) {
	old := syncBatch
	syncBatch = fn
	t.Cleanup(func() { syncBatch = old })
}

// tmpsIn lists the temporary files below root.
func tmpsIn(t *testing.T, root string) []string {
	var tmps []string
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err == nil && isTmpName(de.Name()) {
			tmps = append(tmps, p)
		}
		return nil
	})
	return tmps
}

// A batch's files are never under their real names before its syncfs
// returned, the renames come only after it, and the next batch is written
// while the flusher waits for the disk.
func TestExtractBatchInvisibleUntilSynced(t *testing.T) {
	const n = 2*flushFiles + 300
	f := manyFiles(n)
	dest := filepath.Join(t.TempDir(), "out")
	var mu sync.Mutex
	var batches, files, overlapped int
	check := func(ops []pendingOp, when string) {
		for _, op := range ops {
			if op.dirFd >= 0 {
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstatat(op.dirfd, op.name, &st, unix.AT_SYMLINK_NOFOLLOW); !errors.Is(err, unix.ENOENT) {
				t.Errorf("%s: %s is under its real name %s syncfs returned (%v)", op.rel, op.name, when, err)
			}
			if err := unix.Fstatat(op.dirfd, op.tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Size != op.e.Size {
				t.Errorf("%s: the temporary file is not complete %s syncfs returned (%v)", op.rel, when, err)
			}
		}
	}
	setSyncBatch(t, func(fd int, ops []pendingOp) error {
		check(ops, "before")
		mine := map[string]bool{}
		for _, op := range ops {
			mine[op.tmp] = true
		}
		// While this batch waits for the disk, the main goroutine writes the
		// next batch (there is one after the first two).
		mu.Lock()
		first := batches < 2
		batches++
		for _, op := range ops {
			if op.dirFd < 0 {
				files++
			}
		}
		mu.Unlock()
		if first {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				other := false
				for _, p := range tmpsIn(t, dest) {
					if !mine[filepath.Base(p)] {
						other = true
					}
				}
				if other {
					mu.Lock()
					overlapped++
					mu.Unlock()
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		err := unix.Syncfs(fd)
		time.Sleep(20 * time.Millisecond)
		check(ops, "before") // nothing is renamed while syncfs runs
		return err
	})
	res, err := Run(context.Background(), f, Options{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != n || files != n || batches < 3 {
		t.Fatalf("extracted %d files, %d synced in %d batches; want %d in 3 or more", res.Files, files, batches, n)
	}
	if overlapped != 2 {
		t.Errorf("the next batch was not written while a batch was flushed (%d of 2)", overlapped)
	}
	if tmps := tmpsIn(t, dest); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	got := treeOf(t, dest)
	for i := 0; i < n; i++ {
		dir := "a"
		if i >= n/2 {
			dir = "b"
		}
		if got[fmt.Sprintf("C/%s/f%05d.txt", dir, i)] != fmt.Sprintf("f content %d", i) {
			t.Fatalf("file %d missing or wrong", i)
		}
	}
	// Folder times are set after the renames into them.
	if m := mtimeOf(t, filepath.Join(dest, "C/a")); m != 1_700_000_000_123_456_789 {
		t.Errorf("folder time %d", m)
	}
}

// A syncfs failure stops the run with the same error as before: nothing of
// that batch or later is under a real name, and no temporary file is left.
func TestExtractSyncfsFailureStops(t *testing.T) {
	f := manyFiles(flushFiles + 500)
	dest := filepath.Join(t.TempDir(), "out")
	setSyncBatch(t, func(fd int, ops []pendingOp) error { return unix.EIO })
	res, err := Run(context.Background(), f, Options{Dest: dest})
	var fe *fatalError
	if err == nil || errors.As(err, &fe) || !errors.Is(err, unix.EIO) ||
		!strings.HasPrefix(err.Error(), "flushing written files to "+dest+": ") || !strings.Contains(err.Error(), "--skip-existing") {
		t.Fatalf("want the flush failure, got %v", err)
	}
	if res.Files != 0 {
		t.Errorf("%d files counted as extracted", res.Files)
	}
	for k, v := range treeOf(t, dest) {
		if v != "d" {
			t.Errorf("%s written", k)
		}
	}
}

// A conflict found while renaming a batch stops the run at the next batch
// boundary without --continue (recorded once, files after it not
// extracted), and is listed with --continue.
func TestExtractFlusherConflict(t *testing.T) {
	const n = flushFiles + 500
	victim := "f00007.txt"
	for _, cont := range []bool{false, true} {
		f := manyFiles(n)
		dest := filepath.Join(t.TempDir(), "out")
		var firstBatch int64
		setSyncBatch(t, func(fd int, ops []pendingOp) error {
			for _, op := range ops {
				if op.dirFd < 0 && firstBatch >= 0 {
					firstBatch++
				}
				if op.name == victim {
					// Another program creates the name while it is extracted.
					xfd, err := unix.Openat(op.dirfd, op.name, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644)
					if err != nil {
						t.Error(err)
					}
					unix.Close(xfd)
				}
			}
			if firstBatch > 0 {
				firstBatch = -firstBatch
			}
			return unix.Syncfs(fd)
		})
		res, err := Run(context.Background(), f, Options{Dest: dest, Continue: cont})
		if res.ConflictCount != 1 || len(res.Conflicts) != 1 || !strings.Contains(res.Conflicts[0].Path, victim) {
			t.Fatalf("continue=%v: conflicts %+v", cont, res.Conflicts)
		}
		if tmps := tmpsIn(t, dest); len(tmps) != 0 {
			t.Errorf("continue=%v: temporary files left: %v", cont, tmps)
		}
		got := treeOf(t, dest)
		if cont {
			if err != nil || res.Files != n-1 {
				t.Fatalf("--continue: %v, %d files", err, res.Files)
			}
			continue
		}
		var se *StopError
		if !errors.As(err, &se) || se.Kind != "conflict" || !strings.Contains(err.Error(), "appeared while it was extracted") {
			t.Fatalf("want a stop on the conflict, got %v", err)
		}
		// The first batch is in place; nothing after it.
		if res.Files != -firstBatch-1 {
			t.Errorf("%d files extracted, want %d", res.Files, -firstBatch-1)
		}
		if _, ok := got[fmt.Sprintf("C/b/f%05d.txt", n-1)]; ok {
			t.Error("extraction went on past the stop")
		}
	}
}

// The rename is the commit point: every temporary file already has the
// store's times when its batch is made durable, before any rename, so a
// run killed between a rename and the rest of the metadata leaves a file
// that --skip-existing keeps (TestExtractKilledMidBigFile was flaky when
// the times came after the rename).
func TestExtractTimesSetBeforeRename(t *testing.T) {
	f := manyFiles(50)
	dest := filepath.Join(t.TempDir(), "out")
	var checked int
	setSyncBatch(t, func(fd int, ops []pendingOp) error {
		for _, op := range ops {
			if op.dirFd >= 0 {
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstatat(op.dirfd, op.tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.Errorf("%s: %v", op.rel, err)
				continue
			}
			if st.Mtim.Nano() != op.e.MtimeNs || st.Atim.Nano() != op.e.AtimeNs {
				t.Errorf("%s: before its rename the temporary file has mtime %d atime %d, want %d %d", op.rel, st.Mtim.Nano(), st.Atim.Nano(), op.e.MtimeNs, op.e.AtimeNs)
			}
			checked++
		}
		return unix.Syncfs(fd)
	})
	res, err := Run(context.Background(), f, Options{Dest: dest})
	if err != nil || res.Files != 50 || checked != 50 || res.MetaFailures != 0 {
		t.Fatalf("run: %v, %d files, %d checked, %d metadata failures", err, res.Files, checked, res.MetaFailures)
	}
	if m := mtimeOf(t, filepath.Join(dest, "C/a/f00000.txt")); m != 1_600_000_000_987_654_321 {
		t.Errorf("mtime after the run %d", m)
	}
	res, err = Run(context.Background(), f, Options{Dest: dest, SkipExisting: true})
	if err != nil || res.SkippedExisting != 50 {
		t.Fatalf("rerun: %v, %+v", err, res)
	}
}
