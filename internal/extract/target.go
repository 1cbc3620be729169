package extract

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// Target describes the file system extraction writes to.
type Target struct {
	FSType string // "ext4", "vfat", "fuse.fusefat", "ntfs-3g", "cifs", ...
	// WindowsNames: the target follows Windows naming rules (reserved
	// characters, device names, trailing dots) and compares names without
	// case; names are escaped (see EscapeName) and case collisions resolved.
	WindowsNames bool
	// NTFS3G: ntfs-3g answers system.ntfs_* xattrs, so creation times and
	// Windows attributes are written as the NTFS fields themselves.
	NTFS3G bool
	// ASCIIOnly: the target refuses names outside ASCII (fusefat); with
	// WindowsNames, non-ASCII characters are escaped as %XX too.
	ASCIIOnly bool
	// TimeGranularity is how finely the target stores a last write time:
	// --skip-existing compares times at this precision.
	TimeGranularity time.Duration
}

// Statfs magic numbers (linux/magic.h and the drivers).
const (
	magicMSDOS = 0x4d44
	magicExFAT = 0x2011BAB0
	magicNTFS  = 0x5346544e // the old ntfs driver
	magicNTFS3 = 0x7366746e // the ntfs3 driver
	magicFUSE  = 0x65735546
	magicCIFS  = 0xFF534D42
	magicSMB2  = 0xFE534D42
	magicSMB   = 0x517B
)

// DetectTarget looks at the file system dir is on. names is "auto",
// "windows" or "posix": anything but auto overrides what was detected
// about names.
func DetectTarget(dir, names string) (*Target, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return nil, fmt.Errorf("looking at the file system of %s: %w", dir, err)
	}
	t := &Target{FSType: fmt.Sprintf("0x%x", uint32(sfs.Type)), TimeGranularity: time.Nanosecond}
	switch uint32(sfs.Type) {
	case magicMSDOS:
		t.FSType, t.WindowsNames, t.TimeGranularity = "vfat", true, 2*time.Second
	case magicExFAT:
		t.FSType, t.WindowsNames, t.TimeGranularity = "exfat", true, 10*time.Millisecond
	case magicNTFS, magicNTFS3:
		t.FSType, t.WindowsNames, t.TimeGranularity = "ntfs", true, 100*time.Nanosecond
	case magicCIFS, magicSMB2, magicSMB:
		t.FSType, t.WindowsNames, t.TimeGranularity = "cifs", true, 100*time.Nanosecond
	case magicFUSE:
		t.FSType = "fuse"
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err == nil {
			if fst := mountFSType(st.Dev); fst != "" {
				t.FSType = fst
			}
		}
		var b [4]byte
		if _, err := unix.Getxattr(dir, "system.ntfs_attrib_be", b[:]); err == nil {
			t.FSType, t.NTFS3G, t.WindowsNames, t.TimeGranularity = "ntfs-3g", true, true, 100*time.Nanosecond
			break
		}
		switch {
		case strings.Contains(t.FSType, "fat"):
			// fusefat, and exfat-fuse: it drops the sub-second part of
			// the times it writes (measured with exfat-fuse 1.3.0), so
			// exFAT's 10 ms cannot be relied on through it.
			t.WindowsNames, t.TimeGranularity = true, 2*time.Second
		case strings.Contains(t.FSType, "ntfs"), t.FSType == "fuseblk":
			// fuseblk without ntfs_* answers: exfat-fuse (which mounts as
			// fuseblk) or ntfs on a block device; 2 s for exfat-fuse's
			// whole-second times.
			t.WindowsNames, t.TimeGranularity = true, 2*time.Second
		}
	default:
		if n, ok := fsNames[uint32(sfs.Type)]; ok {
			t.FSType = n
		}
	}
	switch names {
	case "windows":
		t.WindowsNames = true
	case "posix":
		t.WindowsNames = false
	case "", "auto":
	default:
		return nil, fmt.Errorf("--names takes auto, windows or posix (got %q)", names)
	}
	return t, nil
}

// probeNames finds out whether the folder dirfd accepts a non-ASCII name,
// by creating and removing an empty probe file.
func (t *Target) probeNames(dirfd int) {
	name := ".usmtkit-probe-é"
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EILSEQ) {
			t.ASCIIOnly = true
		}
		return
	}
	unix.Close(fd)
	unix.Unlinkat(dirfd, name, 0)
}

var fsNames = map[uint32]string{
	0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs",
	0x794c7630: "overlayfs", 0x6969: "nfs", 0x2FC12FC1: "zfs", 0xF2F52010: "f2fs",
}

// mountFSType finds the fstype of the mount whose device is dev in
// /proc/self/mountinfo ("fuse.fusefat", "fuseblk", "fuse.exfat", ...);
// the last mount of the device wins (stacked mounts).
func mountFSType(dev uint64) string { return safeio.FSTypeOfDev(dev) }
