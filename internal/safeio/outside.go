package safeio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrInsideStore marks an output path that CheckOutside refused.
var ErrInsideStore = errors.New("usmtkit never writes into a store")

// InsideError says which store root an output path is in.
type InsideError struct {
	Out  string // the output path as given
	Root string // the store root it is in (or is)
	Self bool   // the output is the root itself
	Via  string // a symlink at Out that leads there, when that is the way in
}

func (e *InsideError) Error() string {
	what := "is inside the store " + e.Root
	if e.Self {
		what = "is the store itself (" + e.Root + ")"
	}
	if e.Via != "" {
		what = "is a symlink to " + e.Via + ", which " + what
	}
	return fmt.Sprintf("%s %s: %v; choose a path outside it", e.Out, what, ErrInsideStore)
}

func (e *InsideError) Unwrap() error { return ErrInsideStore }

// CheckOutside is the one rule for where usmtkit may write: an output
// path is refused when it, or any folder above it, is one of the store
// roots — compared by device and inode, after resolving symlinks in the
// part of the path that exists, so another spelling of the same folder
// (a symlink, "..", a bind mount of the root or of a folder above it) is
// caught. A root may be a folder or a file (a single-file store); an
// output may not exist yet. An output that is an existing symlink is
// also judged by its target, since opening it without O_NOFOLLOW would
// write there.
//
// A bind mount of a folder *below* a store root, mounted somewhere else,
// has nothing on the way up that names the root; it is caught by where
// the folder lies in its file system (fsPath: the mount's root in
// mountinfo and the path below the mount point, on the same device).
//
// Not caught: an existing output file that is a hard link of a store
// file. Writers never open an existing output for writing (CreateAtomic
// renames a new file into place), which keeps it harmless.
func CheckOutside(out string, roots []string) error {
	return checkOutside(out, out, roots, 0)
}

// fsLoc is where a path lies in its file system: the device and the path
// from the file system's own root, whatever mount (or bind mount) it is
// reached through.
type fsLoc struct {
	dev  uint64
	path string
}

// fsPath returns the fsLoc of real (absolute, symlinks resolved, existing):
// statx names the mount it is reached through, mountinfo that mount's root
// within the file system. ok is false when the kernel does not say.
func fsPath(real string, ms []Mount) (fsLoc, bool) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, real, 0, unix.STATX_MNT_ID, &stx); err != nil || stx.Mask&unix.STATX_MNT_ID == 0 {
		return fsLoc{}, false
	}
	for _, m := range ms {
		if m.ID != stx.Mnt_id {
			continue
		}
		rel, err := filepath.Rel(m.MountPoint, real)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return fsLoc{}, false
		}
		return fsLoc{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), path: filepath.Join(m.Root, rel)}, true
	}
	return fsLoc{}, false
}

// within tells whether loc is root or below it.
func (loc fsLoc) within(root fsLoc) bool {
	return loc.dev == root.dev && (root.path == "/" || loc.path == root.path || strings.HasPrefix(loc.path, root.path+"/"))
}

func checkOutside(shown, out string, roots []string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%s: %w", shown, unix.ELOOP)
	}
	ids := map[FileID]string{}
	for _, r := range roots {
		var st unix.Stat_t
		if err := unix.Stat(r, &st); err == nil {
			ids[FileID{st.Dev, st.Ino}] = r
		}
	}
	real, err := RealPath(out)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", shown, err)
	}
	inside := func(r string, self bool) error {
		e := &InsideError{Out: shown, Root: r, Self: self}
		if depth > 0 {
			e.Via = out
		}
		return e
	}
	existing := "" // the deepest folder of the path that exists
	for p := real; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			if r, ok := ids[FileID{st.Dev, st.Ino}]; ok {
				return inside(r, p == real)
			}
			if existing == "" {
				existing = p
			}
		}
		if p == "/" || p == "." || filepath.Dir(p) == p {
			break
		}
	}
	if existing != "" {
		if ms, err := Mounts(); err == nil {
			if at, ok := fsPath(existing, ms); ok {
				for _, r := range roots {
					rr, err := RealPath(r)
					if err != nil {
						continue
					}
					if root, ok := fsPath(rr, ms); ok && at.within(root) {
						return inside(r, existing == real && at == root)
					}
				}
			}
		}
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(abs), target)
		}
		return checkOutside(shown, target, roots, depth+1)
	}
	return nil
}

// Below is a store root found inside a folder: nothing may be written at
// Rel (slash-separated, relative to the folder) or under it.
type Below struct {
	Root string
	Rel  string
}

// RootsBelow returns the store roots that lie inside dir (by device and
// inode of every folder above each root, symlinks resolved). A caller
// that writes many files into dir (extract) must keep out of them; one
// that covers dir (a mount) must refuse.
func RootsBelow(dir string, roots []string) ([]Below, error) {
	var d unix.Stat_t
	if err := unix.Stat(dir, &d); err != nil {
		return nil, err
	}
	var out []Below
	for _, r := range roots {
		real, err := RealPath(r)
		if err != nil {
			continue
		}
		rel := ""
		for p := real; ; p = filepath.Dir(p) {
			var st unix.Stat_t
			if unix.Stat(p, &st) == nil && st.Dev == d.Dev && st.Ino == d.Ino {
				if p != real {
					out = append(out, Below{Root: r, Rel: filepath.ToSlash(rel)})
				}
				break
			}
			if p == "/" || filepath.Dir(p) == p {
				break
			}
			rel = filepath.Join(filepath.Base(p), rel)
		}
	}
	return out, nil
}

// RealPath is path made absolute with the symlinks of its longest
// existing prefix resolved; the components that do not exist yet are
// appended as given.
func RealPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	rest := ""
	for cur := abs; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}
