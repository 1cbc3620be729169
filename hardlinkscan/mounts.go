package hardlinkscan

import (
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// The mountinfo reader and the access-time hazard check live in package
// store (every command warns about them); these names keep the scan's code
// short.
var (
	AccessTimeHazard = store.AccessTimeHazard
	HazardNote       = store.HazardNote
)

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool { return safeio.Within(p, dir) }

// VolumeRoot returns the mount point of the file system holding path: the
// highest ancestor on the same device. For a hard-link store it is the
// folder the store's drive letter stood for.
func VolumeRoot(path string) (string, error) {
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	p, err = filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	for p != "/" {
		parent := filepath.Dir(p)
		var pst unix.Stat_t
		if err := unix.Lstat(parent, &pst); err != nil || pst.Dev != st.Dev {
			return p, nil
		}
		p = parent
	}
	return p, nil
}
