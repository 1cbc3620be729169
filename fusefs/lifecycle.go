package fusefs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// The mount lifecycle outside the FUSE server: checking a mountpoint,
// recovering a stale one, unmounting, and finding who keeps a mount busy.

// ErrStale marks a mountpoint whose FUSE server is gone ("transport
// endpoint is not connected").
var ErrStale = errors.New("the mountpoint is left over from a server that died")

// MountEntry is one line of /proc/self/mountinfo (read by internal/safeio).
type MountEntry = store.Mount

// MountAt returns the topmost mount whose mount point is path, if any.
func MountAt(path string) (*MountEntry, bool) { return safeio.MountAt(path) }

// IsStale reports whether path is a FUSE mountpoint whose server is gone.
// statfs always reaches the FUSE connection; stat alone may be answered
// from attributes the kernel cached before the server died.
func IsStale(path string) bool {
	var sfs unix.Statfs_t
	if errors.Is(unix.Statfs(path, &sfs), unix.ENOTCONN) {
		return true
	}
	var st unix.Stat_t
	return errors.Is(unix.Stat(path, &st), unix.ENOTCONN)
}

// CheckMountpoint validates mnt before anything is opened: it must exist,
// be a directory, be empty and not be mounted on. A stale mountpoint (a
// killed server) is detached and accepted; recovered says so. The
// returned path is absolute with symlinks resolved.
func CheckMountpoint(mnt string) (real string, recovered bool, err error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return "", false, err
	}
	if IsStale(abs) {
		if err := LazyUnmount(abs); err != nil {
			return "", false, fmt.Errorf("%s is a stale mount (its server died) and detaching it failed: %w; run fusermount3 -u -z %s (or umount -l as root), then mount again", abs, err, abs)
		}
		recovered = true
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", recovered, fmt.Errorf("mountpoint %s does not exist: create it first (mkdir -p %s)", abs, abs)
	case err != nil:
		return "", recovered, fmt.Errorf("checking mountpoint %s: %w", abs, err)
	case !fi.IsDir():
		return "", recovered, fmt.Errorf("mountpoint %s is not a directory: give an empty directory", abs)
	}
	real, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", recovered, fmt.Errorf("checking mountpoint %s: %w", abs, err)
	}
	if m, ok := MountAt(real); ok {
		hint := "unmount it first"
		if m.FSType == FsType {
			hint = "run usmtkit umount " + real + " first"
		}
		return "", recovered, fmt.Errorf("%s is already a mount point (%s from %s): %s", real, m.FSType, m.Source, hint)
	}
	d, err := safeio.OpenDirPath(real)
	if err != nil {
		return "", recovered, fmt.Errorf("checking mountpoint %s: %w", real, err)
	}
	names, err := d.Names()
	d.Close()
	if err != nil {
		return "", recovered, fmt.Errorf("checking mountpoint %s: %w", real, err)
	}
	if len(names) > 0 {
		sort.Strings(names)
		return "", recovered, fmt.Errorf("mountpoint %s is not empty (it holds %s): mounting would hide its files; give an empty directory", real, names[0])
	}
	return real, recovered, nil
}

// CheckOverlap refuses a mountpoint equal to, inside or above any of the
// store paths: serving a store into itself deadlocks the kernel (restic
// GH #5234). Paths are compared by safeio's outside-the-store rule
// (device and inode of every folder on the way up, symlinks resolved).
func CheckOverlap(mnt string, storePaths []string) error {
	var in *safeio.InsideError
	if err := safeio.CheckOutside(mnt, storePaths); errors.As(err, &in) {
		if in.Self {
			return fmt.Errorf("mountpoint %s is the store itself (%s): choose an empty directory outside the store", mnt, in.Root)
		}
		return fmt.Errorf("mountpoint %s is inside the store %s: choose an empty directory outside the store", mnt, in.Root)
	} else if err != nil {
		return fmt.Errorf("checking mountpoint %s: %w", mnt, err)
	}
	below, err := safeio.RootsBelow(mnt, storePaths)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("checking mountpoint %s: %w", mnt, err)
	}
	if len(below) > 0 {
		return fmt.Errorf("mountpoint %s contains the store %s: choose an empty directory outside the store", mnt, below[0].Root)
	}
	return nil
}

// fusermount finds fusermount3, then fusermount.
func fusermount() (string, error) {
	for _, n := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither fusermount3 nor fusermount is installed (Debian: apt-get install fuse3)")
}

// Unmount unmounts mnt: umount(2) as root, fusermount3 -u otherwise.
// A busy mount gives an error wrapping syscall.EBUSY.
func Unmount(mnt string) error {
	return unmount(mnt, false)
}

// LazyUnmount detaches mnt now; the kernel finishes when the last file on
// it is closed (umount -l, fusermount3 -u -z).
func LazyUnmount(mnt string) error {
	return unmount(mnt, true)
}

func unmount(mnt string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		err := unix.Unmount(mnt, flags)
		if err == nil || !errors.Is(err, unix.EPERM) {
			if err != nil {
				return &os.PathError{Op: "unmount", Path: mnt, Err: err}
			}
			return nil
		}
	}
	bin, err := fusermount()
	if err != nil {
		return err
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.Command(bin, append(args, "--", mnt)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return &os.PathError{Op: "unmount", Path: mnt, Err: syscall.EBUSY}
		}
		return fmt.Errorf("%s %s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), mnt, err, msg)
	}
	return nil
}

// Holder is a process using files under a mountpoint.
type Holder struct {
	Pid   int
	Comm  string
	Paths []string // open files, cwd or root under the mountpoint
}

func (h Holder) String() string {
	return fmt.Sprintf("%d (%s): %s", h.Pid, h.Comm, strings.Join(h.Paths, ", "))
}

// Holders lists the processes with an open file, working directory or
// root under mnt, from /proc (only readlink, which never touches the
// mount itself, so it works on a hung one). Processes we may not inspect
// are skipped.
func Holders(mnt string) []Holder {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []Holder
	under := func(p string) bool { return p == mnt || strings.HasPrefix(p, mnt+"/") }
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		base := "/proc/" + e.Name()
		var paths []string
		for _, l := range []string{"cwd", "root"} {
			if t, err := os.Readlink(base + "/" + l); err == nil && under(t) {
				paths = append(paths, l+" "+t)
			}
		}
		fds, _ := os.ReadDir(base + "/fd")
		for _, fd := range fds {
			if t, err := os.Readlink(base + "/fd/" + fd.Name()); err == nil && under(t) {
				paths = append(paths, t)
			}
		}
		if len(paths) == 0 {
			continue
		}
		comm, _ := os.ReadFile(base + "/comm")
		sort.Strings(paths)
		out = append(out, Holder{Pid: pid, Comm: strings.TrimSpace(string(comm)), Paths: paths})
	}
	return out
}

// AbortConn cuts the kernel connection of a FUSE mount, given its device
// (MountEntry.Dev), by writing to /sys/fs/fuse/connections/N/abort
// (root only): every process waiting on it gets an error at once. The
// last resort after a lazy unmount, which hides the mount from mountinfo.
func AbortConn(dev uint64) error {
	minor := strconv.FormatUint(uint64(unix.Minor(dev)), 10)
	const ctl = "/sys/fs/fuse/connections"
	if ents, err := os.ReadDir(ctl); err == nil && len(ents) == 0 {
		// fusectl is not mounted (common in containers); mount it (root only).
		_ = unix.Mount("fusectl", ctl, "fusectl", 0, "")
	}
	return os.WriteFile(ctl+"/"+minor+"/abort", []byte("1"), 0)
}
