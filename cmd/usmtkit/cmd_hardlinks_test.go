package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

const jdoeStore = "USMT/File/C$/Users/jdoe/"

// brokenLinks takes a fixtures hard-link store and does what users do
// after a capture: an editor saves plan.txt via a temporary file (STALE),
// the video is deleted (ONLY-IN-STORE), todo.txt is moved (MOVED).
func brokenLinks(t *testing.T, h fixtures.HardLink) {
	t.Helper()
	plan := filepath.Join(h.Live, "Documents/Projects/2024/plan.txt")
	if err := os.WriteFile(plan+".tmp", []byte("new plan"), 0o644); err != nil {
		t.Fatal(err)
	}
	newer := fixtures.DefaultMtime.Add(time.Hour)
	if err := os.Chtimes(plan+".tmp", newer, newer); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(plan+".tmp", plan); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(h.Live, "Videos/clip.mp4")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.Live, "Archive"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(h.Live, "Desktop/todo.txt"), filepath.Join(h.Live, "Archive/todo.txt")); err != nil {
		t.Fatal(err)
	}
}

func TestHardlinksJSON(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 64)
	h := fixtures.HardLinkStore(t, v.Mount)
	brokenLinks(t, h)
	code, out, errOut := runCLI(t, "hardlinks", h.StorePath, "--live", "C="+v.Mount, "--json", "--compare", "content")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	classes := map[string]string{}
	var summary map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not NDJSON: %q: %v", sc.Text(), err)
		}
		switch rec["type"] {
		case "file":
			classes[rec["store_path"].(string)] = rec["class"].(string)
			if rec["class"] == "moved" && rec["other_path"] != filepath.Join(h.Live, "Archive/todo.txt") {
				t.Errorf("moved to %v", rec["other_path"])
			}
			if rec["class"] == "copy" && rec["compare"] != "same" {
				t.Errorf("outlook.pst copy: %v", rec)
			}
		case "summary":
			summary = rec
		}
	}
	want := map[string]string{
		jdoeStore + "AppData/Roaming/Microsoft/Outlook/outlook.pst": "copy",
		jdoeStore + "Desktop/todo.txt":                              "moved",
		jdoeStore + "Documents/Projects/2024/plan.txt":              "stale",
		jdoeStore + "Documents/resume.docx":                         "linked",
		jdoeStore + "Videos/clip.mp4":                               "only-in-store",
		"USMT/catalog.mig":                                          "control",
		"USMT/migstate.dat":                                         "control",
	}
	for p, c := range want {
		if classes[p] != c {
			t.Errorf("%s: %q, want %q", p, classes[p], c)
		}
	}
	if summary == nil {
		t.Fatal("no summary line")
	}
	if got, want := summary["bytes_freed"].(float64), float64(65536+5000+3<<20+2048+512); got != want {
		t.Errorf("bytes_freed %v, want %v", got, want)
	}
	if got := summary["bytes_lost"].(float64); got != float64(5000+3<<20) {
		t.Errorf("bytes_lost %v", got)
	}

	// Text output lists what is not plainly linked, and the totals.
	code, out, _ = runCLI(t, "hardlinks", h.StorePath, "--live", v.Mount)
	if code != 0 || !strings.Contains(out, "STALE") || !strings.Contains(out, "now at "+filepath.Join(h.Live, "Archive/todo.txt")) ||
		strings.Contains(out, "resume.docx") || !strings.Contains(out, "deleting the store frees") {
		t.Errorf("text output (exit %d):\n%s", code, out)
	}
	// A bad --live is a usage error.
	if code, _, _ := runCLI(t, "hardlinks", h.StorePath, "--live", "C="+v.Mount+"/nope"); code != exitcodes.Usage {
		t.Errorf("bad --live: exit %d", code)
	}
}

// snap is the stat data and ntfs-3g attributes of one inode, as a string
// per field so a diff names what changed.
type snap map[string]map[string]string

