package compress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// SalvageTo salvages an archive into destDir (created if missing): intact
// files, directories, symlinks and hard links are written; damaged and
// lost entries are listed in the report. It never writes outside destDir:
// absolute names and ".." are refused, every path is resolved component by
// component with O_NOFOLLOW (a symlink in the destination is never
// followed), files are written under a temporary name and renamed into
// place only once complete, and directory times are restored last.
func SalvageTo(ctx context.Context, path, destDir string) (*SalvageReport, error) {
	return salvageTo(destDir, func(fn func(e *SalvagedEntry, data io.Reader) error) (*SalvageReport, error) {
		return Salvage(ctx, path, fn)
	})
}

// SalvageReaderAtTo is SalvageTo of an archive held anywhere a ReaderAt
// reaches (an object in a bucket, package objstore).
func SalvageReaderAtTo(ctx context.Context, r io.ReaderAt, size int64, name, destDir string) (*SalvageReport, error) {
	return salvageTo(destDir, func(fn func(e *SalvagedEntry, data io.Reader) error) (*SalvageReport, error) {
		return SalvageReaderAt(ctx, r, size, name, fn)
	})
}

func salvageTo(destDir string, walk func(fn func(e *SalvagedEntry, data io.Reader) error) (*SalvageReport, error)) (*SalvageReport, error) {
	if err := os.Mkdir(destDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating the salvage folder %s: %w", destDir, err)
	}
	root, err := unix.Open(destDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the salvage folder %s: %w", destDir, err)
	}
	x := &extractor{root: root, dest: destDir, cacheFd: -1}
	defer x.close()
	var refused []SalvagedEntry
	var refusedCount int64
	rep, err := walk(func(e *SalvagedEntry, data io.Reader) error {
		werr := x.write(e, data)
		if werr == nil {
			return nil
		}
		if errors.Is(werr, store.ErrCorrupt) {
			return werr // the entry is damaged; Salvage records it
		}
		if destinationUnusable(werr) {
			return werr // every later entry would fail the same way
		}
		// Salvage is the last resort: an entry the destination will not
		// take (a name too long, a character ntfs-3g's windows_names
		// rejects, a name already there) is listed, and the walk goes on.
		e2 := *e
		e2.Err = werr
		refusedCount++
		if len(refused) < store.MaxProblems {
			refused = append(refused, e2)
		}
		return nil
	})
	if rep != nil {
		rep.Refused = append(rep.Refused, refused...)
		rep.RefusedCount += refusedCount
		rep.Intact -= refusedCount
	}
	if err != nil {
		return rep, err
	}
	if err := x.finishDirs(); err != nil {
		return rep, err
	}
	return rep, nil
}

// refusedError marks an entry SalvageTo will not write.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

type dirTimes struct {
	comps       []string
	mode        uint32
	atime, mtim int64
}

type extractor struct {
	root      int
	dest      string
	cachePath string // the directory cacheFd is open on
	cacheFd   int
	dirs      []dirTimes
	tmpSeq    atomic.Int64
}

func (x *extractor) close() {
	if x.cacheFd >= 0 {
		unix.Close(x.cacheFd)
	}
	unix.Close(x.root)
}

// safeComps splits a tar path into safe components.
func safeComps(p string) ([]string, error) {
	if p == "" || strings.HasPrefix(p, "/") {
		return nil, &refusedError{fmt.Sprintf("refusing the absolute or empty name %q", p)}
	}
	comps := strings.Split(p, "/")
	for _, c := range comps {
		if c == "" || c == "." || c == ".." || strings.IndexByte(c, 0) >= 0 {
			return nil, &refusedError{fmt.Sprintf("refusing the unsafe name %q", p)}
		}
	}
	return comps, nil
}

// dirFd returns an fd on the directory made of comps under the root,
// creating missing directories and refusing any symlink on the way. The fd
// belongs to the extractor (cached); do not close it.
func (x *extractor) dirFd(comps []string) (int, error) {
	key := strings.Join(comps, "/")
	if x.cacheFd >= 0 && x.cachePath == key {
		return x.cacheFd, nil
	}
	fd, err := unix.Dup(x.root)
	if err != nil {
		return -1, err
	}
	for _, c := range comps {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, &refusedError{fmt.Sprintf("refusing to write below %q: it is not a folder (a symlink or a file) in %s", key, x.dest)}
		}
		if err != nil {
			return -1, fmt.Errorf("opening folder %s in %s: %w", key, x.dest, err)
		}
		fd = next
	}
	if x.cacheFd >= 0 {
		unix.Close(x.cacheFd)
	}
	x.cacheFd, x.cachePath = fd, key
	return fd, nil
}

