package fusefs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// ---- Level (a): node methods, no mount ----

func TestNodesWithoutMount(t *testing.T) {
	s := openStore(t, fixtures.USMT4(t, t.TempDir()))
	nf := newNodeFS(t, adapt(t, s, Options{UID: 1000, GID: 1000, Umask: 0o022}))

	names, err := nf.ReadDir("")
	if err != nil || strings.Join(names, ",") != "C,D,"+ControlDir {
		t.Fatalf("root listing %q, %v; want C, D and %s", names, err, ControlDir)
	}
	ctl, _ := nf.ReadDir(ControlDir)
	if strings.Join(ctl, ",") != "catalog.mig,migstate.dat" {
		t.Errorf("control folder lists %q", ctl)
	}

	// Random reads of every size at random offsets match the source.
	e, err := s.Stat("USMT/File/C$/Users/jdoe/Documents/report.docx")
	if err != nil {
		t.Fatal(err)
	}
	want := sourceBytes(t, s, e)
	fh, err := nf.open("C/Users/jdoe/Documents/report.docx")
	if err != nil {
		t.Fatal(err)
	}
	defer release(fh)
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 200; i++ {
		off := rng.Int63n(int64(len(want)) + 100)
		n := rng.Intn(5000)
		got, err := readHandle(context.Background(), fh, off, n)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := min(off, int64(len(want))), min(off+int64(n), int64(len(want)))
		if !bytes.Equal(got, want[lo:hi]) {
			t.Fatalf("read(%d, %d) differs from the source", off, n)
		}
	}

	st, err := nf.Stat("C/Users/jdoe/Documents/report.docx")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != syscall.S_IFREG|0o444 || st.MtimeNs != fixtures.USMT4ReportMtime.UnixNano() || st.Uid != 1000 || st.Blocks != (20000+511)/512 {
		t.Errorf("report.docx attributes %+v", st)
	}

	// Hard links: one inode, the source's link count.
	a, _ := nf.Stat("C/Users/jdoe/Music/song.mp3")
	b, _ := nf.Stat("C/Users/jdoe/Music/Favourites/song.mp3")
	if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
		t.Errorf("hard links: ino %d/%d nlink %d/%d, want one ino and nlink 2", a.Ino, b.Ino, a.Nlink, b.Nlink)
	}

	// Xattrs.
	if v, _ := nf.Getxattr("C/Users/jdoe/Documents/report.docx", XattrWinPath); v != `C:\Users\jdoe\Documents\report.docx` {
		t.Errorf("winpath xattr %q", v)
	}
	n, _ := nf.walk("C/Users/jdoe/Documents/report.docx")
	if sz, errno := n.Getxattr(context.Background(), XattrWinPath, make([]byte, 3)); errno != syscall.ERANGE || sz != uint32(len(`C:\Users\jdoe\Documents\report.docx`)) {
		t.Errorf("getxattr with a short buffer: %d, %v; want the size and ERANGE", sz, errno)
	}

	// Not found, not a directory, and reads of a directory.
	if _, err := nf.Stat("C/nobody"); !isErrno(err, syscall.ENOENT) {
		t.Errorf("missing: %v", err)
	}
	if _, err := nf.Stat("C/Users/jdoe/Documents/report.docx/x"); !isErrno(err, syscall.ENOTDIR) {
		t.Errorf("below a file: %v", err)
	}
	if _, err := nf.open("C/Users"); !isErrno(err, syscall.EISDIR) {
		t.Errorf("open of a directory: %v", err)
	}
	// Case-sensitive by default.
	if _, err := nf.Stat("c/users"); !isErrno(err, syscall.ENOENT) {
		t.Errorf("case-sensitive lookup of c/users: %v", err)
	}
}

