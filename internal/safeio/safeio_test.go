package safeio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/fixtures"
)

func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSourceOpensNeverFollowOrBlock(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, root+"/d/f.txt", "hello")
	if err := os.Symlink("d", root+"/linkdir"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d/f.txt", root+"/linkfile"); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(root+"/fifo", 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDirPath(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	if _, err := d.OpenDir("linkdir"); !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("OpenDir through a symlink: %v, want ELOOP/ENOTDIR", err)
	}
	if _, err := d.OpenFile("linkfile"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("OpenFile through a symlink: %v, want ELOOP", err)
	}
	if lf, err := OpenFilePath(root + "/linkfile"); err != nil {
		t.Errorf("OpenFilePath of a symlink the user named: %v", err)
	} else {
		lf.Close()
	}
	if ld, err := OpenDirPath(root + "/linkdir"); err != nil {
		t.Errorf("OpenDirPath of a symlink the user named: %v", err)
	} else {
		ld.Close()
	}
	done := make(chan error, 1)
	go func() {
		f, err := d.OpenFile("fifo")
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("opening a FIFO: %v (it must open without blocking; the caller checks the type)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a FIFO blocked")
	}
	for _, bad := range []string{"", ".", "..", "d/f.txt", "/etc"} {
		if _, err := d.OpenFile(bad); !errors.Is(err, ErrNotAName) {
			t.Errorf("OpenFile(%q): %v, want ErrNotAName", bad, err)
		}
		if _, err := d.OpenDir(bad); !errors.Is(err, ErrNotAName) {
			t.Errorf("OpenDir(%q): %v, want ErrNotAName", bad, err)
		}
	}

	sub, err := d.OpenDir("d")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	f, err := sub.OpenFile("f.txt")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_NOATIME == 0 && os.Geteuid() == 0 {
		t.Errorf("source file opened without O_NOATIME (flags %#x)", fl)
	}
	if fl&unix.O_NONBLOCK != 0 || fl&unix.O_ACCMODE != unix.O_RDONLY {
		t.Errorf("source file flags %#x: want read-only, blocking", fl)
	}
	b := make([]byte, 16)
	n, _ := f.Read(b)
	f.Close()
	if string(b[:n]) != "hello" {
		t.Errorf("read %q", b[:n])
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Errorf("write to a source file succeeded")
	}
	if st, err := LstatNoSymlinks(root + "/d/f.txt"); err != nil || st.Size != 5 {
		t.Errorf("LstatNoSymlinks: %v", err)
	}
	if _, err := LstatNoSymlinks(root + "/linkdir/f.txt"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("LstatNoSymlinks through a symlinked folder: %v, want ELOOP", err)
	}
	if st, err := LstatNoSymlinks(root + "/linkfile"); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("LstatNoSymlinks of a symlink: %v (want the link itself)", err)
	}
	if tgt, err := d.Readlink("linkfile"); err != nil || tgt != "d/f.txt" {
		t.Errorf("Readlink = %q, %v", tgt, err)
	}
	st, err := d.Stat("linkdir")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("Stat of a symlink: %v, mode %o (want the link itself)", err, st.Mode)
	}
	names, err := d.Names()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sortStrings(names), ",") != "d,fifo,linkdir,linkfile" {
		t.Errorf("Names = %v", names)
	}
	// A second listing starts from the beginning again.
	names2, _ := d.Names()
	if len(names2) != len(names) {
		t.Errorf("second listing: %v", names2)
	}
	list, err := ListDirPath(root)
	if err != nil || len(list) != 4 || list[0].Name != "d" || !list[0].IsDir() || list[1].Type != unix.DT_FIFO || list[2].Type != unix.DT_LNK {
		t.Errorf("ListDirPath = %+v, %v", list, err)
	}
	if empty, err := sub.Empty(); err != nil || empty {
		t.Errorf("Empty(d) = %v, %v", empty, err)
	}
	p, err := sub.Parent()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, _ := p.ID()
	b2, _ := d.ID()
	if a != b2 {
		t.Errorf("Parent of d is %v, want %v", a, b2)
	}
}