func (x *extractor) write(e *SalvagedEntry, data io.Reader) error {
	comps, err := safeComps(e.Path)
	if err != nil {
		return err
	}
	parent, name := comps[:len(comps)-1], comps[len(comps)-1]
	mode := e.Mode & 0o7777
	switch {
	case e.Type == store.TypeDir:
		if _, err := x.dirFd(comps); err != nil {
			return err
		}
		if mode == 0 {
			mode = 0o755
		}
		x.dirs = append(x.dirs, dirTimes{comps: comps, mode: mode, atime: e.AtimeNs, mtim: e.MtimeNs})
		return nil
	case e.Type == store.TypeSymlink:
		pfd, err := x.dirFd(parent)
		if err != nil {
			return err
		}
		if err := x.clear(pfd, name); err != nil {
			return err
		}
		if err := unix.Symlinkat(e.Link, pfd, name); err != nil {
			return fmt.Errorf("creating symlink %s in %s: %w", e.Path, x.dest, err)
		}
		return x.times(pfd, name, e)
	case e.Hardlink:
		tcomps, err := safeComps(e.Link)
		if err != nil {
			return err
		}
		tfd, err := x.dirFd(tcomps[:len(tcomps)-1])
		if err != nil {
			return err
		}
		// dirFd caches one fd: take our own copy before resolving the parent.
		tdup, err := unix.Dup(tfd)
		if err != nil {
			return err
		}
		defer unix.Close(tdup)
		pfd, err := x.dirFd(parent)
		if err != nil {
			return err
		}
		if err := x.clear(pfd, name); err != nil {
			return err
		}
		if err := unix.Linkat(tdup, tcomps[len(tcomps)-1], pfd, name, 0); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("%w: its link target %s was not salvaged", store.ErrCorrupt, e.Link)
			}
			return fmt.Errorf("creating hard link %s in %s: %w", e.Path, x.dest, err)
		}
		return nil
	}
	pfd, err := x.dirFd(parent)
	if err != nil {
		return err
	}
	tmp := ".usmtz-salvage-" + strconv.FormatInt(x.tmpSeq.Add(1), 10)
	fd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating %s in %s: %w", e.Path, x.dest, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	n, cerr := io.Copy(f, data)
	if cerr == nil && n != e.Size {
		cerr = fmt.Errorf("%w: %d of %d bytes", store.ErrCorrupt, n, e.Size)
	}
	if cerr == nil {
		if mode == 0 {
			mode = 0o644
		}
		cerr = f.Chmod(os.FileMode(mode))
	}
	if err := f.Close(); cerr == nil && err != nil {
		cerr = err
	}
	if cerr == nil {
		if err := x.clear(pfd, name); err != nil {
			cerr = err
		} else {
			cerr = unix.Renameat(pfd, tmp, pfd, name)
		}
	}
	if cerr != nil {
		unix.Unlinkat(pfd, tmp, 0)
		if errors.Is(cerr, store.ErrCorrupt) {
			return cerr
		}
		var re *refusedError
		if errors.As(cerr, &re) {
			return cerr
		}
		return fmt.Errorf("writing %s in %s: %w", e.Path, x.dest, cerr)
	}
	return x.times(pfd, name, e)
}

// clear checks that nothing is at name yet. Salvage never deletes or
// replaces anything in the destination, as extract never overwrites: a
// name already taken (or one that cannot be checked) is refused and
// listed, and the existing file is left alone.
func (x *extractor) clear(pfd int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return &refusedError{fmt.Sprintf("cannot check whether %s already exists in %s (%v): not written", name, x.dest, err)}
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return &refusedError{fmt.Sprintf("refusing to replace the folder %s with a file", name)}
	}
	return &refusedError{fmt.Sprintf("%s already exists in %s: not overwritten (salvage into an empty folder)", name, x.dest)}
}

// destinationUnusable reports whether a write error means no later entry
// can be written either (the destination is full or read-only), so
// going on would only list every entry as failed.
func destinationUnusable(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EROFS)
}

func (x *extractor) times(pfd int, name string, e *SalvagedEntry) error {
	at := e.AtimeNs
	if at == 0 {
		at = e.MtimeNs
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at), unix.NsecToTimespec(e.MtimeNs)}
	if err := unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting the times of %s in %s: %w", e.Path, x.dest, err)
	}
	return nil
}

// finishDirs sets directory modes and times, deepest first (reverse of the
// pre-order they came in), so writing children no longer changes them.
func (x *extractor) finishDirs() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		pfd, err := x.dirFd(d.comps[:len(d.comps)-1])
		if err != nil {
			return err
		}
		name := d.comps[len(d.comps)-1]
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening folder %s in %s: %w", strings.Join(d.comps, "/"), x.dest, err)
		}
		err = unix.Fchmod(fd, d.mode)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("setting the mode of %s in %s: %w", strings.Join(d.comps, "/"), x.dest, err)
		}
		at := d.atime
		if at == 0 {
			at = d.mtim
		}
		ts := []unix.Timespec{unix.NsecToTimespec(at), unix.NsecToTimespec(d.mtim)}
		if err := unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting the times of %s in %s: %w", strings.Join(d.comps, "/"), x.dest, err)
		}
	}
	return nil
}