func TestStoreView(t *testing.T) {
	s := openStore(t, fixtures.USMT4(t, t.TempDir()))
	nf := newNodeFS(t, adapt(t, s, Options{View: ViewStore}))
	names, _ := nf.ReadDir("")
	if strings.Join(names, ",") != "USMT" {
		t.Fatalf("store view root %q", names)
	}
	win, _ := newNodeFS(t, adapt(t, s, Options{})).Stat("C/Users/jdoe/Documents/report.docx")
	raw, err := nf.Stat("USMT/File/C$/Users/jdoe/Documents/report.docx")
	if err != nil || raw.Ino != win.Ino {
		t.Errorf("the same file has ino %d in the store view and %d in the windows view (%v)", raw.Ino, win.Ino, err)
	}
	wd, _ := newNodeFS(t, adapt(t, s, Options{})).Stat("C/Users")
	rd, _ := nf.Stat("USMT/File/C$/Users")
	if wd.Ino != rd.Ino {
		t.Errorf("a directory has ino %d in the store view and %d in the windows view", rd.Ino, wd.Ino)
	}
}

func TestCaseInsensitive(t *testing.T) {
	s := openStore(t, fixtures.USMT4(t, t.TempDir()))
	nf := newNodeFS(t, adapt(t, s, Options{CaseInsensitive: true}))
	exact, err := nf.Stat("C/Users/jdoe/Documents/report.docx")
	if err != nil {
		t.Fatal(err)
	}
	folded, err := nf.Stat("c/USERS/Jdoe/documents/REPORT.DOCX")
	if err != nil {
		t.Fatalf("folded lookup: %v", err)
	}
	if folded.Ino != exact.Ino {
		t.Errorf("a file found by folding has ino %d, exact %d: want the same file", folded.Ino, exact.Ino)
	}
	de, _ := nf.Stat("C/Users/jdoe")
	df, _ := nf.Stat("c/users/JDOE")
	if de.Ino == df.Ino {
		t.Errorf("a directory found by folding must have its own ino (the kernel allows one dentry per directory inode)")
	}
	got, err := nf.ReadFile("c/users/jdoe/documents/report.docx")
	if err != nil || len(got) != 20000 {
		t.Errorf("read through folded names: %d bytes, %v", len(got), err)
	}
	names, _ := nf.ReadDir("c/USERS")
	if strings.Join(names, ",") != "asmith,jdoe" {
		t.Errorf("a folded directory lists %q; want the stored names", names)
	}
}

func TestCaseInsensitiveAmbiguous(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"Report.txt", "REPORT.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nf := newNodeFS(t, adapt(t, s, Options{CaseInsensitive: true}))
	if _, err := nf.Stat("report.txt"); !isErrno(err, syscall.ENOENT) {
		t.Errorf("two names differing only in case: folded lookup gave %v, want ENOENT (never guess)", err)
	}
	if b, err := nf.ReadFile("REPORT.txt"); err != nil || string(b) != "REPORT.txt" {
		t.Errorf("exact name: %q, %v", b, err)
	}
}

