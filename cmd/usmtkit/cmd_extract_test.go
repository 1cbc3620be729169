package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

// extWant lists what the windows layout must hold for a store: DEST-relative
// path -> content, for every user file.
func extWant(t *testing.T, paths ...string) map[string]string {
	t.Helper()
	s, err := store.Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]string{}
	for win, b := range storetest.UserFiles(t, s) {
		out[extOutPath(win)] = extContent(extOutPath(win), []byte(b))
	}
	return out
}

// extOutPath is where the windows layout puts a Windows path.
func extOutPath(win string) string {
	if d := store.DriveOf(win); d != "" {
		return d + "/" + strings.ReplaceAll(win[3:], `\`, "/")
	}
	return strings.ReplaceAll(win, `\`, "/")
}

// extLongRel is the relative path length above which a test compares
// only that a file exists: the full path is past PATH_MAX.
const extLongRel = 3000

func extContent(rel string, b []byte) string {
	if len(rel) > extLongRel {
		return "(path past PATH_MAX)"
	}
	return string(b)
}

// extLongExists tells whether a regular file exists at a path past
// PATH_MAX, walking it with openat one component at a time.
func extLongExists(t *testing.T, dest, rel string) bool {
	t.Helper()
	fd, err := syscall.Open(dest, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rel, "/")
	for _, c := range parts[:len(parts)-1] {
		nfd, err := syscall.Openat(fd, c, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
		syscall.Close(fd)
		if err != nil {
			return false
		}
		fd = nfd
	}
	defer syscall.Close(fd)
	nfd, err := syscall.Openat(fd, parts[len(parts)-1], syscall.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	syscall.Close(nfd)
	return true
}

// extFiles lists the regular files below dest with their contents; it
// fails on temporary files and on anything that is not a file or folder.
func extFiles(t *testing.T, dest string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dest, func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, syscall.ENAMETOOLONG) {
			return filepath.SkipDir // past PATH_MAX: see extLongExists
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dest, p)
		if strings.Contains(rel, ".usmtkit-tmp-") {
			t.Errorf("temporary file left: %s", rel)
		}
		if de.Type().IsRegular() {
			if len(rel) > extLongRel {
				out[rel] = extContent(rel, nil) // past PATH_MAX: os.ReadFile cannot open it
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = extContent(rel, b)
		} else if !de.IsDir() {
			t.Errorf("%s is neither a file nor a folder", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func extSame(t *testing.T, label string, got, want map[string]string) {
	t.Helper()
	var miss, extra []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			miss = append(miss, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(miss)
	sort.Strings(extra)
	if len(miss)+len(extra) > 0 {
		t.Errorf("%s: missing or different %q; unexpected %q", label, miss, extra)
	}
}

func extArchive(t *testing.T, dir string, chunk int, src ...string) string {
	t.Helper()
	s, err := store.Open(src...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := filepath.Join(dir, "store.tar.zst")
	if _, err := compress.CreateFile(context.Background(), p, s, compress.WriteOptions{ChunkSize: chunk}, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExtractEveryKind(t *testing.T) {
	dir := t.TempDir()
	usmt4 := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	usmt3 := fixtures.USMT3(t, filepath.Join(dir, "u3"))
	plain := fixtures.Plain(t, filepath.Join(dir, "plain"))
	multi := fixtures.MultiVolume(t, filepath.Join(dir, "mv"))
	smp := fixtures.SMPShare(t, filepath.Join(dir, "smp"))
	arch := extArchive(t, dir, 0, usmt4)
	member := smp.Stores[2]
	for _, tc := range []struct {
		name  string
		args  []string
		want  []string // store paths the expectation is read from
		files int
	}{
		{"usmt4", []string{usmt4}, []string{usmt4}, fixtures.USMT4Expect.Files},
		{"usmt3", []string{usmt3}, []string{usmt3}, -1},
		{"plain", []string{plain}, []string{plain}, -1},
		{"multi-volume", multi, multi, -1},
		{"archive", []string{arch}, []string{usmt4}, fixtures.USMT4Expect.Files},
		{"smp-store-id", []string{smp.Root, "--store-id", member.ID[:8]}, []string{member.StorePath}, 1},
		{"smp-member-path", []string{member.StorePath}, []string{member.StorePath}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			code, out, errs := runCLI(t, append(append([]string{"extract"}, tc.args...), dest)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errs)
			}
			want := extWant(t, tc.want...)
			if tc.files >= 0 && len(want) != tc.files {
				t.Fatalf("expectation has %d files, want %d", len(want), tc.files)
			}
			if len(want) == 0 {
				t.Fatal("empty expectation")
			}
			extSame(t, tc.name, extFiles(t, dest), want)
		})
	}
	// A share copy without --store-id, an unknown id, an encrypted member.
	code, _, errs := runCLI(t, "extract", smp.Root, filepath.Join(dir, "o1"))
	if code != exitcodes.Usage || !strings.Contains(errs, "--store-id") {
		t.Errorf("share without --store-id: exit %d %s", code, errs)
	}
	code, _, errs = runCLI(t, "extract", smp.Root, "--store-id", "zzzz", filepath.Join(dir, "o2"))
	if code != exitcodes.Usage || !strings.Contains(errs, "no store id") {
		t.Errorf("unknown id: exit %d %s", code, errs)
	}
	code, _, errs = runCLI(t, "extract", smp.Root, "--store-id", smp.Stores[0].ID, filepath.Join(dir, "o3"))
	if code != exitcodes.Encrypted {
		t.Errorf("encrypted member: exit %d %s", code, errs)
	}
	// Store layout from an archive gives a store again.
	dest := filepath.Join(dir, "as-store")
	if code, out, errs := runCLI(t, "extract", arch, dest, "--layout", "store"); code != 0 {
		t.Fatalf("--layout store: exit %d\n%s\n%s", code, out, errs)
	}
	extSame(t, "archive --layout store", extFiles(t, dest), extFiles(t, usmt4))
}

func TestExtractSelection(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	const jd = "C/Users/jdoe/"
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"name-star", []string{"--include", "*.mp3"}, []string{jd + "Music/song.mp3", jd + "Music/Favourites/song.mp3"}},
		{"path-star", []string{"--include", `C:\Users\jdoe\Documents\*.docx`}, []string{jd + "Documents/report.docx"}},
		{"path-slashes-case", []string{"--include", `c:/USERS/jdoe/documents/*.DOCX`}, []string{jd + "Documents/report.docx"}},
		{"folder", []string{"--include", `C:\Users\jdoe\Desktop`}, []string{jd + "Desktop/notes.txt"}},
		{"question-mark", []string{"--include", "cat.jp?"}, []string{"C/Users/asmith/Pictures/cat.jpg"}},
		{"several-comma-semicolon", []string{"--include", "cat.jpg,old.doc;shared.xlsx"},
			[]string{"C/Users/asmith/Pictures/cat.jpg", "D/Documents and Settings/olduser/My Documents/old.doc", "D/Data/shared.xlsx"}},
		// usmtutils' example: /i:myProject.* /e:*.exe still extracts myProject.exe.
		{"include-wins", []string{"--include", "song.*", "--exclude", "*.mp3", "--user", "jdoe", "--drive", "C"},
			[]string{jd + "Music/song.mp3", jd + "Music/Favourites/song.mp3"}},
		{"exclude-folder", []string{"--exclude", "Documents;Music", "--user", "jdoe"}, []string{jd + "Desktop/notes.txt"}},
		{"user", []string{"--user", "ASMITH"}, []string{"C/Users/asmith/Pictures/cat.jpg"}},
		{"drive", []string{"--drive", "d:"}, []string{"D/Documents and Settings/olduser/My Documents/old.doc", "D/Data/shared.xlsx"}},
		{"user-old-profile", []string{"--user", "olduser"}, []string{"D/Documents and Settings/olduser/My Documents/old.doc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			code, out, errs := runCLI(t, append([]string{"extract", sp, dest}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errs)
			}
			got := extFiles(t, dest)
			var keys []string
			for k := range got {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			want := append([]string(nil), tc.want...)
			sort.Strings(want)
			if strings.Join(keys, "\n") != strings.Join(want, "\n") {
				t.Fatalf("got %q\nwant %q", keys, want)
			}
		})
	}
}

const extDryRunGolden = `exclude  C:\Users\asmith\Pictures\cat.jpg  (matched --exclude C:\Users\asmith)
include  C:\Users\jdoe\Desktop\notes.txt  (matched --include *.txt)
include  C:\Users\jdoe\Documents\Long folder name 1 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\Long folder name 2 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\Long folder name 3 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\Long folder name 4 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\Long folder name 5 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\deep file.txt  (matched --include *.txt)
include  C:\Users\jdoe\Documents\empty.txt  (matched --include *.txt)
include  C:\Users\jdoe\Documents\report.docx  (matched --include C:\Users\jdoe\Documents\*.docx)
include  C:\Users\jdoe\Documents\with space $x.txt  (matched --include *.txt)
include  C:\Users\jdoe\Documents\Ünïcödé 文件 😀.txt  (matched --include *.txt)
include  C:\Users\jdoe\Music\Favourites\song.mp3  (matched --include s?ng.*)
include  C:\Users\jdoe\Music\song.mp3  (matched --include s?ng.*)
skip     D:\Data\shared.xlsx  (no --include matched)
skip     D:\Documents and Settings\olduser\My Documents\old.doc  (no --include matched)
skip     USMT/catalog.mig  (store control file (only kept with --layout store))
skip     USMT/migstate.dat  (store control file (only kept with --layout store))
would extract 8 files (37.6 KiB) to DEST (layout windows, names posix)
  not selected: 5 files (patterns, --user, --drive, control files)
`

func TestExtractDryRunGolden(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	dest := filepath.Join(t.TempDir(), "out")
	// Include wins: *.txt files are extracted although *.txt is also
	// excluded, and so is the deep file below an excluded folder.
	code, out, errs := runCLI(t, "extract", sp, dest, "--dry-run",
		"--include", `*.txt;C:\Users\jdoe\Documents\*.docx`, "--include", "s?ng.*",
		"--exclude", `*.txt,C:\Users\asmith`, "--exclude", "Long folder name 1*")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	if got := strings.ReplaceAll(out, dest, "DEST"); got != extDryRunGolden {
		t.Errorf("dry run output differs:\n--- got\n%s\n--- want\n%s", got, extDryRunGolden)
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("a dry run created DEST")
	}
	// --json: one decision object per line, then the summary.
	code, out, _ = runCLI(t, "extract", sp, dest, "--dry-run", "--json", "--include", "*.mp3")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum map[string]any
	if code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &sum) != nil || sum["type"] != "summary" || sum["extracted"] != 2.0 {
		t.Fatalf("--dry-run --json: exit %d\n%s", code, out)
	}
}

func TestExtractExistingAndDestRules(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	dest := filepath.Join(t.TempDir(), "out")
	notes := filepath.Join(dest, "C/Users/jdoe/Desktop/notes.txt")
	os.MkdirAll(filepath.Dir(notes), 0o755)
	os.WriteFile(notes, []byte("mine"), 0o644)
	code, _, errs := runCLI(t, "extract", sp, dest)
	if code != exitcodes.Failure || !strings.Contains(errs, "already exists: nothing was overwritten") || !strings.Contains(errs, "--skip-existing") {
		t.Fatalf("existing file: exit %d\n%s", code, errs)
	}
	code, out, errs := runCLI(t, "extract", sp, dest, "--continue", "--json")
	var sum map[string]any
	// cat.jpg was written by the stopped run (it comes before notes.txt).
	if code != exitcodes.Partial || json.Unmarshal([]byte(out), &sum) != nil || sum["conflicts"] != 2.0 {
		t.Fatalf("--continue: exit %d\n%s\n%s", code, out, errs)
	}
	if b, _ := os.ReadFile(notes); string(b) != "mine" {
		t.Fatal("an existing file was overwritten")
	}
	code, _, errs = runCLI(t, "extract", sp, dest, "--overwrite")
	if code != 0 {
		t.Fatalf("--overwrite: exit %d %s", code, errs)
	}
	extSame(t, "after --overwrite", extFiles(t, dest), extWant(t, sp))
	// DEST inside the store is a usage error, and nothing is created.
	code, _, errs = runCLI(t, "extract", sp, filepath.Join(sp, "USMT", "out"))
	if code != exitcodes.Usage || !strings.Contains(errs, "inside the source store") {
		t.Fatalf("DEST inside the store: exit %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(sp, "USMT", "out")); err == nil {
		t.Fatal("DEST was created inside the store")
	}
	if code, _, _ := runCLI(t, "extract", sp); code != exitcodes.Usage {
		t.Fatalf("no DEST: exit %d", code)
	}
	if code, _, _ := runCLI(t, "extract", sp, dest, "--layout", "flat"); code != exitcodes.Usage {
		t.Fatalf("bad --layout: exit %d", code)
	}
}

func TestExtractDamagedArchive(t *testing.T) {
	dir := t.TempDir()
	big := fixtures.PseudoRandom("extract/damaged.pst", 1<<20)
	root := filepath.Join(dir, "src")
	fixtures.Build(t, root, fixtures.Tree{
		"USMT/catalog.mig":                          fixtures.File{Data: []byte("catalog")},
		"USMT/File/C$/Users/jdoe/a.txt":             fixtures.File{Data: fixtures.Text("a", 3000)},
		"USMT/File/C$/Users/jdoe/Outlook/mail.pst":  fixtures.File{Data: big},
		"USMT/File/C$/Users/jdoe/z.txt":             fixtures.File{Data: fixtures.Text("z", 3000)},
		"USMT/File/C$/Users/jdoe/Pictures/pic.jpg":  fixtures.File{Data: fixtures.PseudoRandom("pic", 5000)},
		"USMT/File/C$/Users/jdoe/Documents/doc.txt": fixtures.File{Data: fixtures.Text("doc", 100)},
	})
	arch := extArchive(t, dir, compress.MinChunkSize, root)
	want := extWant(t, root)
	// The pst is most of the archive and incompressible: the middle of the
	// file is inside one of its data frames.
	fi, _ := os.Stat(arch)
	f, err := os.OpenFile(arch, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, fi.Size()/2)
	b[0] ^= 0x5a
	f.WriteAt(b, fi.Size()/2)
	f.Close()

	dest := filepath.Join(dir, "out")
	code, _, errs := runCLI(t, "extract", arch, dest)
	if code != exitcodes.Failure || !strings.Contains(errs, `C:\Users\jdoe\Outlook\mail.pst`) || !strings.Contains(errs, "--continue") {
		t.Fatalf("without --continue: exit %d\n%s", code, errs)
	}
	dest = filepath.Join(dir, "out2")
	code, out, errs := runCLI(t, "extract", arch, dest, "--continue", "--json")
	if code != exitcodes.Partial {
		t.Fatalf("--continue: exit %d\n%s\n%s", code, out, errs)
	}
	var sum struct {
		Damaged      int `json:"damaged"`
		Extracted    int `json:"extracted"`
		DamagedFiles []struct {
			Path, Kept string
		} `json:"damaged_files"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Damaged != 1 || sum.DamagedFiles[0].Path != `C:\Users\jdoe\Outlook\mail.pst` || sum.Extracted != len(want)-1 {
		t.Fatalf("summary %+v", sum)
	}
	got := extFiles(t, dest)
	pst := "C/Users/jdoe/Outlook/mail.pst"
	if _, ok := got[pst]; ok {
		t.Fatal("the damaged file is under its real name")
	}
	if k, ok := got[pst+".usmtkit-damaged"]; ok {
		if len(k) >= len(big) || k != string(big[:len(k)]) {
			t.Fatal("the kept part of the damaged file is not a prefix of the original")
		}
		delete(got, pst+".usmtkit-damaged")
	}
	delete(want, pst)
	extSame(t, "intact files", got, want)
}

// A kill or Ctrl-C in the middle of an extract is tested on a real
// process in internal/extract (process_test.go).

func TestExtractHostileFixture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the fixture's mode 000 entries are only readable as root")
	}
	h := fixtures.Hostile(t, t.TempDir())
	dest := filepath.Join(t.TempDir(), "out")
	code, out, errs := runCLI(t, "extract", h.StorePath, dest, "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	// Symlinks (loops, one to /etc), the FIFO and the socket are counted,
	// never created; the file past PATH_MAX and the non-UTF-8 name are
	// extracted.
	if sum["extracted"] != float64(h.RegularFiles) || sum["special"] != 6.0 {
		t.Fatalf("summary %s", out)
	}
	want, got := extWant(t, h.StorePath), extFiles(t, dest)
	for rel := range want {
		if len(rel) > extLongRel {
			if !extLongExists(t, dest, rel) {
				t.Errorf("the file past PATH_MAX was not extracted")
			}
			delete(want, rel)
		}
	}
	extSame(t, "hostile", got, want)
}

// TestExtractMapUserDrive: --map-user and --map-drive send D:\Documents and
// Settings\olduser to C:\Users\newuser and D:\Data to C:\Data, onto a real
// ntfs-3g volume laid out like a fresh install (Users\newuser exists); the
// dry run shows source -> destination; a file already at a mapped
// destination is a conflict like any other, never overwritten.
func TestExtractMapUserDrive(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	v := fixtures.NewNTFSVolume(t, 64)
	dest := v.Mount
	if err := os.MkdirAll(filepath.Join(dest, "C", "Users", "newuser", "Desktop"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"extract", sp, dest, "--map-user", `olduser=CORP\newuser`, "--map-drive", "D=C"}

	code, out, errs := runCLI(t, append(args, "--dry-run")...)
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, errs)
	}
	for _, want := range []string{
		`D:\Documents and Settings\olduser\My Documents\old.doc -> ` + filepath.Join(dest, "C/Users/newuser/My Documents/old.doc"),
		`D:\Data\shared.xlsx -> ` + filepath.Join(dest, "C/Data/shared.xlsx"),
		`C:\Users\jdoe\Desktop\notes.txt -> ` + filepath.Join(dest, "C/Users/jdoe/Desktop/notes.txt"),
		`mapped: profile olduser -> Users\newuser, drive D: -> C:`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "C", "Data")); err == nil {
		t.Fatal("the dry run wrote")
	}

	code, out, errs = runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	for src, dst := range map[string]string{
		"USMT/File/D$/Documents and Settings/olduser/My Documents/old.doc": "C/Users/newuser/My Documents/old.doc",
		"USMT/File/D$/Data/shared.xlsx":                                    "C/Data/shared.xlsx",
	} {
		want, err := os.ReadFile(filepath.Join(sp, src))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dest, dst))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s -> %s: %v", src, dst, err)
		}
		si, _ := os.Stat(filepath.Join(sp, src))
		// NTFS keeps times in 100 ns units.
		if di, err := os.Stat(filepath.Join(dest, dst)); err != nil || di.ModTime().UnixNano()/100 != si.ModTime().UnixNano()/100 {
			t.Errorf("%s: modification time not kept: %v, source %v", dst, di.ModTime(), si.ModTime())
		}
	}
	for _, gone := range []string{"D", "C/Documents and Settings", "C/Users/olduser"} {
		if _, err := os.Stat(filepath.Join(dest, gone)); err == nil {
			t.Errorf("%s exists: the mapping was not applied", gone)
		}
	}
	// The mapped destination is now taken: a second run is a conflict.
	code, _, errs = runCLI(t, args...)
	if code != exitcodes.Failure || !strings.Contains(errs, "already exists") {
		t.Errorf("second run: exit %d\n%s", code, errs)
	}
	// Bad values are usage errors, before anything is opened.
	for _, bad := range [][]string{{"--map-user", "olduser"}, {"--map-drive", "DD=C"}, {"--map-drive", "D=C", "--map-drive", "D=E"}} {
		if code, _, _ := runCLI(t, append([]string{"extract", sp, t.TempDir()}, bad...)...); code != exitcodes.Usage {
			t.Errorf("%v: exit %d, want %d", bad, code, exitcodes.Usage)
		}
	}
}

// TestExtractKeepsSparse: a sparse file (64 MiB, 8 KiB of data) stays
// sparse when extracted from a folder and from an archive (which stores
// its holes as zeros), and reads back byte for byte.
func TestExtractKeepsSparse(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	sparse := filepath.Join(src, "disk.vhd")
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("data", 2048))
	if _, err := f.WriteAt(data, 40<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(sparse, &st); err != nil || st.Blocks*512 >= size/2 {
		t.Skipf("the test folder's file system does not keep %s sparse", sparse)
	}
	archive := filepath.Join(t.TempDir(), "tree.tar.zst")
	if code, _, errs := runCLI(t, "compress", "--plain", src, "-o", archive); code != 0 {
		t.Fatalf("compress: exit %d %s", code, errs)
	}
	want, _ := os.ReadFile(sparse)
	for name, from := range map[string]string{"folder": src, "archive": archive} {
		dest := filepath.Join(t.TempDir(), "out")
		if code, _, errs := runCLI(t, "extract", "--plain", from, dest); code != 0 {
			t.Fatalf("%s: exit %d %s", name, code, errs)
		}
		var got string
		filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "disk.vhd" {
				got = p
			}
			return nil
		})
		b, err := os.ReadFile(got)
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("%s: content differs (%v)", name, err)
		}
		if err := syscall.Stat(got, &st); err != nil || st.Blocks*512 > 4<<20 {
			t.Errorf("%s: %d bytes allocated for a file of %d bytes with 8 KiB of data", name, st.Blocks*512, size)
		}
	}
}
