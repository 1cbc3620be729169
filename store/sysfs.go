package store

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// The low-level, read-only file system access every directory store uses.
// Paths longer than the kernel's PATH_MAX are reached by walking their
// components with openat(O_PATH|O_NOFOLLOW), so very deep stores stay
// readable without ever following a symlink on the way.

// longPath is where we stop handing whole paths to the kernel (PATH_MAX is
// 4096 including the NUL; leave room).
const longPath = 3800

// fsReader holds per-store state of the read-only access layer.
type fsReader struct {
	noatimeDenied atomic.Bool // O_NOATIME gave EPERM once: the files are not ours and we are not root
	ntfsDevs      sync.Map    // dev (uint64) -> bool: does this device answer system.ntfs_* xattrs
}

// parentFd resolves the directory holding full and returns a descriptor to
// use with *at calls plus the final name. For ordinary lengths it is
// AT_FDCWD and the whole path; for long ones it walks the components.
// The returned closer must be called.
func parentFd(full string) (dirfd int, name string, closer func(), err error) {
	if len(full) < longPath {
		return unix.AT_FDCWD, full, func() {}, nil
	}
	dir, base := full, ""
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		dir, base = full[:i], full[i+1:]
	}
	fd, err := walkComponents(dir)
	if err != nil {
		return -1, "", nil, err
	}
	return fd, base, func() { unix.Close(fd) }, nil
}

// walkComponents opens a directory path one component at a time with
// O_PATH|O_NOFOLLOW, so no component can be a symlink and no single call
// sees more than one name.
func walkComponents(dir string) (int, error) {
	start := "."
	if strings.HasPrefix(dir, "/") {
		start = "/"
	}
	fd, err := unix.Open(start, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(dir, "/") {
		if c == "" || c == "." {
			continue
		}
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

// statPath is lstat with birth time where the file system has one.
func statPath(full string) (*unix.Statx_t, error) {
	dirfd, name, closer, err := parentFd(full)
	if err != nil {
		return nil, err
	}
	defer closer()
	var st unix.Statx_t
	for {
		err = unix.Statx(dirfd, name, unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT,
			unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// openRead opens a file or directory read-only, never following a final
// symlink, never blocking on a FIFO, with O_NOATIME while we are allowed it.
func (r *fsReader) openRead(full string, extra int) (*os.File, error) {
	dirfd, name, closer, err := parentFd(full)
	if err != nil {
		return nil, err
	}
	defer closer()
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC | extra
	for {
		f := flags
		if !r.noatimeDenied.Load() {
			f |= unix.O_NOATIME
		}
		fd, err := unix.Openat(dirfd, name, f, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EPERM && f&unix.O_NOATIME != 0 {
			// O_NOATIME needs ownership or CAP_FOWNER; reading is still read-only without it.
			r.noatimeDenied.Store(true)
			continue
		}
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), full), nil
	}
}

// readDirNames lists a directory without following symlinks.
func (r *fsReader) readDirNames(full string) ([]string, error) {
	f, err := r.openRead(full, unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// readLink reads a symlink's target.
func readLink(full string) (string, error) {
	dirfd, name, closer, err := parentFd(full)
	if err != nil {
		return "", err
	}
	defer closer()
	buf := make([]byte, 512)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*2)
	}
}

// ntfsMeta reads the Windows attributes and creation time ntfs-3g exposes
// as (unlisted) system.ntfs_* extended attributes. Devices that do not
// answer them are remembered so other file systems pay one failed call.
func (r *fsReader) ntfsMeta(full string, dev uint64, e *Entry) {
	if v, ok := r.ntfsDevs.Load(dev); ok && !v.(bool) {
		return
	}
	var buf [8]byte
	n, err := unix.Lgetxattr(full, "system.ntfs_attrib_be", buf[:4])
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENODATA) {
			if _, known := r.ntfsDevs.Load(dev); !known {
				r.ntfsDevs.Store(dev, false)
			}
		}
		return
	}
	r.ntfsDevs.Store(dev, true)
	if n == 4 {
		e.WinAttrs = binary.BigEndian.Uint32(buf[:4])
		e.HasWinAttr = true
	}
	if n, err := unix.Lgetxattr(full, "system.ntfs_crtime_be", buf[:]); err == nil && n == 8 {
		e.BtimeNs = FiletimeToUnixNs(binary.BigEndian.Uint64(buf[:]))
		e.HasBtime = true
	}
}

// FiletimeToUnixNs converts a Windows FILETIME (100 ns since 1601-01-01) to
// ns since the Unix epoch.
func FiletimeToUnixNs(ft uint64) int64 {
	const epochDiff = 116444736000000000 // 100 ns intervals from 1601 to 1970
	return (int64(ft) - epochDiff) * 100
}

// UnixNsToFiletime is the inverse of FiletimeToUnixNs.
func UnixNsToFiletime(ns int64) uint64 {
	const epochDiff = 116444736000000000
	return uint64(ns/100 + epochDiff)
}

// linkIDOf derives the content identity of a file from its device and inode.
func linkIDOf(dev, ino uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], dev)
	binary.LittleEndian.PutUint64(b[8:], ino)
	id := xxhash.Sum64(b[:])
	if id == 0 {
		id = 1
	}
	return id
}

// fillFromStatx fills the stat-derived fields of an entry.
func fillFromStatx(e *Entry, st *unix.Statx_t) {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type = TypeFile
		e.Size = int64(st.Size)
	case unix.S_IFDIR:
		e.Type = TypeDir
	case unix.S_IFLNK:
		e.Type = TypeSymlink
		e.Size = int64(st.Size)
	default:
		e.Type = TypeOther
	}
	e.Mode = uint32(st.Mode) & 0o7777
	e.MtimeNs = st.Mtime.Sec*1e9 + int64(st.Mtime.Nsec)
	e.AtimeNs = st.Atime.Sec*1e9 + int64(st.Atime.Nsec)
	e.CtimeNs = st.Ctime.Sec*1e9 + int64(st.Ctime.Nsec)
	if st.Mask&unix.STATX_BTIME != 0 {
		e.BtimeNs = st.Btime.Sec*1e9 + int64(st.Btime.Nsec)
		e.HasBtime = true
	}
	e.Dev = unix.Mkdev(st.Dev_major, st.Dev_minor)
	e.Ino = st.Ino
	e.Nlink = st.Nlink
	if e.Type == TypeFile {
		e.LinkID = linkIDOf(e.Dev, e.Ino)
	}
}
