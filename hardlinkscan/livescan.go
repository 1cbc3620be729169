package hardlinkscan

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"
)

// inodeKey identifies a file's data on this machine.
type inodeKey struct{ dev, ino uint64 }

// LiveScan describes the one scan of the live volumes that looks for other
// paths of store inodes (MOVED files, and copies that are linked
// elsewhere).
type LiveScan struct {
	Roots      []string `json:"roots"`       // live roots scanned
	Wanted     int      `json:"wanted"`      // inodes looked for
	Found      int      `json:"found"`       // of them, found at a path outside the store
	Dirs       int64    `json:"dirs"`        // folders listed
	Entries    int64    `json:"entries"`     // names seen
	Stats      int64    `json:"stats"`       // lstat calls made
	Complete   bool     `json:"complete"`    // every folder was listed (or the scan stopped because all were found)
	StoppedAll bool     `json:"stopped_all"` // stopped early: every wanted inode was found
	Skipped    []string `json:"skipped"`     // store roots and mount points not entered
	Errors     int64    `json:"errors"`      // folders that could not be listed
}

var errAllFound = errors.New("all found")

// liveScanner walks one live root looking for wanted inodes.
type liveScanner struct {
	ctx    context.Context
	dev    uint64
	skip   map[inodeKey]bool // store roots: never entered
	wanted map[inodeKey]*inode
	left   *int
	stats  *LiveScan
	// trustDino: getdents' d_ino equals st_ino on this file system, so
	// names whose d_ino is not wanted need no stat at all.
	trustDino bool
	onErr     func(path string, err error)
}

// scanRoot walks root. It never follows a symlink, never leaves root's
// file system (a folder on another device is a mount point: skipped) and
// never enters a store root.
func (ls *liveScanner) scanRoot(root string) error {
	fd, err := openDir(unix.AT_FDCWD, root)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	ls.dev = st.Dev
	ls.trustDino = ls.checkDino(fd)
	err = ls.walk(fd, root)
	if err == errAllFound {
		ls.stats.StoppedAll = true
		return nil
	}
	return err
}

// checkDino compares d_ino with st_ino for the first few names of the root:
// FUSE file systems without use_ino, overlayfs and some network file
// systems report other numbers, and then every name must be stat'ed.
func (ls *liveScanner) checkDino(fd int) bool {
	n, ok := 0, true
	_ = readDirents(fd, func(d dirent) error {
		var st unix.Stat_t
		if err := fstatat(fd, d.name, &st); err != nil {
			return nil
		}
		if st.Dev == ls.dev && st.Ino != d.ino {
			ok = false
			return errAllFound
		}
		n++
		if n >= 32 {
			return errAllFound
		}
		return nil
	})
	// Rewind for the real walk.
	_, _ = unix.Seek(fd, 0, 0)
	return ok && n > 0
}

func (ls *liveScanner) walk(fd int, dir string) error {
	if err := ls.ctx.Err(); err != nil {
		return err
	}
	ls.stats.Dirs++
	type sub struct {
		name string
		ino  uint64
	}
	var dirs []sub
	err := readDirents(fd, func(d dirent) error {
		ls.stats.Entries++
		switch d.typ {
		case unix.DT_DIR:
			dirs = append(dirs, sub{d.name, d.ino})
			return nil
		case unix.DT_REG:
			if ls.trustDino {
				if _, ok := ls.wanted[inodeKey{ls.dev, d.ino}]; !ok {
					return nil
				}
			}
		case unix.DT_UNKNOWN:
		default:
			return nil // symlinks, FIFOs, sockets, devices: never data links
		}
		var st unix.Stat_t
		ls.stats.Stats++
		if err := fstatat(fd, d.name, &st); err != nil {
			return nil // vanished meanwhile
		}
		if statIs(&st, unix.S_IFDIR) {
			dirs = append(dirs, sub{d.name, st.Ino})
			return nil
		}
		if !statIs(&st, unix.S_IFREG) || st.Dev != ls.dev {
			return nil
		}
		if in, ok := ls.wanted[inodeKey{st.Dev, st.Ino}]; ok && in.outside == "" {
			in.outside = dir + "/" + d.name
			ls.stats.Found++
			*ls.left--
			if *ls.left == 0 {
				return errAllFound
			}
		}
		return nil
	})
	if err == errAllFound {
		return err
	}
	if err != nil {
		ls.stats.Errors++
		ls.onErr(dir, err)
	}
	for _, s := range dirs {
		if err := ls.ctx.Err(); err != nil {
			return err
		}
		cfd, err := openDir(fd, s.name)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
				ls.stats.Errors++
				ls.onErr(dir+"/"+s.name, err)
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(cfd, &st); err != nil {
			unix.Close(cfd)
			continue
		}
		if st.Dev != ls.dev {
			ls.stats.Skipped = append(ls.stats.Skipped, dir+"/"+s.name+" (another file system)")
			unix.Close(cfd)
			continue
		}
		if ls.skip[inodeKey{st.Dev, st.Ino}] {
			ls.stats.Skipped = append(ls.stats.Skipped, dir+"/"+s.name+" (the store)")
			unix.Close(cfd)
			continue
		}
		err = ls.walk(cfd, dir+"/"+s.name)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}
