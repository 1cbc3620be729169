package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrInsideStore is returned by CheckOutside for an output path inside a store.
var ErrInsideStore = errors.New("usmtkit never writes into a store")

// CheckOutside makes sure an output file path lies outside every store
// root (a folder, or the file of a single-file store). Paths are compared
// by what they really are: symlinks are resolved and every folder above
// the output is compared by device and inode with the roots, so a bind
// mount or another spelling of the same folder is caught too. The
// output's folder must exist.
func CheckOutside(out string, roots []string) error {
	return checkOutside(out, roots, 0)
}

func checkOutside(out string, roots []string, depth int) error {
	if depth > 40 {
		return fmt.Errorf("%s: too many levels of symlinks", out)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	dir := filepath.Dir(abs)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("the folder of %s cannot be used: %w; create it first or choose another path", out, err)
	}
	type id struct{ dev, ino uint64 }
	rootIDs := map[id]string{}
	for _, r := range roots {
		var st unix.Stat_t
		if err := unix.Stat(r, &st); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			// A single-file store: only the file itself is off limits.
			var ost unix.Stat_t
			if unix.Stat(abs, &ost) == nil && ost.Dev == st.Dev && ost.Ino == st.Ino {
				return fmt.Errorf("%s is the store itself: %w; choose another output path", out, ErrInsideStore)
			}
			continue
		}
		rootIDs[id{st.Dev, st.Ino}] = r
	}
	for d := realDir; ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err == nil {
			if r, ok := rootIDs[id{st.Dev, st.Ino}]; ok {
				return fmt.Errorf("%s is inside the store %s: %w (it could touch the live files of a hard-link store); write it outside the store", out, r, ErrInsideStore)
			}
		}
		if d == "/" || d == "." || d == filepath.Dir(d) {
			break
		}
	}
	// The output itself may be an existing symlink into a store.
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if target, err := os.Readlink(abs); err == nil {
			if !filepath.IsAbs(target) {
				target = filepath.Join(realDir, target)
			}
			if err := checkOutside(target, roots, depth+1); err != nil {
				if errors.Is(err, ErrInsideStore) {
					return fmt.Errorf("%s is a symlink into a store: %w", out, err)
				}
				return err
			}
		}
	}
	return nil
}
