package safeio

// The one reader of /proc/self/mountinfo (proc(5)): store warns about
// risky mounts of a store with it, fusefs checks mountpoints, extract
// names the file system of a destination.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo, the parts usmtkit uses.
type Mount struct {
	ID         uint64 // the mount's id (what statx's STATX_MNT_ID gives)
	Dev        uint64
	Root       string   // the folder of the file system mounted here ("/" unless a bind mount of a subfolder)
	MountPoint string   // where it is mounted
	Options    []string // per-mount options: rw/ro, noatime, relatime, ...
	FSType     string   // "ext4", "fuseblk", "fuse.usmtkit", ...
	Source     string   // the device or the FUSE file system's name
}

// mountinfoPath is a variable so a test can parse a prepared file.
var mountinfoPath = "/proc/self/mountinfo"

// Mounts reads /proc/self/mountinfo, in its order (a later line mounted
// on the same point covers an earlier one).
func Mounts() ([]Mount, error) {
	f, err := os.Open(mountinfoPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := ParseMountLine(sc.Text()); ok {
			out = append(out, m)
		}
	}
	return out, sc.Err()
}

// ParseMountLine parses one mountinfo line; ok is false for a line that
// does not have the documented shape.
func ParseMountLine(line string) (m Mount, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 10 {
		return m, false
	}
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || sep+2 >= len(fields) {
		return m, false
	}
	maj, min, found := strings.Cut(fields[2], ":")
	if !found {
		return m, false
	}
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	id, err3 := strconv.ParseUint(fields[0], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return m, false
	}
	return Mount{
		ID:         id,
		Dev:        unix.Mkdev(uint32(ma), uint32(mi)),
		Root:       unescapeMount(fields[3]),
		MountPoint: unescapeMount(fields[4]),
		Options:    strings.Split(fields[5], ","),
		FSType:     fields[sep+1],
		Source:     unescapeMount(fields[sep+2]),
	}, true
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MountOf returns the mount a path lives on: the mountinfo entry with the
// path's device whose mount point is the longest prefix of the path
// (symlinks resolved).
func MountOf(path string) (*Mount, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		return nil, err
	}
	ms, err := Mounts()
	if err != nil {
		return nil, err
	}
	var best *Mount
	for i := range ms {
		m := &ms[i]
		if m.Dev != st.Dev || !Within(real, m.MountPoint) {
			continue
		}
		if best == nil || len(m.MountPoint) >= len(best.MountPoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount found for %s", path)
	}
	return best, nil
}

// MountAt returns the topmost mount whose mount point is exactly path.
func MountAt(path string) (*Mount, bool) {
	ms, err := Mounts()
	if err != nil {
		return nil, false
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == path {
			return &ms[i], true
		}
	}
	return nil, false
}

// FSTypeOfDev is the file system type of the last mount of device dev
// (stacked mounts: the last one is the one seen), or "".
func FSTypeOfDev(dev uint64) string {
	ms, _ := Mounts()
	found := ""
	for _, m := range ms {
		if m.Dev == dev {
			found = m.FSType
		}
	}
	return found
}

// HasOption reports whether the mount has a per-mount option (ro, noatime, ...).
func (m *Mount) HasOption(o string) bool {
	for _, x := range m.Options {
		if x == o {
			return true
		}
	}
	return false
}

// ReadOnly reports whether the mount is read-only for the kernel.
func (m *Mount) ReadOnly() bool { return m.HasOption("ro") }

// Within reports whether p is dir or below it, comparing clean absolute
// paths by name (no file system access).
func Within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}
