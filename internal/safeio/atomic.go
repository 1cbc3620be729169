package safeio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// AtomicFile is an output file that appears under its name only when
// committed: it is written as a temporary file in the same folder,
// synced, renamed into place and the folder synced, so a crash or an
// interrupted run never leaves a half-written file under the final name,
// and an existing file is replaced by a new inode, never written into.
type AtomicFile struct {
	*os.File
	path    string
	replace bool
	done    bool
}

// ErrExists is returned by CreateAtomic and Commit when the path exists
// and replace is false.
var ErrExists = errors.New("the output file already exists")

// CreateAtomic starts writing path with the given permissions. Unless
// replace is true, an existing path is refused (checked now and again,
// atomically, at Commit). A folder at path is always refused.
func CreateAtomic(path string, perm os.FileMode, replace bool) (*AtomicFile, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s is a folder: give a file name in it", path)
		}
		if !replace {
			return nil, fmt.Errorf("%s: %w", path, ErrExists)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file next to %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil { // CreateTemp makes 0600
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &AtomicFile{File: f, path: path, replace: replace}, nil
}

// Commit syncs the file, renames it into place and syncs the folder.
func (a *AtomicFile) Commit() error {
	if a.done {
		return errors.New("atomic file already finished")
	}
	a.done = true
	tmp := a.File.Name()
	err := a.File.Sync()
	if cerr := a.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = renameInto(tmp, a.path, a.replace)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(a.path))
}

// Abort closes and removes the temporary file; a no-op after Commit.
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
}

func renameInto(tmp, path string, replace bool) error {
	if replace {
		return os.Rename(tmp, path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w (it appeared while it was written)", path, ErrExists)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		// The file system has no RENAME_NOREPLACE (some FUSE and network
		// file systems): a hard link refuses an existing name just as well.
		if lerr := os.Link(tmp, path); lerr != nil {
			if errors.Is(lerr, fs.ErrExist) {
				return fmt.Errorf("%s: %w (it appeared while it was written)", path, ErrExists)
			}
			return os.Rename(tmp, path) // no hard links either: the last check was at create time
		}
		return os.Remove(tmp)
	}
	return err
}

// syncDir makes a rename durable. File systems that cannot sync a folder
// (EINVAL) are accepted.
func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}
