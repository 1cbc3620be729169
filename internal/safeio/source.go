package safeio

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// sourceFlags are on every open of a source; O_NOATIME is added while the
// kernel allows it.
const sourceFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK

// followLast is passed as extra flags to follow a symlink as the last
// component: only for the folder a user named (OpenDirPath).
const followLast = 1 << 30 // not an open(2) flag bit

// longPath is where we stop handing whole paths to the kernel: PATH_MAX is
// 4096 bytes including the NUL; leave room.
const longPath = 3800

// ErrNotAName is returned for a name below a Dir that is not one plain
// component: empty, ".", "..", or holding a slash. Refusing them keeps
// every lookup to exactly one component of the folder we hold.
var ErrNotAName = errors.New("not a single file name")

// FileID is what a file is, independent of the names it has.
type FileID struct{ Dev, Ino uint64 }

// Dir is an open folder of a source. Names below it are resolved
// relative to its descriptor, one component per call. A Dir is safe for
// concurrent use; listings are serialised (the descriptor's read offset
// is shared).
type Dir struct {
	fd   int
	path string       // the path it was reached by, for messages
	na   *atomic.Bool // O_NOATIME was refused once in this tree
	mu   sync.Mutex   // held while listing
}

// openat opens name below dirfd with the source flags.
func openat(na *atomic.Bool, dirfd int, name string, extra int) (int, error) {
	for {
		f := sourceFlags | extra
		if extra&followLast != 0 {
			f &^= unix.O_NOFOLLOW | followLast
		}
		if !na.Load() {
			f |= unix.O_NOATIME
		}
		fd, err := unix.Openat(dirfd, name, f, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EPERM && f&unix.O_NOATIME != 0 {
			// O_NOATIME needs ownership or CAP_FOWNER; reading is still
			// read-only without it.
			na.Store(true)
			continue
		}
		return fd, err
	}
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.IndexByte(name, '/') >= 0 {
		return fmt.Errorf("%q: %w", name, ErrNotAName)
	}
	return nil
}

func pathErr(op, path string, err error) error {
	return &os.PathError{Op: op, Path: path, Err: err}
}

// splitLong returns a descriptor for the folder holding path and the last
// component. Ordinary paths give AT_FDCWD and the whole path; paths near
// PATH_MAX are walked one component at a time with O_NOFOLLOW, so no
// single call sees more than one name. closeFd must be called.
func splitLong(na *atomic.Bool, path string) (dirfd int, name string, closeFd func(), err error) {
	if len(path) < longPath {
		return unix.AT_FDCWD, path, func() {}, nil
	}
	dir, base := ".", path
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir, base = path[:i], path[i+1:]
		if dir == "" {
			dir = "/"
		}
	}
	fd, err := walkComponents(na, dir)
	if err != nil {
		return -1, "", nil, err
	}
	return fd, base, func() { unix.Close(fd) }, nil
}

