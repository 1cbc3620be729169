package store

// Mount points and their options, read from /proc/self/mountinfo: used to
// warn where the kernel or a FUSE file system would write to a store even
// though usmtkit only reads it.

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo, the parts we use.
type Mount struct {
	Dev        uint64
	MountPoint string
	Options    []string // per-mount options: rw/ro, noatime, relatime, ...
	FSType     string
	Source     string
}

// Mounts reads /proc/self/mountinfo.
func Mounts() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(fields) {
			continue
		}
		maj, min, ok := strings.Cut(fields[2], ":")
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, Mount{
			Dev:        unix.Mkdev(uint32(ma), uint32(mi)),
			MountPoint: unescapeMount(fields[4]),
			Options:    strings.Split(fields[5], ","),
			FSType:     fields[sep+1],
			Source:     unescapeMount(fields[sep+2]),
		})
	}
	return out, sc.Err()
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
// path's device whose mount point is the longest prefix of the path.
func MountOf(path string) (*Mount, error) {
	real, err := filepath.EvalSymlinks(path)
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
		if m.Dev != st.Dev || !isWithin(real, m.MountPoint) {
			continue
		}
		if best == nil || len(m.MountPoint) > len(best.MountPoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount found for %s", path)
	}
	return best, nil
}

func hasOpt(m *Mount, o string) bool {
	for _, x := range m.Options {
		if x == o {
			return true
		}
	}
	return false
}

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
	if !strings.HasPrefix(m.FSType, "fuse") || hasOpt(m, "ro") || hasOpt(m, "noatime") {
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

// isWithin reports whether p is dir or below it (both clean and absolute).
func isWithin(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// ReadOnly reports whether the mount is read-only for the kernel.
func (m *Mount) ReadOnly() bool { return hasOpt(m, "ro") }

// HasOption reports whether the mount has a per-mount option (nosuid, ...).
func (m *Mount) HasOption(o string) bool { return hasOpt(m, o) }
