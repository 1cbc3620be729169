package extract

import (
	"context"
	"encoding/binary"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/store"
)

// storeFiles lists the user files of a store: Windows path -> content.
func storeFiles(t *testing.T, s store.Store) map[string]string { return storetest.UserFiles(t, s) }

// destFiles lists the files extracted in the windows layout, with every
// component unescaped: Windows path -> content.
func destFiles(t *testing.T, dest string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for rel, v := range treeOf(t, dest) {
		if !strings.HasPrefix(v, "f ") {
			continue
		}
		parts := strings.Split(rel, "/")
		for i := range parts {
			parts[i] = UnescapeName(parts[i])
		}
		out[parts[0]+`:\`+strings.Join(parts[1:], `\`)] = v[2:]
	}
	return out
}

func TestExtractToNTFS(t *testing.T) {
	vol := fixtures.NewNTFSVolume(t, 64)
	sp := fixtures.USMT4(t, filepath.Join(vol.Mount, "src"))
	report := filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/report.docx")
	docs := filepath.Dir(report)
	crtime := time.Date(2019, 5, 6, 7, 8, 9, 123456700, time.UTC)
	var ft [8]byte
	binary.BigEndian.PutUint64(ft[:], store.UnixNsToFiletime(crtime.UnixNano()))
	if err := unix.Setxattr(report, "system.ntfs_crtime_be", ft[:], 0); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.SetNTFSAttrib(report, 0x21); err != nil { // READONLY | ARCHIVE
		t.Fatal(err)
	}
	if err := fixtures.SetNTFSAttrib(docs, 0x12); err != nil { // HIDDEN | DIRECTORY
		t.Fatal(err)
	}
	s, err := store.Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dest := filepath.Join(vol.Mount, "restore")
	res, err := Run(context.Background(), s, Options{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "ntfs-3g" || res.Names != "windows" || res.MetaFailures != 0 {
		t.Errorf("target %q names %q meta failures %d (%s)", res.Target, res.Names, res.MetaFailures, res.MetaError)
	}
	out := filepath.Join(dest, "C/Users/jdoe/Documents/report.docx")
	if a, err := fixtures.ReadNTFSAttrib(out); err != nil || a != 0x21 {
		t.Errorf("report.docx attributes %#x (%v), want 0x21", a, err)
	}
	if a, err := fixtures.ReadNTFSAttrib(filepath.Dir(out)); err != nil || a&0x2 == 0 {
		t.Errorf("Documents attributes %#x (%v), want HIDDEN", a, err)
	}
	if c, err := fixtures.ReadNTFSCrtime(out); err != nil || !c.Equal(crtime) {
		t.Errorf("report.docx creation time %v (%v), want %v", c, err, crtime)
	}
	if m := mtimeOf(t, out); m != fixtures.USMT4ReportMtime.UnixNano()/100*100 {
		t.Errorf("report.docx mtime %v, want %v", time.Unix(0, m).UTC(), fixtures.USMT4ReportMtime)
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(dest, "C/Users/jdoe/Music/song.mp3"), &a)
	unix.Stat(filepath.Join(dest, "C/Users/jdoe/Music/Favourites/song.mp3"), &b)
	if a.Ino != b.Ino {
		t.Errorf("hard link not kept on NTFS")
	}
	if got, want := destFiles(t, dest), storeFiles(t, s); len(got) != len(want) {
		t.Errorf("%d files extracted, want %d", len(got), len(want))
	}
}

// imageVolume makes a sizeMiB image file formatted with the tool mkfs,
// mounts it on a new folder with the FUSE driver mount (mount(2) through
// the driver, unmounted with fusermount3 in cleanup) and returns the
// mount point. With loop set and as root, the image is attached to a loop
// device first, for drivers that insist on a block device.
func imageVolume(t *testing.T, sizeMiB int64, mkfs, mount string, loop bool, mountArgs ...string) string {
	t.Helper()
	fixtures.RequireTool(t, mkfs, mount, "fusermount3")
	fixtures.RequireFUSE(t)
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "volume.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	mkfsPath, _ := fixtures.LookTool(mkfs)
	if out, err := exec.Command(mkfsPath, img).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mkfs, err, out)
	}
	dev := img
	if loop && os.Geteuid() == 0 {
		fixtures.RequireTool(t, "losetup")
		losetup, _ := fixtures.LookTool("losetup")
		out, err := exec.Command(losetup, "--find", "--show", img).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup: %v\n%s", err, out)
		}
		dev = strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
			}
		})
	}
	mountPath, _ := fixtures.LookTool(mount)
	if out, err := exec.Command(mountPath, append(append([]string{}, mountArgs...), dev, mnt)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mount, err, out)
	}
	t.Cleanup(func() {
		// Another test process probing every mount for a store's other
		// volumes (store.OpenVolumes) can hold this one busy for a moment:
		// retry, then detach it lazily (as fixtures.NTFSVolume does).
		var out []byte
		var err error
		for i := 0; i < 20; i++ {
			if out, err = exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if lout, lerr := exec.Command("fusermount3", "-u", "-z", mnt).CombinedOutput(); lerr != nil {
			t.Errorf("fusermount3 -u %s: %v\n%s\nlazy: %v %s", mnt, err, out, lerr, lout)
		}
	})
	return mnt
}

// fatVolume is a 32 MiB FAT volume mounted with fusefat.
func fatVolume(t *testing.T) string {
	return imageVolume(t, 32, "mkfs.vfat", "fusefat", false, "-o", "rw+")
}

// exfatVolume is a 64 MiB exFAT volume mounted with exfat-fuse, which as
// root mounts with the blkdev option and so needs a loop device.
func exfatVolume(t *testing.T) string {
	return imageVolume(t, 64, "mkfs.exfat", "mount.exfat-fuse", true)
}

// Extraction to FAT-family volumes a technician brings on a USB disk: a
// FAT image through fusefat and an exFAT image through exfat-fuse (as on
// most USB disks). Windows names are escaped and collisions kept, non-ASCII
// names are written as they are, every file comes back byte for byte
// (after unescaping), no temporary file is left, and --skip-existing
// recognises every file at the volume's time precision (FAT 2 s;
// exfat-fuse whole seconds).
func TestExtractToFATFamily(t *testing.T) {
	for _, tc := range []struct {
		name    string
		volume  func(*testing.T) string
		target  string // in Result.Target
		escaped int64  // at least
		extra   map[string]string
	}{
		{"vfat", fatVolume, "fat", 5, nil},
		{"exfat", exfatVolume, "fuse", 4, map[string]string{"résumé.docx": "accents",
			"big.bin": string(fixtures.PseudoRandom("extract/exfat-big.bin", 20<<20))}}, // a big file: its own batch
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := tc.volume(t)
			sp := fixtures.USMT4(t, t.TempDir())
			docs := filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents")
			names := map[string]string{"a:b?.txt": "colon", "CON.txt": "device", "Case.txt": "upper",
				"case.txt": "lower", "trail.": "dot", "100%41": "percent"}
			maps.Copy(names, tc.extra)
			for name, data := range names {
				if err := os.WriteFile(filepath.Join(docs, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := store.Open(sp)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			dest := filepath.Join(mnt, "restore")
			res, err := Run(context.Background(), s, Options{Dest: dest, Continue: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Names != "windows" || !strings.Contains(res.Target, tc.target) || res.Problems() != 0 {
				t.Fatalf("names %q target %q problems %+v %+v", res.Names, res.Target, res.Failed, res.Refused)
			}
			if res.CollisionCount != 1 || res.EscapedCount < tc.escaped {
				t.Errorf("collisions %d escaped %d: %+v", res.CollisionCount, res.EscapedCount, res.Escaped)
			}
			got, want := destFiles(t, dest), storeFiles(t, s)
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: missing or different after unescaping (have %d files)", k, len(got))
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d files, want %d", len(got), len(want))
			}
			written := []string{"a%3Ab%3F.txt", "%43ON.txt"}
			if tc.extra != nil {
				written = append(written, "résumé.docx")
			}
			for _, name := range written {
				if _, err := os.Stat(filepath.Join(dest, "C/Users/jdoe/Documents", name)); err != nil {
					t.Error(err)
				}
			}
			if tmps := tmpsIn(t, dest); len(tmps) != 0 {
				t.Errorf("temporary files left: %v", tmps)
			}
			res, err = Run(context.Background(), s, Options{Dest: dest, SkipExisting: true})
			if err != nil || res.Files != 0 || res.SkippedExisting != int64(len(want)) {
				t.Fatalf("rerun with --skip-existing: %v %+v", err, res)
			}
		})
	}
}
