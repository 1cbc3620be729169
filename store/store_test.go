package store_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// walkAll collects every entry and every walk error of a store.
func walkAll(t *testing.T, s store.Store) (entries []store.Entry, errs map[string]error) {
	t.Helper()
	errs = map[string]error{}
	err := s.Walk(context.Background(), func(e *store.Entry, err error) error {
		entries = append(entries, *e)
		if err != nil {
			errs[e.StorePath] = err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return entries, errs
}

// checkAgainst compares a walk with a fixture's documented contents.
func checkAgainst(t *testing.T, s store.Store, want fixtures.Expect) {
	t.Helper()
	entries, errs := walkAll(t, s)
	if len(errs) > 0 {
		t.Fatalf("unexpected walk errors: %v", errs)
	}
	var paths []string
	var control []string
	dirs := 0
	var bytes int64
	prefix := want.DataRoot + "/"
	for i, e := range entries {
		if i > 0 && store.ComparePaths(entries[i-1].StorePath, e.StorePath) >= 0 {
			t.Errorf("walk order: %q came before %q", entries[i-1].StorePath, e.StorePath)
		}
		if want.DataRoot != "" && !strings.HasPrefix(e.StorePath, prefix) {
			if e.Control {
				control = append(control, e.StorePath)
			}
			continue
		}
		switch e.Type {
		case store.TypeFile:
			paths = append(paths, strings.TrimPrefix(e.StorePath, ""))
			bytes += e.Size
		case store.TypeDir:
			if e.StorePath != "" {
				dirs++
			}
		}
	}
	sort.Strings(paths)
	if strings.Join(paths, "\n") != strings.Join(want.Paths, "\n") {
		t.Errorf("files:\n got %q\nwant %q", paths, want.Paths)
	}
	if dirs != want.Dirs || bytes != want.Bytes {
		t.Errorf("dirs %d bytes %d, want %d %d", dirs, bytes, want.Dirs, want.Bytes)
	}
	sort.Strings(control)
	if strings.Join(control, ",") != strings.Join(want.Control, ",") {
		t.Errorf("control files %q, want %q", control, want.Control)
	}
	sum, err := store.Summarize(context.Background(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.BytesUnique-ctrlBytes(s) != want.UniqueBytes {
		t.Errorf("unique bytes %d (minus control), want %d", sum.BytesUnique-ctrlBytes(s), want.UniqueBytes)
	}
	var users []string
	for _, u := range sum.Users {
		users = append(users, u.Name)
	}
	sort.Strings(users)
	if strings.Join(users, ",") != strings.Join(want.Users, ",") {
		t.Errorf("users %q, want %q", users, want.Users)
	}
}

func ctrlBytes(s store.Store) int64 {
	var n int64
	for _, c := range s.Info().Control {
		n += c.Size
	}
	return n
}

func TestUSMT4OpensFromEveryLevel(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	for _, tc := range []struct{ path, level string }{
		{sp, store.LevelStorePath},
		{filepath.Join(sp, "USMT"), store.LevelUSMTFolder},
		{filepath.Join(sp, "USMT", "File"), store.LevelFileFolder},
		{filepath.Join(sp, "USMT", "File", "C$"), store.LevelDriveFolder},
		{filepath.Join(sp, "USMT", "catalog.mig"), store.LevelUSMTFolder},
	} {
		t.Run(tc.level+"-"+filepath.Base(tc.path), func(t *testing.T) {
			s, err := store.Open(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			info := s.Info()
			if info.Kind != store.KindUSMTDir || info.Level != tc.level || info.Version != "USMT 4+" {
				t.Fatalf("kind %s level %s version %s", info.Kind, info.Level, info.Version)
			}
			if len(info.Roots) != 1 || info.Roots[0] != sp {
				t.Fatalf("roots %v, want %s", info.Roots, sp)
			}
			if len(info.Control) != 2 {
				t.Fatalf("control files %+v", info.Control)
			}
			checkAgainst(t, s, fixtures.USMT4Expect)
		})
	}
}

func TestEntryFieldsAndWinPaths(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	s, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Stat("USMT/File/C$/Users/jdoe/Documents/report.docx")
	if err != nil {
		t.Fatal(err)
	}
	if e.WinPath != `C:\Users\jdoe\Documents\report.docx` || e.Type != store.TypeFile || e.Size != 20000 {
		t.Fatalf("entry %+v", e)
	}
	if e.MtimeNs != fixtures.USMT4ReportMtime.UnixNano() {
		t.Fatalf("mtime %d, want %d (ns precision)", e.MtimeNs, fixtures.USMT4ReportMtime.UnixNano())
	}
	if e.Ino == 0 || e.LinkID == 0 || e.Nlink != 1 {
		t.Fatalf("identity %+v", e)
	}
	a, _ := s.Stat(fixtures.USMT4LinkA)
	b, _ := s.Stat(fixtures.USMT4LinkB)
	if a.LinkID != b.LinkID || a.Ino != b.Ino || a.Nlink != 2 {
		t.Fatalf("hard link pair not one group: %+v %+v", a, b)
	}
	c, _ := s.Stat("USMT/catalog.mig")
	if !c.Control || c.WinPath != "" {
		t.Fatalf("catalog.mig must be control with no Windows path: %+v", c)
	}
	d, _ := s.Stat("USMT/File/D$/Documents and Settings/olduser/My Documents/old.doc")
	if d.WinPath != `D:\Documents and Settings\olduser\My Documents\old.doc` || store.UserOf(d.WinPath) != "olduser" {
		t.Fatalf("D: path %q", d.WinPath)
	}
	f, err := s.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil || len(got) != 20000 {
		t.Fatalf("read %d bytes: %v", len(got), err)
	}
	want, _ := os.ReadFile(filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/report.docx"))
	if string(got) != string(want) {
		t.Fatal("content differs")
	}
}

func TestResolveWinPath(t *testing.T) {
	s, err := store.Open(fixtures.USMT4(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		`C:\Users\jdoe\Documents`:  "USMT/File/C$/Users/jdoe/Documents",
		`c:\users\JDOE\documents\`: "USMT/File/C$/Users/jdoe/Documents",
		`c:/Users/asmith`:          "USMT/File/C$/Users/asmith",
		`D:`:                       "USMT/File/D$",
		`USMT/catalog.mig`:         "USMT/catalog.mig",
		``:                         "",
	} {
		got, err := store.ResolveWinPath(s, in)
		if err != nil || got != want {
			t.Errorf("ResolveWinPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := store.ResolveWinPath(s, `C:\Users\nobody`); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
}

func TestOtherKinds(t *testing.T) {
	t.Run("usmt3", func(t *testing.T) {
		sp := fixtures.USMT3(t, t.TempDir())
		for _, p := range []string{sp, filepath.Join(sp, "USMT3"), filepath.Join(sp, "USMT3", "File")} {
			s, err := store.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if s.Info().Kind != store.KindUSMT3Dir || s.Info().Version != "USMT 3" {
				t.Fatalf("%s: %+v", p, s.Info())
			}
			checkAgainst(t, s, fixtures.USMT3Expect)
		}
	})
	t.Run("plain", func(t *testing.T) {
		p := fixtures.Plain(t, t.TempDir())
		s, err := store.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if s.Info().Kind != store.KindPlain || s.Info().Level != store.LevelDirectory {
			t.Fatalf("%+v", s.Info())
		}
		checkAgainst(t, s, fixtures.PlainExpect)
	})
	t.Run("frozen", func(t *testing.T) {
		for _, name := range fixtures.FrozenNames {
			root := fixtures.Frozen(t, name)
			var paths []string
			if strings.HasPrefix(name, "multivolume") {
				paths = []string{filepath.Join(root, "c"), filepath.Join(root, "d")}
			} else {
				paths = []string{root}
			}
			s, err := store.Open(paths...)
			if err != nil {
				t.Fatalf("frozen %s no longer opens: %v", name, err)
			}
			entries, errs := walkAll(t, s)
			if len(errs) > 0 || len(entries) < 5 {
				t.Fatalf("frozen %s: %d entries, errors %v", name, len(entries), errs)
			}
		}
	})
}

func TestMultiVolume(t *testing.T) {
	roots := fixtures.MultiVolume(t, t.TempDir())
	s, err := store.Open(roots...)
	if err != nil {
		t.Fatal(err)
	}
	info := s.Info()
	if len(info.Roots) != 2 || info.Kind != store.KindUSMTDir {
		t.Fatalf("%+v", info)
	}
	sum, err := store.Summarize(context.Background(), s, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fixtures.MultiVolumeExpect
	wantFiles := int64(want[0].Files + want[1].Files + len(want[0].Control) + len(want[1].Control))
	drives := map[string]bool{}
	for _, e := range want {
		for _, d := range e.Drives {
			drives[strings.TrimSuffix(d, "$")] = true
		}
	}
	if sum.Files != wantFiles || len(sum.Drives) != len(drives) {
		t.Fatalf("files %d drives %+v, want %d files on %v", sum.Files, sum.Drives, wantFiles, drives)
	}
	if len(s.Info().Clashes) != 0 {
		t.Fatalf("clashes %v", s.Info().Clashes)
	}
	// Every D$ entry comes from the second volume.
	kids, err := s.ReadDir("USMT/File")
	if err != nil || len(kids) != len(drives) || kids[0].Name() != "C$" || kids[1].Name() != "D$" || kids[1].Volume != 1 {
		t.Fatalf("merged File folder: %+v %v", kids, err)
	}

	t.Run("clash", func(t *testing.T) {
		roots, clash := fixtures.MultiVolumeClash(t, t.TempDir())
		s, err := store.Open(roots...)
		if err != nil {
			t.Fatal(err)
		}
		walkAll(t, s)
		if c := s.Info().Clashes; len(c) != 1 || c[0] != clash {
			t.Fatalf("clashes %v, want [%s]", c, clash)
		}
	})
	t.Run("mixed kinds refused", func(t *testing.T) {
		_, err := store.Open(roots[0], fixtures.Plain(t, t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "only volumes of one store") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestSMPShareAndMIG(t *testing.T) {
	share := fixtures.SMPShare(t, t.TempDir())
	d, err := store.Detect(share.Root)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != store.KindSMP || len(d.Members) != len(share.Stores) {
		t.Fatalf("detection %+v, want %d members", d, len(share.Stores))
	}
	byID := map[string]store.Member{}
	for _, m := range d.Members {
		byID[m.ID] = m
	}
	for _, want := range share.Stores {
		m, ok := byID[want.ID]
		if !ok {
			t.Fatalf("member %s missing", want.ID)
		}
		if m.Encrypted != want.Encrypted || m.Size <= 0 {
			t.Errorf("member %s: %+v, want encrypted=%v", want.ID, m, want.Encrypted)
		}
		if (want.Kind == fixtures.SMPKindMIG) != (m.Kind == store.KindMIG) {
			t.Errorf("member %s kind %s", want.ID, m.Kind)
		}
	}
	if _, err := store.Open(share.Root); !errors.Is(err, store.ErrNoStore) || !strings.Contains(err.Error(), "usmtkit info") {
		t.Fatalf("opening a share must say how to list it: %v", err)
	}

	for _, enc := range []bool{false, true} {
		sp := fixtures.MIGStore(t, t.TempDir(), enc)
		for _, p := range []string{sp, filepath.Join(sp, "USMT"), filepath.Join(sp, "USMT", "USMT.MIG")} {
			d, err := store.Detect(p)
			if err != nil {
				t.Fatal(err)
			}
			if d.Kind != store.KindMIG || d.MIG.Encrypted != enc || d.MIG.Records == 0 {
				t.Fatalf("%s: %+v %+v", p, d, d.MIG)
			}
			if !enc && (len(d.MIG.FirstNames) == 0 || !strings.HasPrefix(d.MIG.FirstNames[0], `File\`)) {
				t.Fatalf("first names %q", d.MIG.FirstNames)
			}
			_, err = store.Open(p)
			if enc && !errors.Is(err, store.ErrEncrypted) || !enc && !errors.Is(err, store.ErrUnsupported) {
				t.Fatalf("open %s: %v", p, err)
			}
			if !strings.Contains(err.Error(), "usmtutils /extract") {
				t.Fatalf("the error must say what to do: %v", err)
			}
		}
	}
}

func TestMIGTruncated(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "USMT.MIG")
	if err := os.WriteFile(p, fixtures.TruncatedMIG(false, []string{`File\C:\a.txt`, `File\C:\b.txt`}), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := store.WalkMIG(p)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Truncated {
		t.Fatalf("truncation not seen: %+v", info)
	}
}

func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	notStore := filepath.Join(dir, "notes.txt")
	os.WriteFile(notStore, []byte("hello"), 0o644)
	sp := fixtures.USMT4(t, filepath.Join(dir, "pc"))
	for _, tc := range []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing"), "does not exist"},
		{notStore, "not a USMT.MIG or a usmtkit archive"},
		{filepath.Dir(sp), "holds one: run the command on that folder"},
		{"", "empty path"},
	} {
		_, err := store.Open(tc.path)
		if !errors.Is(err, store.ErrNoStore) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want ErrNoStore mentioning %q", tc.path, err, tc.want)
		}
	}
	// --plain reads the folder above the store as a tree.
	d, err := store.DetectPlain(filepath.Dir(sp))
	if err != nil || d.Kind != store.KindPlain {
		t.Fatalf("plain: %+v %v", d, err)
	}
}

func TestHostileEntries(t *testing.T) {
	h := fixtures.Hostile(t, t.TempDir())
	s, err := store.Open(h.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	entries, errs := walkAll(t, s)
	byPath := map[string]store.Entry{}
	files := 0
	for _, e := range entries {
		byPath[e.StorePath] = e
		if e.Type == store.TypeFile && strings.HasPrefix(e.StorePath, "USMT/File/") {
			files++
		}
	}
	for _, p := range []string{h.SymlinkSelf, h.SymlinkA, h.SymlinkB, h.SymlinkOutside} {
		if byPath[p].Type != store.TypeSymlink {
			t.Errorf("%s: type %v, want symlink (never followed)", p, byPath[p].Type)
		}
	}
	if byPath[h.SymlinkOutside].LinkTarget != "/etc" {
		t.Errorf("symlink target %q", byPath[h.SymlinkOutside].LinkTarget)
	}
	for _, p := range []string{h.FIFO, h.Socket} {
		if byPath[p].Type != store.TypeOther {
			t.Errorf("%s: type %v, want other", p, byPath[p].Type)
		}
	}
	bad, ok := byPath[h.BadName]
	if !ok || bad.Type != store.TypeFile {
		t.Errorf("non-UTF-8 name %q not kept byte for byte", h.BadName)
	}
	if e, ok := byPath[h.LongPath]; !ok || e.Type != store.TypeFile || len(h.LongPath) <= 4096 {
		t.Errorf("long path (%d bytes) not walked: %v", len(h.LongPath), errs[h.LongPath])
	} else {
		f, err := s.Open(&e)
		if err != nil {
			t.Fatalf("opening a path over PATH_MAX: %v", err)
		}
		f.Close()
	}
	if _, ok := byPath[h.Deep]; !ok {
		t.Errorf("deep file (%d levels) not walked", h.DeepLevels)
	}
	// As root the mode-000 entries are readable; as another user they are
	// reported (cmd/usmtkit tests run that case as an unprivileged user).
	if os.Geteuid() == 0 {
		if files != h.RegularFiles || len(errs) != 0 {
			t.Errorf("as root: %d files (want %d), errors %v", files, h.RegularFiles, errs)
		}
	}
	// A FIFO is never opened (it would block).
	fifo := byPath[h.FIFO]
	if _, err := s.Open(&fifo); err == nil {
		t.Error("opening a FIFO must fail")
	}
}

func TestVanishingAndReplacedFiles(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	s, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	const victim = "USMT/File/C$/Users/jdoe/Desktop/notes.txt"
	e, err := s.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(sp, victim)
	// Replaced by a directory between the walk and the read.
	os.Remove(full)
	os.Mkdir(full, 0o755)
	if _, err := s.Open(e); !errors.Is(err, store.ErrChanged) {
		t.Fatalf("replaced by a directory: %v", err)
	}
	// Gone.
	os.Remove(full)
	if _, err := s.Open(e); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("vanished: %v", err)
	}
	// Replaced by another file (new inode).
	os.WriteFile(full, []byte("other"), 0o644)
	if _, err := s.Open(e); !errors.Is(err, store.ErrChanged) {
		t.Fatalf("replaced: %v", err)
	}
}

func TestNoAtimeAndNoWrites(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	p := filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/report.docx")
	// Make atime older than mtime so relatime would update it on a read.
	old := fixtures.USMT4ReportMtime.Add(-1e12)
	if err := os.Chtimes(p, old, fixtures.USMT4ReportMtime); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	s, _ := store.Open(sp)
	e, _ := s.Stat("USMT/File/C$/Users/jdoe/Documents/report.docx")
	f, err := s.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, io.NewSectionReader(f, 0, f.Size()))
	f.Close()
	e2, _ := s.Stat(e.StorePath)
	if e2.AtimeNs != e.AtimeNs || e2.AtimeNs != old.UnixNano() {
		t.Fatalf("atime changed by a read: %d -> %d (O_NOATIME not used?)", e.AtimeNs, e2.AtimeNs)
	}
	after, _ := os.Stat(p)
	if !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Fatal("store file changed")
	}
}

func TestComparePaths(t *testing.T) {
	in := []string{"a-b", "a/x", "a", "", "a/x/y", "b", "a/x-z", "a!"}
	sort.Slice(in, func(i, j int) bool { return store.ComparePaths(in[i], in[j]) < 0 })
	want := []string{"", "a", "a/x", "a/x/y", "a/x-z", "a!", "a-b", "b"}
	if strings.Join(in, "|") != strings.Join(want, "|") {
		t.Fatalf("order %q, want %q", in, want)
	}
}

func TestWalkMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 20k files")
	}
	dir := t.TempDir()
	sp, err := fixtures.ManyFiles(dir, 20000)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	n := 0
	s.Walk(context.Background(), func(e *store.Entry, err error) error {
		n++
		if n%2000 == 0 {
			runtime.GC() // measure what the walk keeps, not garbage
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
		return nil
	})
	if n < 20000 {
		t.Fatalf("walked %d entries", n)
	}
	// The whole tree as entries would be ~20000 * 300 B = 6 MB; a bounded
	// walk holds one directory listing (1000 names here) per level.
	if peak > base+2<<20 {
		t.Fatalf("heap in use grew from %d to %d bytes while walking", base, peak)
	}
}
