package hardlinkscan

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// CheckRemovable refuses store roots that must never be removed whole: "/",
// a top-level folder, a volume root (mount point), a home directory or a
// folder holding one, and any folder holding a live root. It resolves
// symlinks first, so a link named like a store cannot point rd at /home.
func CheckRemovable(root string, live []LiveRoot) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("cannot resolve the store folder %s: %w", root, err)
	}
	if real == "/" || filepath.Dir(real) == "/" {
		return fmt.Errorf("refusing to remove %s: it is the root or a top-level system folder, never a store; remove the store's own folder (the StorePath, like /mnt/c/USMTMIG)", real)
	}
	var st, pst unix.Stat_t
	if err := unix.Lstat(real, &st); err != nil {
		return fmt.Errorf("looking at %s: %w", real, err)
	}
	if !statIs(&st, unix.S_IFDIR) {
		return fmt.Errorf("refusing to remove %s: not a folder", real)
	}
	if err := unix.Lstat(filepath.Dir(real), &pst); err != nil {
		return fmt.Errorf("looking at %s: %w", filepath.Dir(real), err)
	}
	if pst.Dev != st.Dev || pst.Ino == st.Ino {
		return fmt.Errorf("refusing to remove %s: it is the root of a mounted volume, not a store folder; name the store folder on it (like %s/USMTMIG)", real, real)
	}
	for _, h := range homeDirs() {
		if within(h, real) {
			what := "a home directory"
			if h != real {
				what = "a folder holding the home directory " + h
			}
			return fmt.Errorf("refusing to remove %s: it is %s; name the store folder itself", real, what)
		}
	}
	for _, l := range live {
		lr, err := filepath.EvalSymlinks(l.Path)
		if err != nil {
			continue
		}
		if within(lr, real) {
			return fmt.Errorf("refusing to remove %s: it holds the live volume folder %s given with --live", real, l.Path)
		}
	}
	return nil
}

// homeDirs are the home directories of /etc/passwd and $HOME, resolved.
func homeDirs() []string {
	var out []string
	add := func(p string) {
		if p == "" || p == "/" || strings.HasPrefix(p, "/nonexistent") {
			return
		}
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		out = append(out, filepath.Clean(p))
	}
	add(os.Getenv("HOME"))
	if f, err := os.Open("/etc/passwd"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) >= 6 {
				add(fields[5])
			}
		}
		f.Close()
	}
	return out
}

// RemoveResult is what Remove did.
type RemoveResult struct {
	Files   int64     `json:"files_removed"`
	Dirs    int64     `json:"dirs_removed"`
	Others  int64     `json:"others_removed"` // symlinks, FIFOs, sockets (the links themselves)
	Roots   []string  `json:"roots_removed"`
	Failed  []Problem `json:"not_removed"`
	Skipped int64     `json:"not_removed_count"`
}

func (r *RemoveResult) fail(path string, err error) {
	r.Skipped++
	if len(r.Failed) < MaxProblems {
		r.Failed = append(r.Failed, Problem{Path: path, Error: err.Error()})
	}
}

// Remove deletes each store root and everything below it. It walks with
// directory descriptors (openat/unlinkat with O_NOFOLLOW), so a symlink
// is removed as a link and never followed, and a folder on another file
// system (a mount point) is neither entered nor removed. Nothing outside
// the roots is touched. What could not be removed is listed in the result.
// Callers must run CheckRemovable first.
func Remove(ctx context.Context, roots []string) (*RemoveResult, error) {
	res := &RemoveResult{Failed: []Problem{}, Roots: []string{}}
	for _, root := range roots {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := removeRoot(ctx, root, res); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.fail(root, err)
		}
	}
	return res, nil
}

func removeRoot(ctx context.Context, root string, res *RemoveResult) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	parent, base := filepath.Dir(abs), filepath.Base(abs)
	pfd, err := unix.Open(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the folder holding the store: %w", err)
	}
	defer unix.Close(pfd)
	var want unix.Stat_t
	if err := fstatat(pfd, base, &want); err != nil {
		return err
	}
	if !statIs(&want, unix.S_IFDIR) {
		return errors.New("not a folder (a symlink or file is never followed)")
	}
	fd, err := openDir(pfd, base)
	if err != nil {
		return err
	}
	var got unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil || got.Dev != want.Dev || got.Ino != want.Ino {
		unix.Close(fd)
		return errors.New("the folder changed while it was opened; run rd again")
	}
	before := res.Skipped
	err = removeContents(ctx, fd, want.Dev, abs, res)
	unix.Close(fd)
	if err != nil {
		return err
	}
	if res.Skipped != before {
		return nil // the root stays: what is left inside is listed already
	}
	// Remove the root only if the name still is the folder we emptied.
	var again unix.Stat_t
	if err := fstatat(pfd, base, &again); err != nil || again.Dev != want.Dev || again.Ino != want.Ino {
		return errors.New("the store folder was replaced while it was removed; it was left alone")
	}
	if err := unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("removing the store folder itself: %w", notEmpty(err))
	}
	res.Dirs++
	res.Roots = append(res.Roots, abs)
	return nil
}

// removeContents empties the open directory fd (on device dev).
func removeContents(ctx context.Context, fd int, dev uint64, path string, res *RemoveResult) error {
	var names []string
	if err := safeio.ReadDirentsFd(fd, func(d safeio.Dirent) error {
		names = append(names, d.Name)
		return nil
	}); err != nil {
		res.fail(path, fmt.Errorf("listing: %w", err))
		return nil
	}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := path + "/" + n
		var st unix.Stat_t
		if err := fstatat(fd, n, &st); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				res.fail(p, err)
			}
			continue
		}
		if st.Dev != dev {
			res.fail(p, errors.New("another file system is mounted here: not entered, not removed; unmount it and run rd again"))
			continue
		}
		if !statIs(&st, unix.S_IFDIR) {
			if err := unix.Unlinkat(fd, n, 0); err != nil {
				res.fail(p, err)
				continue
			}
			if statIs(&st, unix.S_IFREG) {
				res.Files++
			} else {
				res.Others++
			}
			continue
		}
		cfd, err := openDir(fd, n)
		if err != nil {
			res.fail(p, err)
			continue
		}
		var got unix.Stat_t
		if err := unix.Fstat(cfd, &got); err != nil || got.Dev != st.Dev || got.Ino != st.Ino {
			unix.Close(cfd)
			res.fail(p, errors.New("the folder changed while it was opened: left alone"))
			continue
		}
		before := res.Skipped
		err = removeContents(ctx, cfd, dev, p, res)
		unix.Close(cfd)
		if err != nil {
			return err
		}
		if err := unix.Unlinkat(fd, n, unix.AT_REMOVEDIR); err != nil {
			// A folder whose contents already failed is not reported twice.
			if res.Skipped == before {
				res.fail(p, notEmpty(err))
			}
			continue
		}
		res.Dirs++
	}
	return nil
}

func notEmpty(err error) error {
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		return errors.New("not empty after removing its contents (files were added meanwhile); run rd again")
	}
	return err
}
