package extract

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// treeOf lists everything under root: "d" for folders, "f <content>" for
// files (content abbreviated by length for big ones), "l -> target".
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case de.Type()&fs.ModeSymlink != 0:
			tg, _ := os.Readlink(p)
			out[rel] = "l -> " + tg
		case de.IsDir():
			out[rel] = "d"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "f " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func mtimeOf(t *testing.T, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mtim.Nano()
}

func openUSMT4(t *testing.T) (store.Store, string) {
	t.Helper()
	sp := fixtures.USMT4(t, t.TempDir())
	s, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sp
}

func TestExtractWindowsLayout(t *testing.T) {
	s, sp := openUSMT4(t)
	dest := filepath.Join(t.TempDir(), "out")
	res, err := Run(context.Background(), s, Options{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != int64(fixtures.USMT4Expect.Files) || res.Bytes != fixtures.USMT4Expect.Bytes {
		t.Errorf("extracted %d files %d bytes, want %d, %d", res.Files, res.Bytes, fixtures.USMT4Expect.Files, fixtures.USMT4Expect.Bytes)
	}
	if res.HardLinks != 1 {
		t.Errorf("hard links = %d, want 1", res.HardLinks)
	}
	got := treeOf(t, dest)
	// Every file of the store is at its Windows path, byte for byte.
	err = filepath.WalkDir(filepath.Join(sp, "USMT/File"), func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(sp, "USMT/File"), p)
		out := strings.TrimSuffix(rel[:1], "$") + rel[2:]
		want, _ := os.ReadFile(p)
		if got[out] != "f "+string(want) {
			t.Errorf("%s: missing or different in DEST", out)
		}
		if a, b := mtimeOf(t, p), mtimeOf(t, filepath.Join(dest, out)); a != b {
			t.Errorf("%s: mtime %d, want %d", out, b, a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got["C/Users/asmith/Favorites"] != "d" {
		t.Errorf("the empty folder was not extracted")
	}
	for k := range got {
		if strings.Contains(k, "catalog") || strings.Contains(k, "tmp") || strings.Contains(k, "lock") {
			t.Errorf("unexpected %s in DEST", k)
		}
	}
	// Hard links stay hard links.
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(dest, "C/Users/jdoe/Music/song.mp3"), &a)
	unix.Stat(filepath.Join(dest, "C/Users/jdoe/Music/Favourites/song.mp3"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("song.mp3 not hard-linked: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	// Folder times are set after their contents.
	if m := mtimeOf(t, filepath.Join(dest, "C/Users/jdoe/Documents")); m != fixtures.DefaultMtime.UnixNano() {
		t.Errorf("Documents mtime %v, want %v", time.Unix(0, m), fixtures.DefaultMtime)
	}
	// --hardlinks copy writes separate files.
	dest2 := filepath.Join(t.TempDir(), "out")
	if _, err := Run(context.Background(), s, Options{Dest: dest2, HardlinkCopy: true}); err != nil {
		t.Fatal(err)
	}
	unix.Stat(filepath.Join(dest2, "C/Users/jdoe/Music/song.mp3"), &a)
	if a.Nlink != 1 {
		t.Errorf("--hardlinks copy: nlink %d", a.Nlink)
	}
}

func TestExtractStoreLayoutIsAStore(t *testing.T) {
	s, sp := openUSMT4(t)
	dest := filepath.Join(t.TempDir(), "out")
	if _, err := Run(context.Background(), s, Options{Dest: dest, Layout: LayoutStore}); err != nil {
		t.Fatal(err)
	}
	want, got := treeOf(t, sp), treeOf(t, dest)
	if strings.Join(keys(want), "\n") != strings.Join(keys(got), "\n") {
		t.Fatalf("store layout differs:\nwant %q\ngot  %q", keys(want), keys(got))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s differs", k)
		}
	}
	d, err := store.Detect(dest)
	if err != nil || d.Kind != store.KindUSMTDir {
		t.Fatalf("the extracted tree is not detected as a store: %v %v", d, err)
	}
}

func TestExtractHostileNamesStayInside(t *testing.T) {
	parent := t.TempDir()
	dest := filepath.Join(parent, "dest")
	outside := filepath.Join(parent, "outside")
	os.Mkdir(outside, 0o755)
	os.MkdirAll(filepath.Join(dest, "C"), 0o755)
	// A symlink planted in DEST pointing outside, where a folder will be written.
	os.Symlink(outside, filepath.Join(dest, "C", "Users"))
	f := newFake().dir("USMT").dir("USMT/File").dir("USMT/File/C$").
		file("USMT/File/C$/../../../../evil", `C:\..\evil`, "evil1").
		file("/etc/x", `C:\etc\x`, "evil2").
		file("USMT/File/C$/a/../../b", `C:\a\..\..\b`, "evil3").
		dir("USMT/File/C$/Users").
		file("USMT/File/C$/Users/victim.txt", "", "evil4").
		file("USMT/File/C$/ok.txt", "", "good")
	for _, layout := range []string{LayoutWindows, LayoutStore} {
		res, err := Run(context.Background(), f, Options{Dest: dest, Layout: layout, Continue: true})
		if err != nil {
			t.Fatalf("%s: %v", layout, err)
		}
		if layout == LayoutWindows && (res.RefusedCount != 3 || res.ConflictCount != 1) {
			t.Errorf("%s: refused %d conflicts %d: %+v %+v", layout, res.RefusedCount, res.ConflictCount, res.Refused, res.Conflicts)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("something was written outside DEST through the symlink: %v", ents)
	}
	for _, p := range []string{filepath.Join(parent, "evil"), "/evil", "/etc/x", filepath.Join(parent, "b")} {
		if _, err := os.Lstat(p); err == nil && !strings.HasPrefix(p, "/etc") {
			t.Errorf("%s was written", p)
		}
	}
	if b, _ := os.ReadFile("/etc/x"); string(b) == "evil2" {
		t.Fatal("/etc/x written")
	}
	got := treeOf(t, parent)
	for k := range got {
		if !strings.HasPrefix(k, "dest") && k != "outside" {
			t.Errorf("written outside DEST: %s", k)
		}
	}
	if got["dest/C/ok.txt"] != "f good" {
		t.Errorf("the good file was not extracted: %v", got)
	}
	// Without --continue the first unsafe name stops the run.
	_, err := Run(context.Background(), f, Options{Dest: filepath.Join(parent, "dest2")})
	var se *StopError
	if !errors.As(err, &se) || se.Kind != "refused" || !strings.Contains(err.Error(), "--continue") {
		t.Fatalf("want a stop on the unsafe name, got %v", err)
	}
}

func TestExtractDamagedFile(t *testing.T) {
	content := strings.Repeat("0123456789", 300000) // 3 MB: several read chunks
	f := newFake().dir("USMT").dir("USMT/File").dir("USMT/File/C$").
		file("USMT/File/C$/a.txt", "", "first").
		file("USMT/File/C$/big.pst", "", content).
		file("USMT/File/C$/z.txt", "", "last")
	f.failAt["USMT/File/C$/big.pst"] = 1<<20 + 5
	dest := filepath.Join(t.TempDir(), "out")
	_, err := Run(context.Background(), f, Options{Dest: dest})
	var se *StopError
	if !errors.As(err, &se) || se.Kind != "damaged" || !errors.Is(err, store.ErrCorrupt) ||
		!strings.Contains(err.Error(), `C:\big.pst`) || !strings.Contains(err.Error(), "--continue") {
		t.Fatalf("want a stop naming the damaged file, got %v", err)
	}
	got := treeOf(t, dest)
	if _, ok := got["C/big.pst"]; ok {
		t.Fatal("the damaged file is under its real name")
	}
	if _, ok := got["C/z.txt"]; ok {
		t.Fatal("extraction went on past the damaged file without --continue")
	}
	dest = filepath.Join(t.TempDir(), "out")
	res, err := Run(context.Background(), f, Options{Dest: dest, Continue: true})
	if err != nil {
		t.Fatal(err)
	}
	got = treeOf(t, dest)
	if got["C/a.txt"] != "f first" || got["C/z.txt"] != "f last" || res.DamagedCount != 1 || res.Files != 2 {
		t.Fatalf("--continue: %v %+v", keys(got), res)
	}
	if _, ok := got["C/big.pst"]; ok {
		t.Fatal("the damaged file is under its real name")
	}
	if kept := got["C/big.pst"+DamagedSuffix]; kept != "f "+content[:1<<20+5] || res.Damaged[0].Kept != "C/big.pst"+DamagedSuffix {
		t.Fatalf("the readable part was not kept: %d bytes, %+v", len(kept), res.Damaged)
	}
}

func TestExtractExistingFiles(t *testing.T) {
	s, _ := openUSMT4(t)
	dest := filepath.Join(t.TempDir(), "out")
	notes := filepath.Join(dest, "C/Users/jdoe/Desktop/notes.txt")
	os.MkdirAll(filepath.Dir(notes), 0o755)
	os.WriteFile(notes, []byte("mine"), 0o644)
	_, err := Run(context.Background(), s, Options{Dest: dest})
	var se *StopError
	if !errors.As(err, &se) || se.Kind != "conflict" || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), "--skip-existing") {
		t.Fatalf("want a conflict stop, got %v", err)
	}
	if b, _ := os.ReadFile(notes); string(b) != "mine" {
		t.Fatal("an existing file was overwritten")
	}
	res, err := Run(context.Background(), s, Options{Dest: dest, Continue: true})
	if err != nil || res.ConflictCount < 1 {
		t.Fatalf("--continue: %v %+v", err, res)
	}
	if b, _ := os.ReadFile(notes); string(b) != "mine" {
		t.Fatal("an existing file was overwritten")
	}
	// Everything else is there now: --skip-existing skips identical files,
	// and still refuses the different one.
	res, err = Run(context.Background(), s, Options{Dest: dest, SkipExisting: true, Continue: true})
	if err != nil || res.SkippedExisting != int64(fixtures.USMT4Expect.Files)-1 || res.ConflictCount != 1 || res.Files != 0 {
		t.Fatalf("--skip-existing: %v %+v", err, res)
	}
	res, err = Run(context.Background(), s, Options{Dest: dest, SkipExisting: true, Overwrite: true})
	if err != nil || res.Files != 1 {
		t.Fatalf("--skip-existing --overwrite: %v %+v", err, res)
	}
	if b, _ := os.ReadFile(notes); string(b) == "mine" {
		t.Fatal("--overwrite did not replace the file")
	}
}

func TestExtractDestInsideStore(t *testing.T) {
	s, sp := openUSMT4(t)
	for _, d := range []string{sp, filepath.Join(sp, "USMT", "restore")} {
		_, err := Run(context.Background(), s, Options{Dest: d})
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "inside the source store") {
			t.Fatalf("DEST %s: %v", d, err)
		}
	}
	if _, err := os.Stat(filepath.Join(sp, "USMT", "restore")); err == nil {
		t.Fatal("the refused DEST was created inside the store")
	}
	// A DEST above the store is fine, but nothing lands inside the store:
	// a plain tree holding a folder named like the store root.
	parent := t.TempDir()
	storeDir := filepath.Join(parent, "data")
	os.MkdirAll(filepath.Join(storeDir, "data"), 0o755)
	os.WriteFile(filepath.Join(storeDir, "data", "x.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(storeDir, "top.txt"), []byte("t"), 0o644)
	ps, err := store.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	res, err := Run(context.Background(), ps, Options{Dest: parent, Continue: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.RefusedCount != 1 || !strings.Contains(res.Refused[0].Error, "inside the source store") {
		t.Fatalf("refused: %+v", res.Refused)
	}
	if _, err := os.Stat(filepath.Join(parent, "data", "x.txt.")); err == nil {
		t.Fatal("??")
	}
	if got := treeOf(t, storeDir); len(got) != 3 {
		t.Fatalf("the store changed: %v", got)
	}
}

func TestExtractWindowsNames(t *testing.T) {
	f := newFake().dir("USMT").dir("USMT/File").dir("USMT/File/C$").
		file("USMT/File/C$/CON.txt", "", "1").
		file("USMT/File/C$/Report.txt", "", "2").
		file("USMT/File/C$/a:b?.txt", "", "3").
		file("USMT/File/C$/report.txt", "", "4").
		file("USMT/File/C$/trail.", "", "5").
		file("USMT/File/C$/100%41", "", "6")
	dest := filepath.Join(t.TempDir(), "out")
	res, err := Run(context.Background(), f, Options{Dest: dest, Names: "windows"})
	if err != nil {
		t.Fatal(err)
	}
	got := treeOf(t, dest)
	want := map[string]string{"C": "d", "C/%43ON.txt": "f 1", "C/Report.txt": "f 2", "C/a%3Ab%3F.txt": "f 3",
		"C/%72eport.txt": "f 4", "C/trail%2E": "f 5", "C/100%2541": "f 6"}
	if strings.Join(keys(got), " ") != strings.Join(keys(want), " ") {
		t.Fatalf("got %q, want %q", keys(got), keys(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
		// Reversible: unescaping the written name gives the store name back.
		if k != "C" {
			orig := UnescapeName(filepath.Base(k))
			if _, ok := f.data["USMT/File/C$/"+orig]; !ok {
				t.Errorf("%s unescapes to %q, not a store name", k, orig)
			}
		}
	}
	if res.EscapedCount != 4 || res.CollisionCount != 1 || res.Collisions[0].Path != `C:\report.txt` {
		t.Errorf("escaped %d collisions %+v", res.EscapedCount, res.Collisions)
	}
}

func TestExtractStaleTempAndLock(t *testing.T) {
	s, _ := openUSMT4(t)
	dest := filepath.Join(t.TempDir(), "out")
	dir := filepath.Join(dest, "C/Users/jdoe/Desktop")
	os.MkdirAll(dir, 0o755)
	stale := filepath.Join(dir, ".notes.txt"+tmpMarker+"0123abcd")
	os.WriteFile(stale, []byte("half"), 0o644)
	keep := filepath.Join(dir, ".notes.txt.usmtkit-tmp-nothex!")
	os.WriteFile(keep, []byte("user file"), 0o644)
	res, err := Run(context.Background(), s, Options{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil || res.StaleTempsRemoved != 1 {
		t.Fatalf("stale temp file not removed (%d)", res.StaleTempsRemoved)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatal("a file that only looks like a temp file was removed")
	}
	if _, err := os.Stat(filepath.Join(dest, lockName)); err == nil {
		t.Fatal("the lock file was left behind")
	}
	// A second extract into the same DEST while one runs is refused.
	fd, _ := unix.Open(filepath.Join(dest, lockName), unix.O_CREAT|unix.O_RDWR, 0o600)
	unix.Flock(fd, unix.LOCK_EX)
	defer unix.Close(fd)
	_, err = Run(context.Background(), s, Options{Dest: dest, SkipExisting: true})
	if err == nil || !strings.Contains(err.Error(), "another usmtkit extract") {
		t.Fatalf("concurrent extract not refused: %v", err)
	}
}

func TestExtractDryRunWritesNothing(t *testing.T) {
	s, _ := openUSMT4(t)
	dest := filepath.Join(t.TempDir(), "out")
	var lines bytes.Buffer
	res, err := Run(context.Background(), s, Options{Dest: dest, DryRun: true, Include: []string{"*.mp3"},
		Decision: func(a Action, p, _, r string) { lines.WriteString(a.String() + " " + p + " (" + r + ")\n") }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("a dry run created DEST")
	}
	if res.Files != 2 || !strings.Contains(lines.String(), `include C:\Users\jdoe\Music\song.mp3 (matched --include *.mp3)`) {
		t.Fatalf("%+v\n%s", res, lines.String())
	}
}

// A name longer than 255 bytes (a file and a folder) is written under a
// shortened name (rule 7) on any target, listed as escaped, and found
// again by a --skip-existing rerun.
func TestExtractLongNames(t *testing.T) {
	longDir := strings.Repeat("d", 280)
	longFile := strings.Repeat("n", 300) + ".txt"
	f := newFake().dir("USMT").dir("USMT/File").dir("USMT/File/C$").dir("USMT/File/C$/"+longDir).
		file("USMT/File/C$/"+longDir+"/"+longFile, "", "long").
		file("USMT/File/C$/after.txt", "", "after")
	dest := filepath.Join(t.TempDir(), "out")
	res, err := Run(context.Background(), f, Options{Dest: dest, Names: "posix"})
	if err != nil || res.Problems() != 0 || res.Files != 2 {
		t.Fatalf("run: %v %+v", err, res)
	}
	wantDir, wantFile := shortenName(longDir, longDir), shortenName(longFile, longFile)
	if res.EscapedCount != 2 || res.Escaped[0].Written != "C/"+wantDir || res.Escaped[1].Written != "C/"+wantDir+"/"+wantFile {
		t.Errorf("escaped %+v", res.Escaped)
	}
	got := treeOf(t, dest)
	if got["C/"+wantDir+"/"+wantFile] != "f long" || got["C/after.txt"] != "f after" {
		t.Errorf("tree %v", got)
	}
	res, err = Run(context.Background(), f, Options{Dest: dest, Names: "posix", SkipExisting: true})
	if err != nil || res.SkippedExisting != 2 {
		t.Fatalf("rerun: %v %+v", err, res)
	}
}