func sortStrings(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestDeeperThanPathMax walks down and back up a chain of folders whose
// full path is far longer than PATH_MAX: every call names one component.
func TestDeeperThanPathMax(t *testing.T) {
	root := t.TempDir()
	d, err := OpenDirPath(root)
	if err != nil {
		t.Fatal(err)
	}
	const levels = 2000 // "dd/" x 2000 = 6000 bytes
	chain := []*Dir{d}
	defer func() {
		for _, c := range chain {
			c.Close()
		}
	}()
	for i := 0; i < levels; i++ {
		cur := chain[len(chain)-1]
		if err := unix.Mkdirat(cur.Fd(), "dd", 0o755); err != nil {
			t.Fatal(err)
		}
		nd, err := cur.OpenDir("dd")
		if err != nil {
			t.Fatalf("level %d: %v", i, err)
		}
		chain = append(chain, nd)
	}
	last := chain[len(chain)-1]
	fd, err := unix.Openat(last.Fd(), "leaf", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(fd, []byte("deep"))
	unix.Close(fd)
	if len(last.Path()) < 6000 {
		t.Fatalf("path only %d bytes", len(last.Path()))
	}
	full := last.Path() + "/leaf"
	if _, err := os.Lstat(full); !errors.Is(err, unix.ENAMETOOLONG) {
		t.Fatalf("plain lstat of the long path: %v, want ENAMETOOLONG", err)
	}
	st, err := LstatPath(full)
	if err != nil || st.Size != 4 {
		t.Fatalf("LstatPath: %v", err)
	}
	f, err := OpenFilePath(full)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 8)
	n, _ := f.Read(b)
	f.Close()
	if string(b[:n]) != "deep" {
		t.Errorf("read %q", b[:n])
	}
	if dd, err := OpenDirPath(last.Path()); err != nil {
		t.Errorf("OpenDirPath(long): %v", err)
	} else {
		dd.Close()
	}
	// Back up by "..", checked against the folders held on the way down.
	cur := last
	for i := len(chain) - 2; i >= 0; i-- {
		p, err := cur.Parent()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := chain[i].ID()
		got, _ := p.ID()
		if cur != last {
			cur.Close()
		}
		if got != want {
			t.Fatalf("level %d: parent %v, want %v", i, got, want)
		}
		cur = p
	}
	cur.Close()
}

func TestGetxattrBelowDir(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, root+"/f", "x")
	if err := unix.Setxattr(root+"/f", "user.usmtkit.test", []byte("v1"), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
			fixtures.Unavailable(t, "no user xattrs on "+root)
		}
		t.Fatal(err)
	}
	os.Symlink("f", root+"/l")
	d, err := OpenDirPath(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	buf := make([]byte, 16)
	n, err := d.Getxattr("f", "user.usmtkit.test", buf)
	if err != nil || string(buf[:n]) != "v1" {
		t.Errorf("Getxattr = %q, %v", buf[:n], err)
	}
	if _, err := d.Getxattr("l", "user.usmtkit.test", buf); err == nil {
		t.Errorf("Getxattr followed a symlink")
	}
}

func TestParseMountLine(t *testing.T) {
	m, ok := ParseMountLine(`36 35 98:0 /sub\040dir /mnt/with\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue`)
	if !ok {
		t.Fatal("not parsed")
	}
	if m.Dev != unix.Mkdev(98, 0) || m.Root != "/sub dir" || m.MountPoint != "/mnt/with space" || m.FSType != "ext3" || m.Source != "/dev/root" {
		t.Errorf("%+v", m)
	}
	if !m.HasOption("noatime") || m.ReadOnly() {
		t.Errorf("options %v", m.Options)
	}
	for _, bad := range []string{"", "1 2 3", "36 35 98:0 / /mnt rw shared:1 ext3 /dev/root rw", "36 35 x:0 / /mnt rw - ext3 /dev/root rw a b"} {
		if _, ok := ParseMountLine(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
	ms, err := Mounts()
	if err != nil || len(ms) == 0 {
		t.Fatalf("Mounts: %v", err)
	}
	root, err := MountOf("/")
	if err != nil || root.MountPoint != "/" {
		t.Fatalf("MountOf(/) = %+v, %v", root, err)
	}
	if _, ok := MountAt("/"); !ok {
		t.Errorf("MountAt(/) found nothing")
	}
	var st unix.Stat_t
	unix.Stat("/", &st)
	if FSTypeOfDev(st.Dev) == "" {
		t.Errorf("no fstype for the root device")
	}
}

func FuzzParseMountLine(f *testing.F) {
	f.Add(`36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue`)
	f.Add(`1 2 0:5 / /a\134b\040 ro - fuse.usmtkit usmtkit:/x ro`)
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := ParseMountLine(line)
		if ok && m.FSType == "" {
			t.Errorf("parsed without a type: %q", line)
		}
	})
}