var snapFields = []string{"mode", "size", "mtime", "ctime", "nlink", "ino", "attrib", "crtime", "ntfs_mtime", "ntfs_ctime", "atime", "ntfs_atime"}

func snapshot(t *testing.T, paths []string) snap {
	t.Helper()
	s := snap{}
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			s[p] = map[string]string{"error": err.Error()}
			continue
		}
		m := map[string]string{
			"mode": fmt.Sprintf("%o", st.Mode), "size": fmt.Sprint(st.Size),
			"mtime": fmt.Sprint(st.Mtim.Nano()), "atime": fmt.Sprint(st.Atim.Nano()), "ctime": fmt.Sprint(st.Ctim.Nano()),
			"nlink": fmt.Sprint(st.Nlink), "ino": fmt.Sprint(st.Ino),
		}
		var a [4]byte
		if n, err := unix.Lgetxattr(p, "system.ntfs_attrib_be", a[:]); err == nil && n == 4 {
			m["attrib"] = fmt.Sprintf("%#x", binary.BigEndian.Uint32(a[:]))
		} else {
			t.Fatalf("%s: system.ntfs_attrib_be: %v", p, err)
		}
		var tm [32]byte
		if n, err := unix.Lgetxattr(p, "system.ntfs_times_be", tm[:]); err == nil && n == 32 {
			// creation, last write, last access, MFT change
			m["crtime"] = fmt.Sprint(binary.BigEndian.Uint64(tm[0:8]))
			m["ntfs_mtime"] = fmt.Sprint(binary.BigEndian.Uint64(tm[8:16]))
			m["ntfs_atime"] = fmt.Sprint(binary.BigEndian.Uint64(tm[16:24]))
			m["ntfs_ctime"] = fmt.Sprint(binary.BigEndian.Uint64(tm[24:32]))
		} else {
			t.Fatalf("%s: system.ntfs_times_be: %v", p, err)
		}
		s[p] = m
	}
	return s
}

// diff lists "path field old -> new" for every change, split into access
// time changes and everything else.
func diffSnap(a, b snap) (atimes, others []string) {
	for p, am := range a {
		bm := b[p]
		for _, f := range append(snapFields, "error") {
			if am[f] == bm[f] {
				continue
			}
			line := fmt.Sprintf("%s %s %s -> %s", p, f, am[f], bm[f])
			if f == "atime" || f == "ntfs_atime" {
				atimes = append(atimes, line)
			} else {
				others = append(others, line)
			}
		}
	}
	sort.Strings(atimes)
	sort.Strings(others)
	return atimes, others
}

func remount(t *testing.T, v *fixtures.NTFSVolume, opts string) {
	t.Helper()
	var last []byte
	for i := 0; i < 30; i++ {
		out, err := exec.Command("umount", v.Mount).CombinedOutput()
		if err == nil {
			last = nil
			break
		}
		last = out
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("umount %s: %s", v.Mount, last)
	}
	ntfs3g, err := fixtures.LookTool("ntfs-3g")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{v.Image, v.Mount}
	if opts != "" {
		args = append([]string{"-o", opts}, args...)
	}
	if out, err := exec.Command(ntfs3g, args...).CombinedOutput(); err != nil {
		t.Fatalf("ntfs-3g %v: %v %s", args, err, out)
	}
}

