package fusefs

import (
	"bytes"
	"context"
	"io"
	"math/rand"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/store"
)

// viewMap maps store paths to paths in the mount, written independently
// of the adapter (from the documented layout) so the suite checks it.
type viewMap struct {
	view             View
	usmtDir, fileDir string // "" when the store has no USMT layout
}

func newViewMap(s store.Store, v View) viewMap {
	m := viewMap{view: v}
	if v != ViewWindows {
		return m
	}
	for _, u := range []string{"USMT", "USMT3"} {
		if e, err := s.Stat(u + "/File"); err == nil && e.IsDir() {
			m.usmtDir, m.fileDir = u, u+"/File"
			return m
		}
	}
	return m
}

// of returns the path in the mount of a store path, and whether it is shown.
func (m viewMap) of(sp string) (string, bool) {
	if m.fileDir == "" {
		return sp, true
	}
	switch {
	case strings.HasPrefix(sp, m.fileDir+"/"):
		rest := strings.TrimPrefix(sp, m.fileDir+"/")
		drive, tail, _ := strings.Cut(rest, "/")
		if len(drive) == 2 && drive[1] == '$' {
			drive = strings.ToUpper(drive[:1])
		}
		if tail == "" {
			return drive, true
		}
		return drive + "/" + tail, true
	case sp == m.usmtDir:
		return ControlDir, true
	case strings.HasPrefix(sp, m.usmtDir+"/") && sp != m.fileDir:
		return ControlDir + "/" + strings.TrimPrefix(sp, m.usmtDir+"/"), true
	}
	return "", false
}

type behaviourOpts struct {
	uid, gid uint32
	umask    uint32
	// checkNlink: the store's Nlink must be passed through (at least 1).
	checkNlink bool
}

