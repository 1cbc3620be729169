package hardlinkscan

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

const jdoe = "USMT/File/C$/Users/jdoe/"

// scenario is a hard-link store on a real NTFS volume in which every class
// has been made for real.
type scenario struct {
	vol   string // the volume mount (the live C: root)
	store string // the StorePath
	live  string // <vol>/Users/jdoe
	sizes map[string]int64
}

func write(t *testing.T, p string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func link(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(from, to); err != nil {
		t.Fatal(err)
	}
}

// buildScenario makes, on vol:
//   - the fixtures hard-link store (4 linked files, outlook.pst copied);
//   - plan.txt saved by temp-file-and-rename after capture (STALE);
//   - clip.mp4 deleted from the live profile (ONLY-IN-STORE);
//   - todo.txt moved to another live folder (MOVED);
//   - a.txt/b.txt: one live inode with two names, both in the store;
//   - song.mp3/song2.mp3: the same, then both live names deleted;
//   - notes.txt: a copy of the same size and mtime, other content;
//   - a store-only file given a DOS 8.3 name, so ntfs-3g says nlink 2.
func buildScenario(t *testing.T, vol string) scenario {
	h := fixtures.HardLinkStore(t, vol)
	sc := scenario{vol: vol, store: h.StorePath, live: h.Live, sizes: map[string]int64{}}
	L := func(rel string) string { return filepath.Join(h.Live, rel) }
	S := func(rel string) string { return filepath.Join(h.StorePath, jdoe+rel) }
	old := fixtures.DefaultMtime

	write(t, L("Documents/a.txt"), bytes.Repeat([]byte("a"), 1000), old)
	link(t, L("Documents/a.txt"), L("Documents/b.txt"))
	link(t, L("Documents/a.txt"), S("Documents/a.txt"))
	link(t, L("Documents/b.txt"), S("Documents/b.txt"))

	write(t, L("Music/song.mp3"), bytes.Repeat([]byte("s"), 2000), old)
	link(t, L("Music/song.mp3"), L("Music/song2.mp3"))
	link(t, L("Music/song.mp3"), S("Music/song.mp3"))
	link(t, L("Music/song2.mp3"), S("Music/song2.mp3"))
	rm(t, L("Music/song.mp3"))
	rm(t, L("Music/song2.mp3"))

	write(t, L("Desktop/notes.txt"), bytes.Repeat([]byte("A"), 700), old)
	write(t, S("Desktop/notes.txt"), bytes.Repeat([]byte("B"), 700), old)

	q := "Documents/Quarterly Report Final.docx"
	write(t, L(q), bytes.Repeat([]byte("q"), 1234), old)
	link(t, L(q), S(q))
	rm(t, L(q))
	if err := unix.Setxattr(S(q), "system.ntfs_dos_name", []byte("QUARTE~1.DOC"), 0); err != nil {
		t.Fatalf("setting a DOS name: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(S(q), &st); err != nil || st.Nlink != 2 {
		t.Fatalf("a DOS name should make ntfs-3g report nlink 2, got %d (%v)", st.Nlink, err)
	}

	// STALE: an editor saves plan.txt as a new file and renames it over.
	plan := L("Documents/Projects/2024/plan.txt")
	write(t, plan+".tmp", []byte("the new plan, saved after the capture"), old.Add(time.Hour))
	if err := os.Rename(plan+".tmp", plan); err != nil {
		t.Fatal(err)
	}
	// ONLY-IN-STORE: the user deleted the video.
	rm(t, L("Videos/clip.mp4"))
	// MOVED: the user moved todo.txt into an archive folder.
	if err := os.MkdirAll(L("Archive"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(L("Desktop/todo.txt"), L("Archive/todo.txt")); err != nil {
		t.Fatal(err)
	}
	return sc
}

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func scan(t *testing.T, opts Options, paths ...string) (map[string]*File, *Summary) {
	t.Helper()
	s, err := store.Open(paths...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]*File{}
	sum, err := Scan(context.Background(), s, opts, func(f *File) error {
		if got[f.StorePath] != nil {
			t.Errorf("%s emitted twice", f.StorePath)
		}
		got[f.StorePath] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, sum
}

func TestClassesOnNTFS(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 64)
	sc := buildScenario(t, v.Mount)
	files, sum := scan(t, Options{Live: []LiveRoot{{Drive: "C", Path: v.Mount}}, Compare: CompareContent}, sc.store)

	want := map[string]struct {
		class   Class
		compare string
		freed   bool
		lost    bool
	}{
		jdoe + "AppData/Roaming/Microsoft/Outlook/outlook.pst": {Copy, "same", true, false},
		jdoe + "Desktop/todo.txt":                              {Moved, "", false, false},
		jdoe + "Desktop/notes.txt":                             {Copy, "different", true, true},
		jdoe + "Documents/Projects/2024/plan.txt":              {Stale, "", true, true},
		jdoe + "Documents/resume.docx":                         {Linked, "", false, false},
		jdoe + "Documents/a.txt":                               {Linked, "", false, false},
		jdoe + "Documents/b.txt":                               {Linked, "", false, false},
		jdoe + "Documents/Quarterly Report Final.docx":         {OnlyInStore, "", true, true},
		jdoe + "Music/song.mp3":                                {OnlyInStore, "", true, true},
		jdoe + "Music/song2.mp3":                               {OnlyInStore, "", true, true},
		jdoe + "Videos/clip.mp4":                               {OnlyInStore, "", true, true},
		"USMT/catalog.mig":                                     {Control, "", true, false},
		"USMT/migstate.dat":                                    {Control, "", true, false},
	}
	if len(files) != len(want) {
		t.Errorf("got %d files, want %d", len(files), len(want))
	}
	for p, w := range want {
		f := files[p]
		if f == nil {
			t.Errorf("%s: not reported", p)
			continue
		}
		if f.Class != w.class || f.Compare != w.compare || f.Freed != w.freed || f.Lost != w.lost {
			t.Errorf("%s: class %s compare %q freed %v lost %v; want %s %q %v %v (note %q, err %v)",
				p, f.Class, f.Compare, f.Freed, f.Lost, w.class, w.compare, w.freed, w.lost, f.Note, f.Err)
		}
	}
	if f := files[jdoe+"Desktop/todo.txt"]; f != nil && f.OtherPath != filepath.Join(sc.live, "Archive/todo.txt") {
		t.Errorf("moved todo.txt: other path %q", f.OtherPath)
	}
	if f := files[jdoe+"Documents/Quarterly Report Final.docx"]; f != nil && (f.Nlink != 2 || !strings.Contains(f.Note, "DOS 8.3")) {
		t.Errorf("DOS-named store-only file: nlink %d note %q", f.Nlink, f.Note)
	}
	// Store links are counted in walk order: the group's last path has them all.
	if f := files[jdoe+"Documents/b.txt"]; f != nil && f.StoreLinks != 2 {
		t.Errorf("b.txt store links %d, want 2", f.StoreLinks)
	}
	if f := files[jdoe+"Music/song2.mp3"]; f != nil && f.StoreLinks != 2 {
		t.Errorf("song2.mp3 store links %d, want 2", f.StoreLinks)
	}
	const clip, pst = 3 << 20, 65536
	apparent := int64(pst + 800 + 5000 + 30000 + clip + 2*1000 + 2*2000 + 700 + 1234 + 2048 + 512)
	unique := apparent - 1000 - 2000
	freed := int64(pst + 5000 + clip + 2000 + 700 + 1234 + 2048 + 512)
	lost := int64(5000 + clip + 2000 + 700 + 1234)
	if sum.BytesApparent != apparent || sum.BytesUnique != unique || sum.BytesFreed != freed || sum.BytesLost != lost {
		t.Errorf("bytes apparent %d unique %d freed %d lost %d; want %d %d %d %d",
			sum.BytesApparent, sum.BytesUnique, sum.BytesFreed, sum.BytesLost, apparent, unique, freed, lost)
	}
	if sum.InStoreLinkGroups != 2 {
		t.Errorf("in-store link groups %d, want 2", sum.InStoreLinkGroups)
	}
	var jd *UserBytes
	for i := range sum.Users {
		if sum.Users[i].User == "jdoe" {
			jd = &sum.Users[i]
		}
	}
	if jd == nil || jd.BytesFreed != freed-2048-512 || jd.BytesApparent != apparent-2048-512 {
		t.Errorf("user jdoe: %+v", jd)
	}
	if sum.Scan == nil || sum.Scan.Found != 1 || len(sum.Scan.Roots) != 1 {
		t.Errorf("live scan: %+v", sum.Scan)
	}
	if sum.ProblemCount != 0 {
		t.Errorf("problems: %+v", sum.Problems)
	}

	// Without a live root, only link counts: the DOS name makes the
	// store-only file look linked, which is why the class says "probably".
	files, sum = scan(t, Options{}, sc.store)
	for p, w := range map[string]Class{
		jdoe + "Documents/resume.docx":                 ProbablyLinked,
		jdoe + "Documents/a.txt":                       ProbablyLinked,
		jdoe + "Music/song.mp3":                        ProbablyOnlyInStore,
		jdoe + "Videos/clip.mp4":                       ProbablyOnlyInStore,
		jdoe + "Documents/Quarterly Report Final.docx": ProbablyLinked,
		jdoe + "Desktop/todo.txt":                      ProbablyLinked, // moved: still linked
		"USMT/catalog.mig":                             Control,
	} {
		if f := files[p]; f == nil || f.Class != w {
			t.Errorf("no live: %s: %+v, want %s", p, f, w)
		}
	}
	if sum.Live || sum.Scan != nil || sum.NoOutside != int64(len(files)-2) {
		t.Errorf("no live summary: live %v scan %+v no-outside %d", sum.Live, sum.Scan, sum.NoOutside)
	}
}

// A link count above the paths found must never make a file LINKED: the
// live path holds a copy while the store inode has a second, unrelated
// link elsewhere on the volume (found by the scan: not freed, but a COPY).
func TestLinkCountNeverDecidesLinked(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 32)
	live := filepath.Join(v.Mount, "Users/jdoe/Documents/x.txt")
	st := filepath.Join(v.Mount, "USMTMIG", jdoe, "Documents/x.txt")
	write(t, live, []byte("same bytes"), fixtures.DefaultMtime)
	write(t, st, []byte("same bytes"), fixtures.DefaultMtime)
	link(t, st, filepath.Join(v.Mount, "Elsewhere/x-backup.txt"))
	write(t, filepath.Join(v.Mount, "USMTMIG/USMT/catalog.mig"), []byte("c"), fixtures.DefaultMtime)
	files, _ := scan(t, Options{Live: []LiveRoot{{Path: v.Mount, Drive: "C"}}}, filepath.Join(v.Mount, "USMTMIG"))
	f := files[jdoe+"Documents/x.txt"]
	if f == nil || f.Class != Copy || f.Compare != "same" || f.Freed || f.OtherPath != filepath.Join(v.Mount, "Elsewhere/x-backup.txt") {
		t.Fatalf("got %+v", f)
	}
}

// Two NTFS volumes, C and D, with the same store folder on each: one store.
func TestTwoVolumes(t *testing.T) {
	c := fixtures.NewNTFSVolume(t, 32)
	d := fixtures.NewNTFSVolume(t, 32)
	old := fixtures.DefaultMtime
	write(t, filepath.Join(c.Mount, "Users/jdoe/a.txt"), []byte("on c"), old)
	link(t, filepath.Join(c.Mount, "Users/jdoe/a.txt"), filepath.Join(c.Mount, "USMTMIG", jdoe+"a.txt"))
	write(t, filepath.Join(c.Mount, "USMTMIG/USMT/catalog.mig"), []byte("catalog"), old)
	write(t, filepath.Join(d.Mount, "Data/y.bin"), []byte("on d, linked"), old)
	write(t, filepath.Join(d.Mount, "Data/z.bin"), []byte("on d, moved"), old)
	link(t, filepath.Join(d.Mount, "Data/y.bin"), filepath.Join(d.Mount, "USMTMIG/USMT/File/D$/Data/y.bin"))
	link(t, filepath.Join(d.Mount, "Data/z.bin"), filepath.Join(d.Mount, "USMTMIG/USMT/File/D$/Data/z.bin"))
	if err := os.MkdirAll(filepath.Join(d.Mount, "Other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(d.Mount, "Data/z.bin"), filepath.Join(d.Mount, "Other/z.bin")); err != nil {
		t.Fatal(err)
	}
	roots := []string{filepath.Join(c.Mount, "USMTMIG"), filepath.Join(d.Mount, "USMTMIG")}
	s, err := store.Open(roots...)
	if err != nil {
		t.Fatal(err)
	}
	drives := StoreDrives(s)
	s.Close()
	if strings.Join(drives, ",") != "C,D" {
		t.Fatalf("drives %v", drives)
	}
	live, err := ParseLive([]string{c.Mount, "d=" + d.Mount}, drives, false)
	if err != nil {
		t.Fatal(err)
	}
	files, sum := scan(t, Options{Live: live}, roots...)
	for p, w := range map[string]Class{
		jdoe + "a.txt":            Linked,
		"USMT/File/D$/Data/y.bin": Linked,
		"USMT/File/D$/Data/z.bin": Moved,
		"USMT/catalog.mig":        Control,
	} {
		if f := files[p]; f == nil || f.Class != w {
			t.Errorf("%s: %+v, want %s", p, f, w)
		}
	}
	if f := files["USMT/File/D$/Data/z.bin"]; f != nil && f.OtherPath != filepath.Join(d.Mount, "Other/z.bin") {
		t.Errorf("z.bin moved to %q", f.OtherPath)
	}
	if f := files["USMT/File/D$/Data/y.bin"]; f != nil && f.Volume != 1 {
		t.Errorf("y.bin volume %d", f.Volume)
	}
	if sum.BytesFreed != int64(len("catalog")) || sum.LostFiles != 0 {
		t.Errorf("freed %d lost %d", sum.BytesFreed, sum.LostFiles)
	}
}

func TestParseLive(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args   []string
		drives []string
		plain  bool
		want   string
		err    string
	}{
		{[]string{dir}, []string{"C", "D"}, false, "C=" + dir, ""},
		{[]string{dir}, []string{"D"}, false, "D=" + dir, ""},
		{[]string{"e:=" + dir}, nil, false, "E=" + dir, ""},
		{[]string{dir, "C=" + dir}, nil, false, "", "given twice"},
		{[]string{"C=" + dir}, nil, true, "", "plain folder"},
		{[]string{dir}, nil, true, "=" + dir, ""},
		{[]string{dir + "/nope"}, nil, false, "", "mount the volume"},
		{[]string{"C="}, nil, false, "", "names no folder"},
	}
	for _, c := range cases {
		got, err := ParseLive(c.args, c.drives, c.plain)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: err %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != 1 || got[0].Drive+"="+got[0].Path != c.want {
			t.Errorf("%v: %+v %v, want %s", c.args, got, err, c.want)
		}
	}
}

// A plain folder of hard links (no USMT layout) maps onto a live folder by
// relative path; it works on any Linux file system.
func TestPlainDirectory(t *testing.T) {
	dir := t.TempDir()
	liveRoot, plain := filepath.Join(dir, "live"), filepath.Join(dir, "backup")
	old := fixtures.DefaultMtime
	write(t, filepath.Join(liveRoot, "docs/a.txt"), []byte("a"), old)
	write(t, filepath.Join(liveRoot, "docs/gone.txt"), []byte("gone"), old)
	link(t, filepath.Join(liveRoot, "docs/a.txt"), filepath.Join(plain, "docs/a.txt"))
	link(t, filepath.Join(liveRoot, "docs/gone.txt"), filepath.Join(plain, "docs/gone.txt"))
	rm(t, filepath.Join(liveRoot, "docs/gone.txt"))
	live, err := ParseLive([]string{liveRoot}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.OpenDetected([]*store.Detection{mustDetectPlain(t, plain)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]Class{}
	if _, err := Scan(context.Background(), s, Options{Live: live}, func(f *File) error { got[f.StorePath] = f.Class; return nil }); err != nil {
		t.Fatal(err)
	}
	if got["docs/a.txt"] != Linked || got["docs/gone.txt"] != OnlyInStore {
		t.Errorf("plain: %v", got)
	}
}

func mustDetectPlain(t *testing.T, p string) *store.Detection {
	t.Helper()
	d, err := store.DetectPlain(p)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