// TestReadOnlyOnNTFS runs every reading command on a hard-link store whose
// store and live tree share inodes on a real ntfs-3g volume, and compares
// the stat data and NTFS attributes and times of every inode before and
// after each command. Every access time starts older than its change time,
// as on a Windows volume (last-access updates are off by default there),
// which is the case where a relatime mount would write one.
//
// Finding (ntfs-3g 2022.10.3): ntfs-3g ignores O_NOATIME. On a default
// (read-write, relatime) mount, listing a folder or reading a file updates
// its NTFS last-access time. So on such a mount only access times may
// change, and `hardlinks` must read no file content (it compares copies by
// size and mtime there); with -o noatime nothing at all may change.
func TestReadOnlyOnNTFS(t *testing.T) {
	v := fixtures.NewNTFSVolume(t, 64)
	h := fixtures.HardLinkStore(t, v.Mount)
	brokenLinks(t, h)
	var paths []string
	if err := filepath.WalkDir(v.Mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	manifestDir := t.TempDir()
	commands := [][]string{
		{"info", h.StorePath},
		{"ls", "-R", h.StorePath},
		{"hardlinks", h.StorePath},
		{"hardlinks", h.StorePath, "--live", "C=" + v.Mount, "--json"},
	}
	app := newApp(&globalOptions{})
	if app.Command("index") != nil {
		commands = append(commands, []string{"index", h.StorePath, "-o", filepath.Join(manifestDir, "m")})
		if app.Command("verify") != nil {
			commands = append(commands, []string{"verify", h.StorePath, "--manifest", filepath.Join(manifestDir, "m")})
		}
	}
	if app.Command("mount") != nil {
		// Served in this process; every file is read through the mount.
		commands = append(commands, []string{"mount", h.StorePath})
	}

	for _, mode := range []string{"default", "noatime"} {
		t.Run(mode, func(t *testing.T) {
			opts := ""
			if mode == "noatime" {
				opts = "noatime"
			}
			// Before each command every access time is made older than its
			// change time again, so each command is judged on its own.
			old := unix.NsecToTimespec(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
			for i, c := range commands {
				for _, p := range paths {
					ts := []unix.Timespec{old, {Nsec: unix.UTIME_OMIT}}
					if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
						t.Fatal(err)
					}
				}
				if c[0] == "index" {
					c = append(c[:len(c):len(c)], "--force")
					_ = i
				}
				remount(t, v, opts)
				before := snapshot(t, paths)
				var code int
				var errOut string
				if c[0] == "mount" {
					code, errOut = mountAndReadAll(t, c[1])
				} else {
					code, _, errOut = runCLI(t, c...)
				}
				if code != 0 {
					t.Fatalf("%v: exit %d: %s", c, code, errOut)
				}
				remount(t, v, opts) // flush ntfs-3g and the kernel's attribute cache
				after := snapshot(t, paths)
				atimes, others := diffSnap(before, after)
				for _, o := range others {
					t.Errorf("%v changed the volume: %s", c, o)
				}
				if mode == "noatime" {
					for _, a := range atimes {
						t.Errorf("%v changed an access time on a noatime mount: %s", c, a)
					}
					continue
				}
				dirs, files := map[string]bool{}, map[string]bool{}
				for _, a := range atimes {
					p := strings.Fields(a)[0]
					if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
						dirs[p] = true
					} else {
						files[p] = true
						if c[0] == "hardlinks" {
							t.Errorf("%v read a file's content on a read-write ntfs-3g mount: %s", c, a)
						}
					}
				}
				if len(atimes) > 0 {
					t.Logf("finding: %s on a default ntfs-3g mount updated the access time of %d folders and %d files", strings.Join(c[:1], " "), len(dirs), len(files))
				}
			}
		})
	}
	remount(t, v, "")
}

// mountAndReadAll mounts a store, reads every file through the mount and
// stops the server, as a technician browsing with a file manager would.
func mountAndReadAll(t *testing.T, storePath string) (int, string) {
	t.Helper()
	mnt := emptyDir(t)
	srv := startMount(t, &mountOptions{}, storePath, mnt)
	files := 0
	err := filepath.WalkDir(srv.mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if _, err := os.ReadFile(p); err != nil {
				return err
			}
			files++
		}
		return nil
	})
	if err == nil && files == 0 {
		err = fmt.Errorf("no file was readable through the mount")
	}
	if serr := srv.stop(t); err == nil {
		err = serr
	}
	if err != nil {
		return exitcodes.Failure, err.Error() + "\n" + srv.out.String()
	}
	return 0, ""
}
