package store

// Mount points and their options, read from /proc/self/mountinfo by
// internal/safeio: used to warn where the kernel or a FUSE file system
// would write to a store even though usmtkit only reads it.

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// Mount is one line of /proc/self/mountinfo, the parts we use.
type Mount = safeio.Mount

// Mounts reads /proc/self/mountinfo.
func Mounts() ([]Mount, error) { return safeio.Mounts() }

// MountOf returns the mount a path lives on: the mountinfo entry with the
// path's device whose mount point is the longest prefix of the path.
func MountOf(path string) (*Mount, error) { return safeio.MountOf(path) }

// AccessTimeHazard reports whether reading under path will write last
// access times although we open with O_NOATIME. Measured with ntfs-3g
// 2022.10.3: ntfs-3g ignores O_NOATIME and, on a read-write mount without
// noatime (its default is relatime), updates the NTFS last-access time of
// every file it reads and every folder it lists whose access time is
// older than its last write or change time — the normal state of a
// Windows volume, where last-access updates are off by default. On a
// hard-link store that is the live user's file. Mounting with -o ro or
// -o noatime prevents it. The returned mount is nil when none was found.
func AccessTimeHazard(path string) (*Mount, bool) {
	m, err := MountOf(path)
	if err != nil {
		return nil, false
	}
	if !strings.HasPrefix(m.FSType, "fuse") || m.HasOption("ro") || m.HasOption("noatime") {
		return m, false
	}
	// Only ntfs-3g answers its private attribute; other FUSE file systems
	// are not known to ignore O_NOATIME.
	var buf [4]byte
	if _, err := unix.Lgetxattr(path, "system.ntfs_attrib_be", buf[:]); err != nil {
		return m, false
	}
	return m, true
}

// HazardNote is the one sentence every command prints for a hazard mount.
func HazardNote(m *Mount) string {
	return fmt.Sprintf("%s is mounted read-write without noatime and ntfs-3g ignores O_NOATIME: listing folders (and reading files) there updates their last-access times; remount it with -o ro (or -o noatime) to leave the volume untouched", m.MountPoint)
}
