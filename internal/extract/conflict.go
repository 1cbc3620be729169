package extract

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// existing looks at what is already at name in d. It returns done=true
// when the entry must not be written (skipped because identical).
func (w *writer) existing(d *wdir, name string, e *store.Entry, winPath string) (done bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, problem("failed", "%s: cannot look at %s/%s: %v", winPath, w.dest, joinRel(d.rel, name), err)
	}
	rel := joinRel(d.rel, name)
	isReg := st.Mode&unix.S_IFMT == unix.S_IFREG
	if w.opts.SkipExisting && isReg && st.Size == e.Size && sameTime(st.Mtim.Nano(), e.MtimeNs, w.tgt.TimeGranularity) {
		w.res.SkippedExisting++
		w.rememberLink(e, rel, st.Dev, st.Ino)
		return true, nil
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return false, problem("conflict", "%s: %s/%s is a folder: the file is not extracted; move the folder away and rerun", winPath, w.dest, rel)
	case w.opts.Overwrite:
		return false, nil
	case w.opts.SkipExisting:
		return false, problem("conflict", "%s: %s/%s already exists with another size or time: not overwritten; pass --overwrite to replace it", winPath, w.dest, rel)
	}
	return false, problem("conflict", "%s: %s/%s already exists: nothing was overwritten; rerun with --skip-existing to keep existing files and resume, or --overwrite to replace them", winPath, w.dest, rel)
}

func sameTime(a, b int64, gran time.Duration) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d == 0 || d < int64(gran) || (gran > time.Nanosecond && d <= int64(gran))
}

// placeName moves the finished temporary file tmp to name: refusing to
// replace anything unless --overwrite.
func (w *writer) placeName(dirfd int, rel, tmp, name, winPath string) error {
	err := renameNoReplace(dirfd, tmp, name, w.opts.Overwrite)
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		if errors.Is(err, unix.EEXIST) {
			return problem("conflict", "%s: %s/%s appeared while it was extracted: not overwritten", winPath, w.dest, rel)
		}
		if isFatalWriteErr(err) {
			return &fatalError{fmt.Errorf("renaming into %s/%s: %w", w.dest, rel, err)}
		}
		return problem("failed", "%s: cannot create %s/%s: %v", winPath, w.dest, rel, err)
	}
	return nil
}

// renameNoReplace renames old to name in the folder dfd, refusing to
// replace an existing name unless replace.
func renameNoReplace(dfd int, old, name string, replace bool) error {
	if replace {
		return unix.Renameat(dfd, old, dfd, name)
	}
	err := unix.Renameat2(dfd, old, dfd, name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		// The file system has no RENAME_NOREPLACE (FUSE, CIFS): check, then
		// rename. The lock in DEST keeps other extracts out of the gap.
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return unix.EEXIST
		}
		return unix.Renameat(dfd, old, dfd, name)
	}
	return err
}
