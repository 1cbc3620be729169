package hardlinkscan

import (
	"encoding/binary"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Low-level, fd-relative file system access for rd (remove.go), the one
// command that changes a store: it deletes one, after CheckRemovable, with
// openat(O_NOFOLLOW), getdents and unlinkat, so no symlink is ever
// followed and every name is resolved against the directory it holds
// open, never against a path that could be swapped underneath it.
// Everything that only reads (the store walk, the live scan, hashing live
// files) goes through internal/safeio.

// noatimeDenied is set once O_NOATIME gave EPERM (not our files and not
// root): reading is still read-only without it.
var noatimeDenied atomic.Bool

func openAt(dirfd int, name string, flags int) (int, error) {
	flags |= unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	for {
		f := flags
		if !noatimeDenied.Load() {
			f |= unix.O_NOATIME
		}
		fd, err := unix.Openat(dirfd, name, f, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EPERM && f&unix.O_NOATIME != 0 {
			noatimeDenied.Store(true)
			continue
		}
		return fd, err
	}
}

// openDir opens a directory for listing without following a final symlink.
func openDir(dirfd int, name string) (int, error) {
	return openAt(dirfd, name, unix.O_DIRECTORY)
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// dirent is one getdents64 record.
type dirent struct {
	ino  uint64
	typ  uint8 // DT_* (DT_UNKNOWN when the file system does not say)
	name string
}

// readDirents calls fn for every entry of an open directory except "." and
// "..". It reads the raw records so the scan gets d_ino and d_type without
// a stat per entry.
func readDirents(fd int, fn func(dirent) error) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		b := buf[:n]
		for len(b) >= 19 {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return unix.EIO
			}
			d := dirent{ino: binary.NativeEndian.Uint64(b[0:8]), typ: b[18]}
			nameb := b[19:reclen]
			for i, c := range nameb {
				if c == 0 {
					nameb = nameb[:i]
					break
				}
			}
			d.name = string(nameb)
			b = b[reclen:]
			if d.name == "." || d.name == ".." {
				continue
			}
			if err := fn(d); err != nil {
				return err
			}
		}
	}
}

func statIs(st *unix.Stat_t, typ uint32) bool { return st.Mode&unix.S_IFMT == typ }