// runBehaviour is the one suite run against the adapter and a real mount:
// every entry of the store is found at its view path with the right type,
// size, times, owner, mode, blocks and link count; contents match byte
// for byte, also at random offsets; listings are complete and sorted;
// hard links share an inode number and other entries do not; xattrs carry
// the Windows and store paths; every write fails with EROFS.
func runBehaviour(t *testing.T, fsl fsLike, s store.Store, v View, bo behaviourOpts) {
	t.Helper()
	m := newViewMap(s, v)
	rng := rand.New(rand.NewSource(1))
	listings := map[string][]string{}
	inoOfLink := map[uint64]uint64{} // LinkID -> ino
	owner := map[uint64]string{}     // ino -> the identity that owns it
	var aFile, aDir string
	linkNames := map[uint64]map[string]string{} // LinkID -> store path -> WinPath
	_ = s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err == nil && e.LinkID != 0 {
			if linkNames[e.LinkID] == nil {
				linkNames[e.LinkID] = map[string]string{}
			}
			linkNames[e.LinkID][e.StorePath] = e.WinPath
		}
		return nil
	})
	err := s.Walk(context.Background(), func(e *store.Entry, werr error) error {
		if werr != nil {
			t.Errorf("walking the source: %s: %v", e.StorePath, werr)
			return nil
		}
		vp, ok := m.of(e.StorePath)
		if !ok || (vp == "" && e.StorePath != "") {
			return nil
		}
		if e.StorePath != "" || m.fileDir == "" {
			if vp != "" {
				dir, name := store.SplitPath(vp)
				listings[dir] = append(listings[dir], name)
			}
		}
		if _, ok := listings[vp]; !ok && e.IsDir() {
			listings[vp] = []string{}
		}
		st, err := fsl.Stat(vp)
		if err != nil {
			t.Errorf("stat %q (store %q): %v", vp, e.StorePath, err)
			return nil
		}
		if st.Uid != bo.uid || st.Gid != bo.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", vp, st.Uid, st.Gid, bo.uid, bo.gid)
		}
		if vp != "" && e.StorePath != "" && e.MtimeNs != st.MtimeNs {
			t.Errorf("%s: mtime %d, want %d", vp, st.MtimeNs, e.MtimeNs)
		}
		id := "d:" + e.StorePath
		switch e.Type {
		case store.TypeDir:
			if !st.isDir() || st.Mode&0o777 != 0o555&^bo.umask || st.Nlink != 1 {
				t.Errorf("%s: mode %o nlink %d, want a directory %o with nlink 1", vp, st.Mode, st.Nlink, 0o555&^bo.umask)
			}
			if vp != "" {
				aDir = vp
			}
		case store.TypeFile:
			if !st.isReg() || st.Mode&0o777 != 0o444&^bo.umask || st.Size != e.Size || st.Blocks != (e.Size+511)/512 {
				t.Errorf("%s: mode %o size %d blocks %d, want a file %o of %d bytes, %d blocks", vp, st.Mode, st.Size, st.Blocks, 0o444&^bo.umask, e.Size, (e.Size+511)/512)
			}
			if bo.checkNlink && st.Nlink != max(e.Nlink, 1) {
				t.Errorf("%s: nlink %d, want %d", vp, st.Nlink, max(e.Nlink, 1))
			}
			if e.LinkID != 0 {
				if prev, ok := inoOfLink[e.LinkID]; ok && prev != st.Ino {
					t.Errorf("%s: hard link has ino %d, another name of its group has %d", vp, st.Ino, prev)
				}
				inoOfLink[e.LinkID] = st.Ino
				id = "link:" + itoa(e.LinkID)
			}
			checkContent(t, fsl, s, e, vp, rng)
			aFile = vp
		case store.TypeSymlink:
			if !st.isLink() {
				t.Errorf("%s: mode %o, want a symlink", vp, st.Mode)
			} else if target, err := fsl.Readlink(vp); err != nil || target != e.LinkTarget {
				t.Errorf("%s: readlink %q, %v; want %q", vp, target, err, e.LinkTarget)
			}
		}
		if o, ok := owner[st.Ino]; ok && o != id {
			t.Errorf("%s: ino %d is also used by %s", vp, st.Ino, o)
		}
		owner[st.Ino] = id
		if vp != "" && e.StorePath != "" {
			checkXattrs(t, fsl, e, vp, linkNames[e.LinkID])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range listings {
		got, err := fsl.ReadDir(dir)
		if err != nil {
			t.Errorf("readdir %q: %v", dir, err)
			continue
		}
		if !sort.StringsAreSorted(got) {
			t.Errorf("readdir %q is not sorted: %q", dir, got)
		}
		sort.Strings(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("readdir %q:\n got %q\nwant %q", dir, got, want)
		}
	}
	if aFile == "" || aDir == "" {
		t.Fatalf("the store has no file or no directory to test writes on")
	}
	for _, w := range []struct {
		what string
		err  error
	}{
		{"create", fsl.Create(aDir + "/new-file")},
		{"open for writing", fsl.OpenWrite(aFile)},
		{"unlink", fsl.Unlink(aFile)},
		{"mkdir", fsl.Mkdir(aDir + "/new-dir")},
		{"chmod", fsl.Chmod(aFile)},
		{"utimes", fsl.Utimes(aFile)},
	} {
		if !isErrno(w.err, syscall.EROFS) {
			t.Errorf("%s in a read-only mount: %v, want EROFS", w.what, w.err)
		}
	}
	if _, err := fsl.Stat(aDir + "/no such name"); !isErrno(err, syscall.ENOENT) {
		t.Errorf("stat of a missing name: %v, want ENOENT", err)
	}
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func sourceBytes(t testing.TB, s store.Store, e *store.Entry) []byte {
	t.Helper()
	f, err := s.Open(e)
	if err != nil {
		t.Fatalf("opening source %s: %v", e.StorePath, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil {
		t.Fatalf("reading source %s: %v", e.StorePath, err)
	}
	return b
}

func checkContent(t *testing.T, fsl fsLike, s store.Store, e *store.Entry, vp string, rng *rand.Rand) {
	t.Helper()
	want := sourceBytes(t, s, e)
	got, err := fsl.ReadFile(vp)
	if err != nil {
		t.Errorf("reading %s: %v", vp, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the source's %d", vp, len(got), len(want))
		return
	}
	for i := 0; i < 3 && len(want) > 0; i++ {
		off := rng.Int63n(int64(len(want)))
		n := 1 + rng.Intn(200000)
		got, err := fsl.ReadAt(vp, off, n)
		end := min(off+int64(n), int64(len(want)))
		if err != nil || !bytes.Equal(got, want[off:end]) {
			t.Errorf("%s: ReadAt(%d, %d): %d bytes, %v; differs from the source", vp, off, n, len(got), err)
		}
	}
}

// checkXattrs checks the xattrs of vp. Xattrs belong to the inode, so for a
// hard link they may name any store path of its group (names).
func checkXattrs(t *testing.T, fsl fsLike, e *store.Entry, vp string, names map[string]string) {
	t.Helper()
	listed, err := fsl.Listxattr(vp)
	if err != nil {
		t.Errorf("listxattr %s: %v", vp, err)
		return
	}
	want := map[string]string{XattrStorePath: e.StorePath}
	if e.WinPath != "" {
		want[XattrWinPath] = e.WinPath
	}
	if e.HasWinAttr {
		want[XattrAttrs] = strings.ToLower(hex8(e.WinAttrs))
	}
	if e.HasBtime {
		want[XattrCrtime] = FormatCrtime(e.BtimeNs)
	}
	for name, v := range want {
		if !contains(listed, name) {
			t.Errorf("%s: listxattr %q lacks %s", vp, listed, name)
		}
		got, err := fsl.Getxattr(vp, name)
		if err == nil && got != v && e.LinkID != 0 && (name == XattrStorePath && names[got] != "" || name == XattrWinPath && contains(mapValues(names), got)) {
			continue // another name of the same hard-link group
		}
		if err != nil || got != v {
			t.Errorf("%s: %s = %q, %v; want %q", vp, name, got, err, v)
		}
	}
	if _, err := fsl.Getxattr(vp, "user.nothing"); !isErrno(err, syscall.ENODATA) {
		t.Errorf("%s: getxattr of a missing name: %v, want ENODATA", vp, err)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func hex8(v uint32) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