func TestCheckOutside(t *testing.T) {
	base := t.TempDir()
	store := base + "/store"
	mustWrite(t, store+"/USMT/File/C$/a.txt", "a")
	mustWrite(t, base+"/single.MIG", "mig")
	os.Mkdir(base+"/out", 0o755)
	os.Symlink(store+"/USMT", base+"/out/into")
	os.Symlink(store+"/USMT/new.txt", base+"/out/dangling")
	roots := []string{store, base + "/single.MIG"}

	for _, ok := range []string{base + "/out/m.txt", base + "/out/not/yet/there.txt", base + "/store2/x", base + "/single.MIG2"} {
		if err := CheckOutside(ok, roots); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, c := range []struct{ out, want string }{
		{store + "/m.txt", "is inside the store"},
		{store + "/USMT/File/new/folder/m.txt", "is inside the store"},
		{store, "is the store itself"},
		{store + "/../store/./m.txt", "is inside the store"},
		{base + "/out/into/m.txt", "is inside the store"},
		{base + "/out/dangling", "is a symlink to"},
		{base + "/single.MIG", "is the store itself"},
	} {
		err := CheckOutside(c.out, roots)
		if !errors.Is(err, ErrInsideStore) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInsideStore saying %q", c.out, err, c.want)
		}
	}

	if os.Geteuid() == 0 {
		// A bind mount of the root is the same folder under another name.
		bind := base + "/bind"
		os.Mkdir(bind, 0o755)
		if err := unix.Mount(store, bind, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind mount: %v", err)
		}
		defer unix.Unmount(bind, unix.MNT_DETACH)
		if err := CheckOutside(bind+"/USMT/m.txt", roots); !errors.Is(err, ErrInsideStore) {
			t.Errorf("output under a bind mount of the store: %v", err)
		}
		// A bind mount of a folder below the root: nothing on the way up
		// names the root, but the folder is still the store's.
		sub := base + "/bindsub"
		os.Mkdir(sub, 0o755)
		if err := unix.Mount(store+"/USMT/File", sub, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind mount: %v", err)
		}
		defer unix.Unmount(sub, unix.MNT_DETACH)
		for _, out := range []string{sub + "/m.txt", sub + "/C$/new/folder/m.txt", sub} {
			if err := CheckOutside(out, roots); !errors.Is(err, ErrInsideStore) || !strings.Contains(err.Error(), "inside the store "+store) {
				t.Errorf("%s, under a bind mount of a folder below the store: %v", out, err)
			}
		}
		// A bind mount of a folder beside the store is not the store.
		side := base + "/bindside"
		os.Mkdir(side, 0o755)
		if err := unix.Mount(base+"/out", side, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind mount: %v", err)
		}
		defer unix.Unmount(side, unix.MNT_DETACH)
		if err := CheckOutside(side+"/m.txt", roots); err != nil {
			t.Errorf("under a bind mount of a folder beside the store: %v", err)
		}
	}

	below, err := RootsBelow(base, roots)
	if err != nil {
		t.Fatal(err)
	}
	if len(below) != 2 || below[0].Rel != "store" || below[1].Rel != "single.MIG" {
		t.Errorf("RootsBelow(base) = %+v", below)
	}
	if below, _ := RootsBelow(base+"/out", roots); len(below) != 0 {
		t.Errorf("RootsBelow(out) = %+v", below)
	}
}

func TestCreateAtomic(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/out.txt"
	a, err := CreateAtomic(p, 0o600, false)
	if err != nil {
		t.Fatal(err)
	}
	a.WriteString("one")
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file is visible before Commit: %v", err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	a.Abort() // no-op
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after Commit: %v %v", fi, err)
	}
	if _, err := CreateAtomic(p, 0o644, false); !errors.Is(err, ErrExists) {
		t.Errorf("existing file: %v, want ErrExists", err)
	}
	// Appears meanwhile: refused at Commit, the other file is kept.
	b, err := CreateAtomic(dir+"/race.txt", 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/race.txt", []byte("theirs"), 0o644)
	b.WriteString("ours")
	if err := b.Commit(); !errors.Is(err, ErrExists) {
		t.Errorf("race: %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(dir + "/race.txt"); string(got) != "theirs" {
		t.Errorf("the file that appeared was replaced: %q", got)
	}
	// Replace: a hard link to the old file keeps the old content (a new
	// inode is put in place, the old one is never written).
	os.Link(p, dir+"/other-link")
	c, err := CreateAtomic(p, 0o644, true)
	if err != nil {
		t.Fatal(err)
	}
	c.WriteString("two")
	if err := c.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dir + "/other-link"); string(got) != "one" {
		t.Errorf("the old inode was written: %q", got)
	}
	if got, _ := os.ReadFile(p); string(got) != "two" {
		t.Errorf("replaced content %q", got)
	}
	d, err := CreateAtomic(dir+"/gone.txt", 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	d.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("left behind: %v", ents)
	}
	if _, err := CreateAtomic(dir, 0o644, true); err == nil {
		t.Errorf("a folder as the output was accepted")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/mnt/a\040b\134c`); got != `/mnt/a b\c` {
		t.Errorf("unescapeMount: %q", got)
	}
}
