package hardlinkscan

import (
	"context"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
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
// never enters a store root. Folders are opened through safeio, each
// relative to its parent.
func (ls *liveScanner) scanRoot(root string) error {
	d, err := safeio.OpenDirPath(root)
	if err != nil {
		return err
	}
	defer d.Close()
	id, err := d.ID()
	if err != nil {
		return err
	}
	ls.dev = id.Dev
	ls.trustDino = ls.checkDino(d)
	err = ls.walk(d, root)
	if err == errAllFound {
		ls.stats.StoppedAll = true
		return nil
	}
	return err
}

func devOf(st *unix.Statx_t) uint64 { return unix.Mkdev(st.Dev_major, st.Dev_minor) }

// checkDino compares d_ino with st_ino for the first few names of the root:
// FUSE file systems without use_ino, overlayfs and some network file
// systems report other numbers, and then every name must be stat'ed.
func (ls *liveScanner) checkDino(d *safeio.Dir) bool {
	n, ok := 0, true
	_ = d.ReadDirents(func(de safeio.Dirent) error {
		st, err := d.Stat(de.Name)
		if err != nil {
			return nil
		}
		if devOf(st) == ls.dev && st.Ino != de.Ino {
			ok = false
			return errAllFound
		}
		n++
		if n >= 32 {
			return errAllFound
		}
		return nil
	})
	return ok && n > 0
}

func (ls *liveScanner) walk(d *safeio.Dir, dir string) error {
	if err := ls.ctx.Err(); err != nil {
		return err
	}
	ls.stats.Dirs++
	var dirs []string
	err := d.ReadDirents(func(de safeio.Dirent) error {
		ls.stats.Entries++
		switch de.Type {
		case unix.DT_DIR:
			dirs = append(dirs, de.Name)
			return nil
		case unix.DT_REG:
			if ls.trustDino {
				if _, ok := ls.wanted[inodeKey{ls.dev, de.Ino}]; !ok {
					return nil
				}
			}
		case unix.DT_UNKNOWN:
		default:
			return nil // symlinks, FIFOs, sockets, devices: never data links
		}
		ls.stats.Stats++
		st, err := d.Stat(de.Name)
		if err != nil {
			return nil // vanished meanwhile
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			dirs = append(dirs, de.Name)
			return nil
		case unix.S_IFREG:
		default:
			return nil
		}
		if devOf(st) != ls.dev {
			return nil
		}
		if in, ok := ls.wanted[inodeKey{ls.dev, st.Ino}]; ok && in.outside == "" {
			in.outside = dir + "/" + de.Name
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
	for _, name := range dirs {
		if err := ls.ctx.Err(); err != nil {
			return err
		}
		cd, err := d.OpenDir(name)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
				ls.stats.Errors++
				ls.onErr(dir+"/"+name, err)
			}
			continue
		}
		id, err := cd.ID()
		if err != nil {
			cd.Close()
			continue
		}
		if id.Dev != ls.dev {
			ls.stats.Skipped = append(ls.stats.Skipped, dir+"/"+name+" (another file system)")
			cd.Close()
			continue
		}
		if ls.skip[inodeKey{id.Dev, id.Ino}] {
			ls.stats.Skipped = append(ls.stats.Skipped, dir+"/"+name+" (the store)")
			cd.Close()
			continue
		}
		err = ls.walk(cd, dir+"/"+name)
		cd.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
