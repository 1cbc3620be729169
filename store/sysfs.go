package store

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// The file system access of directory stores goes through internal/safeio
// (docs/safety.md): every folder is held by descriptor and every name is
// looked up relative to its parent's descriptor, so no symlink is
// followed, paths longer than PATH_MAX stay readable and depth costs
// linear time.

// fsReader holds per-store state of the read-only access layer.
type fsReader struct {
	ntfsDevs sync.Map // dev (uint64) -> bool: does this device answer system.ntfs_* xattrs
}

// openRead opens a source file named by a full path (the MIG file, a file
// probed during detection) through safeio.
func (r *fsReader) openRead(path string, _ int) (*os.File, error) {
	return safeio.OpenFilePath(path)
}

// ntfsMeta reads the Windows attributes and creation time ntfs-3g exposes
// as (unlisted) system.ntfs_* extended attributes of name below dir.
// Devices that do not answer them are remembered so other file systems
// pay one failed call.
func (r *fsReader) ntfsMeta(dir *safeio.Dir, name string, dev uint64, e *Entry) {
	if v, ok := r.ntfsDevs.Load(dev); ok && !v.(bool) {
		return
	}
	var buf [8]byte
	n, err := dir.Getxattr(name, "system.ntfs_attrib_be", buf[:4])
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
	if n, err := dir.Getxattr(name, "system.ntfs_crtime_be", buf[:]); err == nil && n == 8 {
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
