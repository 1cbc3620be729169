package extract

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

func (w *writer) rememberLink(e *store.Entry, rel string, dev, ino uint64) {
	if w.opts.HardlinkCopy || e.LinkID == 0 || e.Nlink == 1 {
		return
	}
	if _, ok := w.links[e.LinkID]; !ok {
		w.links[e.LinkID] = linkRec{rel: rel, dev: dev, ino: ino}
	}
}

// link makes name in d a hard link to the first written name of e's link
// group. It returns false when the group has no written name yet or the
// target cannot link (the caller then copies).
func (w *writer) link(d *wdir, name string, e *store.Entry, winPath string) (bool, error) {
	if w.opts.HardlinkCopy || e.LinkID == 0 || e.Nlink == 1 {
		return false, nil
	}
	if w.pendingLinks[e.LinkID] {
		// The first name of the group is not renamed into place yet.
		if err := w.flush(); err != nil {
			return false, err
		}
	} else if w.inflightLinks[e.LinkID] {
		// It is being renamed by the flusher: wait for it.
		if err := w.settle(); err != nil {
			return false, err
		}
	}
	rec, ok := w.links[e.LinkID]
	if !ok {
		return false, nil
	}
	// A link appears under its real name at once: only after the batch in
	// flight is in place and did not stop the run.
	if err := w.settle(); err != nil {
		return false, err
	}
	dir, base := splitRel(rec.rel)
	ofd, err := w.openRelDir(dir)
	if err != nil {
		return false, nil
	}
	defer unix.Close(ofd)
	var st unix.Stat_t
	if err := unix.Fstatat(ofd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Ino != rec.ino || st.Dev != rec.dev || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil // the first name changed under us: copy instead
	}
	target := name
	if w.opts.Overwrite {
		target = tmpNameFor(name)
	}
	if err := unix.Linkat(ofd, base, d.fd, target, 0); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return false, problem("conflict", "%s: %s/%s already exists: not overwritten", winPath, w.dest, joinRel(d.rel, name))
		}
		w.res.LinksCopied++
		return false, nil // no hard links on this target (FAT, some FUSE): copy
	}
	if target != name {
		if err := w.placeName(d.fd, joinRel(d.rel, name), target, name, winPath); err != nil {
			return false, err
		}
	}
	w.res.HardLinks++
	return true, nil
}