func walkComponents(na *atomic.Bool, dir string) (int, error) {
	start := "."
	if strings.HasPrefix(dir, "/") {
		start = "/"
	}
	fd, err := openat(na, unix.AT_FDCWD, start, unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(dir, "/") {
		if c == "" || c == "." {
			continue
		}
		nfd, err := openat(na, fd, c, unix.O_DIRECTORY)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// OpenDirPath opens the source folder at path (a store root, a live
// volume). Symlinks in the path are followed as the user gave them (a
// link to a store opens the store); nothing below the folder ever is.
// Paths longer than PATH_MAX are walked by component, without following
// symlinks.
func OpenDirPath(path string) (*Dir, error) {
	na := new(atomic.Bool)
	dirfd, name, closeFd, err := splitLong(na, path)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	defer closeFd()
	fd, err := openat(na, dirfd, name, unix.O_DIRECTORY|followLast)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	return &Dir{fd: fd, path: path, na: na}, nil
}

// OpenFilePath opens the source file a user named (an archive, a USMT.MIG,
// a manifest) for reading: read-only, O_NOATIME where allowed, never
// blocking on a FIFO. Like OpenDirPath it follows symlinks in the path the
// user gave; files found below a folder are opened with Dir.OpenFile,
// which follows none. Callers check the type with Stat on the returned
// file when it matters.
func OpenFilePath(path string) (*os.File, error) {
	na := new(atomic.Bool)
	dirfd, name, closeFd, err := splitLong(na, path)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	defer closeFd()
	return openFile(na, dirfd, name, path, followLast)
}

func openFile(na *atomic.Bool, dirfd int, name, path string, extra int) (*os.File, error) {
	fd, err := openat(na, dirfd, name, extra)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	// O_NONBLOCK only guarded the open against a FIFO; reads block.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, pathErr("open", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// LstatPath is lstat with birth time, for a path (no final symlink
// followed); long paths are walked by component.
func LstatPath(path string) (*unix.Statx_t, error) {
	na := new(atomic.Bool)
	dirfd, name, closeFd, err := splitLong(na, path)
	if err != nil {
		return nil, err
	}
	defer closeFd()
	return statx(dirfd, name, 0)
}

func statx(dirfd int, name string, flags int) (*unix.Statx_t, error) {
	var st unix.Statx_t
	for {
		err := unix.Statx(dirfd, name, flags|unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT,
			unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &st, nil
	}
}

// Path is the path the folder was reached by (for messages; it may be
// longer than PATH_MAX and must not be opened as a whole).
func (d *Dir) Path() string { return d.path }

// SetPath replaces the path used in messages (a caller that knows a
// better spelling than the one Parent derived).
func (d *Dir) SetPath(p string) { d.path = p }

// Fd is the descriptor, for *at calls this package does not wrap. The
// Dir keeps ownership.
func (d *Dir) Fd() int { return d.fd }

// Close closes the descriptor.
func (d *Dir) Close() error { return unix.Close(d.fd) }

func (d *Dir) child(name string) string {
	if d.path == "/" {
		return "/" + name
	}
	return d.path + "/" + name
}

// OpenDir opens the folder name below d.
func (d *Dir) OpenDir(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := openat(d.na, d.fd, name, unix.O_DIRECTORY)
	if err != nil {
		return nil, pathErr("open", d.child(name), err)
	}
	return &Dir{fd: fd, path: d.child(name), na: d.na}, nil
}

// Parent opens the folder above d through its own "..": no path is
// resolved, so it costs one call at any depth. Callers that need the
// same folder they came from compare ID()s.
func (d *Dir) Parent() (*Dir, error) {
	fd, err := openat(d.na, d.fd, "..", unix.O_DIRECTORY)
	if err != nil {
		return nil, pathErr("open", d.path+"/..", err)
	}
	p := d.path
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		p = p[:i]
	}
	return &Dir{fd: fd, path: p, na: d.na}, nil
}

// OpenFile opens the file name below d for reading.
func (d *Dir) OpenFile(name string) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return openFile(d.na, d.fd, name, d.child(name), 0)
}

// Stat is lstat of name below d, with birth time where the file system
// has one; name "" is d itself.
func (d *Dir) Stat(name string) (*unix.Statx_t, error) {
	if name == "" {
		return statx(d.fd, "", unix.AT_EMPTY_PATH)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	return statx(d.fd, name, 0)
}

// ID is the device and inode of d.
func (d *Dir) ID() (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return FileID{}, err
	}
	return FileID{st.Dev, st.Ino}, nil
}

// Readlink reads the target of the symlink name below d.
func (d *Dir) Readlink(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(d.fd, name, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*2)
	}
}

// Getxattr reads an extended attribute of name below d without following
// a final symlink ("" is d itself). Linux has no lgetxattrat, so the name
// is reached through /proc/self/fd/N: a short path whatever d's depth.
func (d *Dir) Getxattr(name, attr string, buf []byte) (int, error) {
	if name == "" {
		return unix.Fgetxattr(d.fd, attr, buf)
	}
	if err := checkName(name); err != nil {
		return 0, err
	}
	return unix.Lgetxattr("/proc/self/fd/"+strconv.Itoa(d.fd)+"/"+name, attr, buf)
}

// LstatNoSymlinks is lstat of path that refuses to pass through a symlink
// anywhere on the way (openat2 RESOLVE_NO_SYMLINKS), not only at the end:
// a symlinked folder in the middle gives ELOOP. The final component may
// be a symlink (the link itself is described). Kernels without openat2
// (before 5.6) give ENOSYS; the caller walks the components then.
func LstatNoSymlinks(path string) (*unix.Stat_t, error) {
	for {
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue // EAGAIN: a concurrent rename raced the lookup
		}
		if err != nil {
			return nil, err
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		return &st, nil
	}
}
