package safeio

import (
	"encoding/binary"
	"errors"
	"sort"

	"golang.org/x/sys/unix"
)

// Dirent is one name of a folder listing.
type Dirent struct {
	Ino  uint64
	Type uint8 // unix.DT_*; DT_UNKNOWN when the file system does not say
	Name string
}

// errStop ends a listing early from inside ReadDirents.
var errStop = errors.New("stop listing")

// ReadDirents calls fn for every name in d except "." and "..", in the
// order the file system returns them, from the start of the folder each
// time. It reads the raw getdents64 records, so callers get d_ino and
// d_type without a stat per name. An error from fn ends the listing and
// is returned.
func (d *Dir) ReadDirents(fn func(Dirent) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := unix.Seek(d.fd, 0, 0); err != nil {
		return pathErr("list", d.path, err)
	}
	fromFn, err := getdents(d.fd, fn)
	if err != nil && !fromFn {
		return pathErr("list", d.path, err)
	}
	return err
}

// ReadDirentsFd is ReadDirents of a folder descriptor the caller holds
// and positions (rd's delete walk, which holds its folders itself).
func ReadDirentsFd(fd int, fn func(Dirent) error) error {
	_, err := getdents(fd, fn)
	return err
}

// getdents parses the getdents64 records of fd from its position on;
// fromFn tells an error returned by fn from one of the listing.
func getdents(fd int, fn func(Dirent) error) (fromFn bool, err error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if n <= 0 {
			return false, nil
		}
		b := buf[:n]
		for len(b) >= 19 {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				return false, unix.EIO
			}
			e := Dirent{Ino: binary.NativeEndian.Uint64(b[0:8]), Type: b[18]}
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			b = b[reclen:]
			if string(name) == "." || string(name) == ".." {
				continue
			}
			e.Name = string(name)
			if err := fn(e); err != nil {
				return true, err
			}
		}
	}
}

// Names lists d's names (unsorted).
func (d *Dir) Names() ([]string, error) {
	var out []string
	err := d.ReadDirents(func(e Dirent) error {
		out = append(out, e.Name)
		return nil
	})
	return out, err
}

// Empty reports whether d has no names.
func (d *Dir) Empty() (bool, error) {
	empty := true
	err := d.ReadDirents(func(Dirent) error {
		empty = false
		return errStop
	})
	if err == errStop {
		err = nil
	}
	return empty, err
}

// IsDir reports whether the name is a folder (Type must be known: see
// ListDirPath).
func (e Dirent) IsDir() bool { return e.Type == unix.DT_DIR }

// ListDirPath lists the folder at path (opened with OpenDirPath), sorted
// by name, with every name's type known: where the file system leaves
// d_type unknown it is read with Stat (no symlink followed).
func ListDirPath(path string) ([]Dirent, error) {
	d, err := OpenDirPath(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.List()
}

// List lists d like ListDirPath.
func (d *Dir) List() ([]Dirent, error) {
	var out []Dirent
	err := d.ReadDirents(func(e Dirent) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Type != unix.DT_UNKNOWN {
			continue
		}
		if st, err := d.Stat(out[i].Name); err == nil {
			out[i].Type = dtOf(uint32(st.Mode))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func dtOf(mode uint32) uint8 {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return unix.DT_DIR
	case unix.S_IFREG:
		return unix.DT_REG
	case unix.S_IFLNK:
		return unix.DT_LNK
	case unix.S_IFIFO:
		return unix.DT_FIFO
	case unix.S_IFSOCK:
		return unix.DT_SOCK
	case unix.S_IFCHR:
		return unix.DT_CHR
	case unix.S_IFBLK:
		return unix.DT_BLK
	}
	return unix.DT_UNKNOWN
}
