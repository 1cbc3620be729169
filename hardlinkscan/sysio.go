package hardlinkscan

import (
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

func statIs(st *unix.Stat_t, typ uint32) bool { return st.Mode&unix.S_IFMT == typ }