func TestShareNodes(t *testing.T) {
	sh := fixtures.SMPShare(t, t.TempDir())
	var members []Member
	for _, m := range sh.Stores {
		mem := Member{Name: m.ID}
		if m.Kind == fixtures.SMPKindDir {
			s := openStore(t, m.StorePath)
			mem.Store = s
		} else {
			mem.Why = "it is a compressed USMT.MIG"
		}
		members = append(members, mem)
	}
	f, err := NewShare(members, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nf := newNodeFS(t, f)
	names, _ := nf.ReadDir("")
	if len(names) != 4 {
		t.Fatalf("share root lists %q; want 4 store ids", names)
	}
	for _, m := range sh.Stores {
		if m.Kind == fixtures.SMPKindDir {
			b, err := nf.ReadFile(m.ID + "/C/Users/jdoe/Documents/a.txt")
			if err != nil || len(b) != 1000 {
				t.Errorf("readable member: %d bytes, %v", len(b), err)
			}
			continue
		}
		kids, _ := nf.ReadDir(m.ID)
		if strings.Join(kids, ",") != ReadmeName {
			t.Errorf("unreadable member %s lists %q; want only %s", m.ID, kids, ReadmeName)
		}
		b, err := nf.ReadFile(m.ID + "/" + ReadmeName)
		if err != nil || !bytes.Contains(b, []byte("USMT.MIG")) {
			t.Errorf("README: %q, %v", b, err)
		}
		if v, err := nf.Getxattr(m.ID, XattrUnreadable); err != nil || !strings.Contains(v, "USMT.MIG") {
			t.Errorf("unreadable xattr %q, %v", v, err)
		}
	}
}

func TestRemapIno(t *testing.T) {
	for in, want := range map[uint64]uint64{0: 2, 1: 3, ^uint64(0): ^uint64(0) - 1, 5: 5} {
		if got := remapIno(in); got != want {
			t.Errorf("remapIno(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestParseView(t *testing.T) {
	for in, want := range map[string]View{"": ViewWindows, "Windows": ViewWindows, "store": ViewStore} {
		if v, err := ParseView(in); err != nil || v != want {
			t.Errorf("ParseView(%q) = %q, %v", in, v, err)
		}
	}
	if _, err := ParseView("tree"); err == nil || !strings.Contains(err.Error(), "windows") {
		t.Errorf("ParseView(tree): %v", err)
	}
}

func TestErrno(t *testing.T) {
	f := newFS(Options{Logger: testLogger(t)})
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{os.ErrNotExist, syscall.ENOENT},
		{&store.PathError{Op: "reading", Path: "x", Err: os.ErrPermission}, syscall.EACCES},
		{context.Canceled, syscall.EINTR},
		{context.DeadlineExceeded, syscall.EIO}, // a timeout is a failure: EINTR would be retried forever
		{&store.PathError{Op: "reading", Path: "x", Err: store.ErrCorrupt}, syscall.EIO},
		{syscall.ENAMETOOLONG, syscall.ENAMETOOLONG},
		{syscall.EPERM, syscall.EACCES},
		{syscall.EBADMSG, syscall.EIO},
	} {
		if got := f.errno("testing", "x", c.err); got != c.want {
			t.Errorf("errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if f.EIOCount() != 3 {
		t.Errorf("EIO count %d, want 3", f.EIOCount())
	}
}

// ---- Level (b): one behaviour suite, adapter and real mount ----

func TestBehaviour(t *testing.T) {
	s := openStore(t, fixtures.USMT4(t, t.TempDir()))
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	for _, v := range []View{ViewWindows, ViewStore} {
		o := Options{View: v, UID: uid, GID: gid, Umask: 0o027}
		bo := behaviourOpts{uid: uid, gid: gid, umask: 0o027, checkNlink: true}
		t.Run(string(v)+"/adapter", func(t *testing.T) {
			runBehaviour(t, newNodeFS(t, adapt(t, s, o)), s, v, bo)
		})
		t.Run(string(v)+"/mount", func(t *testing.T) {
			mnt, _ := mountFS(t, adapt(t, s, o))
			runBehaviour(t, osFS{mnt}, s, v, bo)
		})
	}
}

// ---- Level (c): real mounts of every store kind ----

func mountStore(t *testing.T, o Options, paths ...string) (string, store.Store, *Server) {
	t.Helper()
	s := openStore(t, paths...)
	o.UID, o.GID = uint32(os.Geteuid()), uint32(os.Getegid())
	mnt, srv := mountFS(t, adapt(t, s, o))
	return mnt, s, srv
}

func TestMountMultiVolume(t *testing.T) {
	requireFUSE(t)
	roots := fixtures.MultiVolume(t, t.TempDir())
	mnt, s, _ := mountStore(t, Options{}, roots...)
	names, _ := osFS{mnt}.ReadDir("")
	if strings.Join(names, ",") != "C,D,E,"+ControlDir {
		t.Errorf("merged root lists %q; want C,D,E,%s", names, ControlDir)
	}
	runBehaviour(t, osFS{mnt}, s, ViewWindows, behaviourOpts{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), checkNlink: true})
	// A folder store's size would need a walk: df shows no blocks.
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); err != nil || sfs.Blocks != 0 || sfs.Bsize != 4096 {
		t.Errorf("statfs of a folder store's mount: %v %+v", err, sfs)
	}
}

func TestMountPlain(t *testing.T) {
	requireFUSE(t)
	mnt, s, _ := mountStore(t, Options{}, fixtures.Plain(t, t.TempDir()))
	runBehaviour(t, osFS{mnt}, s, ViewWindows, behaviourOpts{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), checkNlink: true})
	a, _ := osFS{mnt}.Stat("Pictures/dog.jpg")
	b, _ := osFS{mnt}.Stat("Pictures/dog-link.jpg")
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("plain hard link: ino %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
}

func TestMountUSMT3(t *testing.T) {
	requireFUSE(t)
	mnt, s, _ := mountStore(t, Options{}, fixtures.USMT3(t, t.TempDir()))
	names, _ := osFS{mnt}.ReadDir(ControlDir)
	if strings.Join(names, ",") != "MIGSTATE.DAT,catalog.mig,status.~lg" {
		t.Errorf("USMT3 control folder lists %q", names)
	}
	runBehaviour(t, osFS{mnt}, s, ViewWindows, behaviourOpts{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), checkNlink: true})
}

func TestMountShare(t *testing.T) {
	requireFUSE(t)
	sh := fixtures.SMPShare(t, t.TempDir())
	var members []Member
	for _, m := range sh.Stores {
		mem := Member{Name: m.ID, Why: "it is a compressed USMT.MIG, which only Windows can read"}
		if m.Kind == fixtures.SMPKindDir {
			mem.Store, mem.Why = openStore(t, m.StorePath), ""
		}
		members = append(members, mem)
	}
	f, err := NewShare(members, Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mnt, _ := mountFS(t, f)
	o := osFS{mnt}
	for _, m := range sh.Stores {
		if m.Kind == fixtures.SMPKindDir {
			b, err := o.ReadFile(m.ID + "/C/Users/jdoe/Documents/a.txt")
			if err != nil || !bytes.Equal(b, fixtures.Text("smp/a.txt", 1000)) {
				t.Errorf("member file: %d bytes, %v", len(b), err)
			}
			continue
		}
		if v, err := o.Getxattr(m.ID, XattrUnreadable); err != nil || !strings.Contains(v, "USMT.MIG") {
			t.Errorf("%s: unreadable xattr %q, %v", m.ID, v, err)
		}
		if b, err := o.ReadFile(m.ID + "/" + ReadmeName); err != nil || !bytes.Contains(b, []byte("Why: it is a compressed")) {
			t.Errorf("%s: README %q, %v", m.ID, b, err)
		}
	}
}

// TestMountHardLinkNTFS serves a hard-link store on a real ntfs-3g volume:
// links share one inode, the counts are ntfs-3g's (live + store names),
// and the NTFS attributes and creation times come through as xattrs.
func TestMountHardLinkNTFS(t *testing.T) {
	requireFUSE(t)
	vol := fixtures.NewNTFSVolume(t, 32)
	h := fixtures.HardLinkStore(t, vol.Mount)
	if err := fixtures.SetNTFSAttrib(filepath.Join(h.StorePath, filepath.FromSlash(h.Linked[0])), fixtures.NTFSAttrHidden|fixtures.NTFSAttrArchive); err != nil {
		t.Fatal(err)
	}
	vol.RemountReadOnly(t)
	mnt, s, _ := mountStore(t, Options{}, h.StorePath)
	runBehaviour(t, osFS{mnt}, s, ViewWindows, behaviourOpts{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), checkNlink: true})
	m := newViewMap(s, ViewWindows)
	for _, sp := range h.Linked {
		vp, _ := m.of(sp)
		st, err := osFS{mnt}.Stat(vp)
		if err != nil || st.Nlink < 2 {
			t.Errorf("%s: nlink %d, %v; want the live and the store name counted", vp, st.Nlink, err)
		}
	}
	vp, _ := m.of(h.Linked[0])
	if v, err := (osFS{mnt}).Getxattr(vp, XattrAttrs); err != nil || v != "00000022" {
		t.Errorf("%s: attrs xattr %q, %v; want 00000022 (hidden, archive)", vp, v, err)
	}
	if v, err := (osFS{mnt}).Getxattr(vp, XattrCrtime); err != nil || !strings.HasSuffix(v, "Z") {
		t.Errorf("%s: crtime xattr %q, %v", vp, v, err)
	}
}

// TestMountConcurrentReads has 16 goroutines read random ranges of every
// file through the mount and compare them with the source.
func TestMountConcurrentReads(t *testing.T) {
	requireFUSE(t)
	vol := fixtures.HardLinkStore(t, t.TempDir()) // holds a 3 MiB file
	t.Run("passthrough-if-possible", func(t *testing.T) {
		mnt, s, _ := mountStore(t, Options{}, vol.StorePath)
		concurrentReads(t, mnt, s)
	})
	t.Run("served", func(t *testing.T) {
		s := openStore(t, vol.StorePath)
		f := adapt(t, s, Options{NoPassthrough: true})
		mnt, _ := mountFS(t, f)
		concurrentReads(t, mnt, s)
		if f.ReadCount() == 0 {
			t.Errorf("no READ reached the server with NoPassthrough")
		}
	})
	t.Run("archive", func(t *testing.T) {
		a := archiveOf(t, vol.StorePath)
		mnt, _ := mountFS(t, adapt(t, a, Options{}))
		concurrentReads(t, mnt, a)
	})
}

func concurrentReads(t *testing.T, mnt string, s store.Store) {
	type file struct {
		vp   string
		data []byte
	}
	var files []file
	m := newViewMap(s, ViewWindows)
	_ = s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err == nil && e.Type == store.TypeFile {
			vp, _ := m.of(e.StorePath)
			files = append(files, file{vp, sourceBytes(t, s, e)})
		}
		return nil
	})
	handles := make([]*os.File, len(files))
	for i, f := range files {
		h, err := os.Open(filepath.Join(mnt, f.vp))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		handles[i] = h
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			buf := make([]byte, 300<<10)
			for i := 0; i < 150; i++ {
				k := rng.Intn(len(files))
				f := files[k]
				if len(f.data) == 0 {
					continue
				}
				off := rng.Int63n(int64(len(f.data)))
				n, err := handles[k].ReadAt(buf[:1+rng.Intn(len(buf)-1)], off)
				if err != nil && n == 0 {
					t.Errorf("goroutine %d: ReadAt %s at %d: %v", g, f.vp, off, err)
					return
				}
				if !bytes.Equal(buf[:n], f.data[off:off+int64(n)]) {
					t.Errorf("goroutine %d: %s at %d: %d bytes differ from the source", g, f.vp, off, n)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// TestMountReadOnlyAndPassthrough checks the kernel's view: the mount is
// read-only in mountinfo, and as root on a kernel with FUSE passthrough a
// directory store's reads never reach the server.
func TestMountReadOnlyAndPassthrough(t *testing.T) {
	requireFUSE(t)
	mnt, _, srv := mountStore(t, Options{}, fixtures.USMT4(t, t.TempDir()))
	me, ok := MountAt(mnt)
	if !ok || me.FSType != FsType || !me.ReadOnly() {
		t.Fatalf("mountinfo: %+v (found %v); want %s, ro", me, ok, FsType)
	}
	if !me.HasOption("nosuid") || !me.HasOption("nodev") {
		t.Errorf("mount options %q lack nosuid/nodev", me.Options)
	}
	if os.Geteuid() != 0 || srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		t.Logf("passthrough not testable here (needs root and a kernel with FUSE passthrough)")
		return
	}
	if !srv.Passthrough {
		t.Fatalf("root, kernel offers passthrough, directory store: Server.Passthrough is false")
	}
	b, err := os.ReadFile(filepath.Join(mnt, "C/Users/jdoe/Documents/report.docx"))
	if err != nil || len(b) != 20000 {
		t.Fatalf("read through passthrough: %d bytes, %v", len(b), err)
	}
	if n := srv.fsys.ReadCount(); n != 0 {
		t.Errorf("%d READ requests reached the server; passthrough should serve them all in the kernel", n)
	}
}

// archiveOf writes the store at path as a usmtkit archive and opens it.
func archiveOf(t testing.TB, paths ...string) *compress.Archive {
	t.Helper()
	src := openStore(t, paths...)
	out := filepath.Join(t.TempDir(), "store.tar.zst")
	if _, err := compress.CreateFile(context.Background(), out, src, compress.WriteOptions{ChunkSize: compress.MinChunkSize}, false); err != nil {
		t.Fatalf("writing the archive: %v", err)
	}
	a, err := compress.Open(out, compress.ReaderOptions{CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestMountArchive(t *testing.T) {
	requireFUSE(t)
	a := archiveOf(t, fixtures.USMT4(t, t.TempDir()))
	f := adapt(t, a, Options{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
	if f.PassthroughCapable() {
		t.Errorf("an archive's files have no descriptor to pass through")
	}
	mnt, _ := mountFS(t, f)
	runBehaviour(t, osFS{mnt}, a, ViewWindows, behaviourOpts{uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), checkNlink: true})
	x, _ := osFS{mnt}.Stat("C/Users/jdoe/Music/song.mp3")
	y, _ := osFS{mnt}.Stat("C/Users/jdoe/Music/Favourites/song.mp3")
	if x.Ino != y.Ino || x.Nlink != 2 {
		t.Errorf("archive hard links: ino %d/%d nlink %d; want one inode with 2 names", x.Ino, y.Ino, x.Nlink)
	}
	// df: the archive's data (hard links once) is the space used, nothing
	// is free, its entries are the inodes.
	sum, err := store.Summarize(context.Background(), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	if want := uint64((sum.BytesUnique + 4095) / 4096); sfs.Blocks != want || sfs.Bfree != 0 || sfs.Bavail != 0 ||
		sfs.Files != uint64(a.EntryCount()) || sfs.Bsize != 4096 || sum.BytesUnique == sum.BytesApparent {
		t.Errorf("statfs: %d blocks (want %d), %d free, %d files (want %d); unique %d apparent %d",
			sfs.Blocks, want, sfs.Bfree, sfs.Files, a.EntryCount(), sum.BytesUnique, sum.BytesApparent)
	}
	t.Run("adapter", func(t *testing.T) {
		runBehaviour(t, newNodeFS(t, adapt(t, a, Options{})), a, ViewWindows, behaviourOpts{checkNlink: true})
	})
}

func TestCheckOverlap(t *testing.T) {
	dir := t.TempDir()
	st := filepath.Join(dir, "store")
	os.MkdirAll(filepath.Join(st, "USMT"), 0o755)
	os.Symlink(st, filepath.Join(dir, "link"))
	for _, c := range []struct {
		mnt, want string
	}{
		{st, "is the store itself"},
		{filepath.Join(dir, "link"), "is the store itself"},
		{filepath.Join(st, "USMT"), "inside the store"},
		{dir, "contains the store"},
		{filepath.Join(dir, "other"), ""},
		{filepath.Join(dir, "store2"), ""},
	} {
		err := CheckOverlap(c.mnt, []string{filepath.Join(dir, "link")})
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckOverlap(%s): %v, want %q", c.mnt, err, c.want)
		}
	}
}

// TestMountArchivePageCache: the frame a random read decoded goes to the
// kernel's page cache once a second read uses it (not after the first:
// most random reads are never followed by another nearby), and a later
// read there is answered by the kernel without a READ request.
func TestMountArchivePageCache(t *testing.T) {
	requireFUSE(t)
	vol := fixtures.HardLinkStore(t, t.TempDir()) // holds a 3 MiB file
	src := openStore(t, vol.StorePath)
	out := filepath.Join(t.TempDir(), "store.tar.zst")
	if _, err := compress.CreateFile(context.Background(), out, src, compress.WriteOptions{ChunkSize: 1 << 20}, false); err != nil {
		t.Fatal(err)
	}
	a, err := compress.Open(out, compress.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var big *store.Entry
	_ = a.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err == nil && e.Type == store.TypeFile && (big == nil || e.Size > big.Size) {
			c := *e
			big = &c
		}
		return nil
	})
	if big == nil || big.Size < 2<<20 {
		t.Fatalf("no file of 2 MiB or more in the fixture")
	}
	se, err := src.Stat(big.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	want := sourceBytes(t, src, se) // not through a: its cache would serve the mount
	f := adapt(t, a, Options{})
	mnt, _ := mountFS(t, f)
	vp, _ := newViewMap(a, ViewWindows).of(big.StorePath)
	h, err := os.Open(filepath.Join(mnt, vp))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	buf := make([]byte, 4096)
	check := func(off int64) {
		t.Helper()
		n, err := h.ReadAt(buf, off)
		if err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
			t.Fatalf("read at %d: %d bytes, %v", off, n, err)
		}
	}
	// Chunk 1, near its end: decodes the frame that holds 900 KiB, and
	// gives none of it to the page cache.
	check(1<<20 + 900<<10)
	time.Sleep(100 * time.Millisecond)
	if n := f.FedBytes(); n != 0 {
		t.Fatalf("%d bytes given to the page cache after one random read", n)
	}
	// A second read in that frame (896-1024 KiB) is answered from the
	// archive's cache and hands the frame to the kernel.
	reads0 := f.ReadCount()
	check(1<<20 + 1000<<10)
	if f.ReadCount() == reads0 {
		t.Fatalf("the second read did not reach the server")
	}
	for i := 0; f.FedBytes() == 0 && i < 200; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if f.FedBytes() == 0 {
		t.Fatalf("nothing given to the page cache after a second read in a frame")
	}
	// The kernel's asynchronous readahead after the first read and the
	// background page-cache feeding may still be running: wait until both
	// have been quiet for a while, so only the next read is counted.
	reads := f.ReadCount()
	for quiet, fed := 0, f.FedBytes(); quiet < 5; {
		time.Sleep(20 * time.Millisecond)
		if r, b := f.ReadCount(), f.FedBytes(); r != reads || b != fed {
			reads, fed, quiet = r, b, 0
			continue
		}
		quiet++
	}
	// The start of that frame: decoded by the first read, before both requests.
	check(1<<20 + (900<<10)/compress.DefaultFrameSize*compress.DefaultFrameSize)
	if f.ReadCount() != reads {
		t.Errorf("a read of data given to the page cache reached the server")
	}
}

// TestMountArchiveFormats: an archive of each format version (one frame
// per chunk, and chunks of frames) reads byte for byte through a real
// mount at random offsets and lengths, and whole.
func TestMountArchiveFormats(t *testing.T) {
	requireFUSE(t)
	vol := fixtures.HardLinkStore(t, t.TempDir()) // holds a 3 MiB file
	src := openStore(t, vol.StorePath)
	for _, c := range []struct {
		name  string
		frame int
	}{{"v1", 1 << 20}, {"v2", 0}, {"v2-64k", 64 << 10}} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "store.tar.zst")
			if _, err := compress.CreateFile(context.Background(), out, src, compress.WriteOptions{ChunkSize: 1 << 20, FrameSize: c.frame}, false); err != nil {
				t.Fatal(err)
			}
			a, err := compress.Open(out, compress.ReaderOptions{CacheBytes: 2 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if v := a.Info().Version; v != compress.ArchiveVersion(uint32(c.name[1]-'0')) {
				t.Fatalf("archive version %q", v)
			}
			want := map[string][]byte{}
			var names []string
			_ = src.Walk(context.Background(), func(e *store.Entry, err error) error {
				if err == nil && e.Type == store.TypeFile && e.Size > 0 {
					vp, ok := newViewMap(a, ViewWindows).of(e.StorePath)
					if ok {
						want[vp] = sourceBytes(t, src, e)
						names = append(names, vp)
					}
				}
				return nil
			})
			if len(names) == 0 {
				t.Fatal("no files")
			}
			mnt, _ := mountFS(t, adapt(t, a, Options{}))
			r := rand.New(rand.NewSource(int64(5 + len(c.name))))
			for range 300 {
				vp := names[r.Intn(len(names))]
				w := want[vp]
				off := r.Int63n(int64(len(w)))
				buf := make([]byte, 1+r.Intn(300<<10))
				h, err := os.Open(filepath.Join(mnt, vp))
				if err != nil {
					t.Fatal(err)
				}
				n, err := h.ReadAt(buf, off)
				h.Close()
				if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:n], w[off:off+int64(n)]) {
					t.Fatalf("%s at %d (+%d): %d bytes, %v", vp, off, len(buf), n, err)
				}
			}
			for _, vp := range names {
				got, err := os.ReadFile(filepath.Join(mnt, vp))
				if err != nil || !bytes.Equal(got, want[vp]) {
					t.Fatalf("%s read whole: %v", vp, err)
				}
			}
		})
	}
}

// TestWaitClosesUnreleasedFiles: when the connection ends with a file
// still open (the kernel never sends its RELEASE), Server.Wait closes the
// store file, so nothing of the store stays open in this process.
func TestWaitClosesUnreleasedFiles(t *testing.T) {
	requireFUSE(t)
	sp := fixtures.USMT4(t, filepath.Join(t.TempDir(), "src"))
	// Without passthrough: a handle opened through a kept backing id holds
	// no store file in this process (backing.go, TestPassthroughBackingKept).
	f := adapt(t, openStore(t, sp), Options{NoPassthrough: true})
	mnt := t.TempDir()
	srv, err := f.Mount(mnt, MountConfig{FsName: "test", Direct: os.Geteuid() == 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a failure below leaves no mount behind
		if _, ok := MountAt(mnt); ok {
			_ = LazyUnmount(mnt)
		}
	})
	var name string
	_ = filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
		if err == nil && name == "" && d.Type().IsRegular() && !strings.Contains(p, ControlDir) {
			name = p
		}
		return nil
	})
	if name == "" {
		t.Fatal("no file in the mount")
	}
	h, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	f.open.mu.Lock()
	opened := len(f.open.m)
	f.open.mu.Unlock()
	if opened != 1 {
		t.Fatalf("%d open handles after one open", opened)
	}
	// End the connection under the open file: its RELEASE never arrives.
	var st unix.Stat_t
	if err := unix.Stat(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if err := AbortConn(st.Dev); err != nil {
		h.Close()
		_ = srv.Unmount()
		t.Fatalf("aborting the connection: %v", err)
	}
	srv.Wait()
	h.Close()
	_ = LazyUnmount(mnt)
	f.open.mu.Lock()
	left := len(f.open.m)
	f.open.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d handles still open after Wait", left)
	}
}
