package extract

import (
	"errors"
	"fmt"
	"os"

	"github.com/cespare/xxhash/v2"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// linkKey is the key of a salvaged file in the link table: the hash of
// its store path (see writer.linkByPath).
func linkKey(storePath string) uint64 { return xxhash.Sum64String(storePath) }

func (w *writer) rememberLink(e *store.Entry, rel string, dev, ino uint64) {
	if w.linkByPath {
		k := linkKey(e.StorePath)
		if _, ok := w.links[k]; ok {
			return
		}
		if rel == e.StorePath {
			rel = "" // the usual case (store layout, nothing escaped): not kept twice
		}
		w.links[k] = linkRec{rel: rel, dev: dev, ino: ino}
		return
	}
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
	return w.linkTo(d, name, rec, winPath)
}

// linkTo makes name in d a hard link to the file written at rec. It
// returns false when the first name is no longer that file or the target
// cannot link (the caller then copies).
func (w *writer) linkTo(d *wdir, name string, rec linkRec, winPath string) (bool, error) {
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

// writeHardlink writes the store name orig in d as a hard link to the file
// written for the store path target: a salvaged tar hard-link entry. Where
// the target cannot link, or the first name is no longer the file
// written, the content is copied from the first name in DEST. A first
// name that was not written (damaged, lost, not writable) makes the link
// damaged: its data is not in DEST.
func (w *writer) writeHardlink(d *wdir, orig string, e *store.Entry, winPath, target string) error {
	if err := w.poll(); err != nil {
		return err
	}
	name, err := w.outName(d, orig, winPath, false)
	if err != nil {
		return err
	}
	if done, err := w.existing(d, name, e, winPath); err != nil || done {
		return err
	}
	k := linkKey(target)
	if w.pendingLinks[k] {
		if err := w.flush(); err != nil {
			return err
		}
	} else if w.inflightLinks[k] {
		if err := w.settle(); err != nil {
			return err
		}
	}
	rec, ok := w.links[k]
	if !ok {
		return &problemError{kind: "damaged", err: fmt.Errorf("%s: a hard link to %s, which was not written (damaged, lost or not writable): %w", winPath, target, store.ErrCorrupt)}
	}
	if rec.rel == "" {
		rec.rel = target
	}
	linked, err := w.linkTo(d, name, rec, winPath)
	if err != nil {
		return err
	}
	if linked {
		w.res.Files++
		w.progress(1, 0)
		return nil
	}
	dir, base := splitRel(rec.rel)
	ofd, err := w.openRelDir(dir)
	if err != nil {
		return problem("failed", "%s: cannot open %s/%s to copy it: %v", winPath, w.dest, rec.rel, err)
	}
	fd, err := unix.Openat(ofd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	unix.Close(ofd)
	if err != nil {
		return problem("failed", "%s: cannot open %s/%s to copy it: %v", winPath, w.dest, rec.rel, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != rec.ino || st.Dev != rec.dev || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return problem("failed", "%s: %s/%s is no longer the file salvaged there: the link is not written", winPath, w.dest, rec.rel)
	}
	first := &destFile{File: os.NewFile(uintptr(fd), w.dest+"/"+rec.rel), size: st.Size}
	ce := *e
	ce.Size = st.Size
	return w.copyIn(d, name, &ce, winPath, func() (store.File, error) { return first, nil })
}

// destFile is a file already written in DEST, read to copy it.
type destFile struct {
	*os.File
	size int64
}

func (f *destFile) Size() int64 { return f.size }
