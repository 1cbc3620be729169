package extract

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// writeFile extracts one regular file into d under the store name orig.
func (w *writer) writeFile(d *wdir, orig string, e *store.Entry, winPath string, open func() (store.File, error)) error {
	// A batch the flusher finished may have stopped the run.
	if err := w.poll(); err != nil {
		return err
	}
	name, err := w.outName(d, orig, winPath, false)
	if err != nil {
		return err
	}
	done, err := w.existing(d, name, e, winPath)
	if err != nil || done {
		return err
	}
	if ok, err := w.link(d, name, e, winPath); err != nil || ok {
		if ok {
			w.res.Files++
			w.res.Bytes += e.Size
			w.progress(1, 0)
		}
		return err
	}
	return w.copyIn(d, name, e, winPath, open)
}

// copyIn writes the content of e (from open) into d under the chosen
// name: a temporary file, then the batch's rename.
func (w *writer) copyIn(d *wdir, name string, e *store.Entry, winPath string, open func() (store.File, error)) error {
	rel := joinRel(d.rel, name)
	if e.Size >= bigFile && len(w.pending) > 0 {
		// The files before a big one are handed to the flusher before it
		// is copied, without waiting for their syncfs: they become durable
		// and get their real names while the big file is written, so a
		// run killed in the middle of it loses little more than that file
		// (at most the batch still in flight), and a resumed run skips the
		// rest. Waiting here for the syncfs was most of the extra time over
		// a non-flushing tar (docs/benchmarks.md).
		if err := w.submit(); err != nil {
			return err
		}
	} else if len(w.pending) > 0 && time.Since(w.pendingSince) > flushAge {
		if err := w.submit(); err != nil {
			return err
		}
	}
	src, err := open()
	if err != nil {
		return &problemError{kind: "damaged", err: fmt.Errorf("%s: %w", winPath, err)}
	}
	defer src.Close()
	if src.Size() != e.Size {
		return &problemError{kind: "damaged", err: fmt.Errorf("%s: the file is %d bytes now but was listed with %d: %w", winPath, src.Size(), e.Size, store.ErrChanged)}
	}
	tmp := tmpNameFor(name)
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(d.fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	})
	if err != nil {
		if isFatalWriteErr(err) {
			return &fatalError{fmt.Errorf("creating %s/%s: %w", w.dest, rel, err)}
		}
		return problem("failed", "%s: cannot create a file in %s/%s: %v", winPath, w.dest, d.rel, err)
	}
	out := os.NewFile(uintptr(fd), w.dest+"/"+joinRel(d.rel, tmp))
	n, cerr := w.copyData(out, src, e.Size)
	// The rename is the commit point: whatever is under the real name
	// must be whole, times included. The times are set on the temporary
	// file, before its data is made durable and it is renamed, so a run
	// killed right after the rename leaves a file that --skip-existing
	// recognises (same size and time), not one with the time of the
	// write, which it would call a conflict. They are set again after
	// the rename (where a failure is counted): fusefat stamps the time of
	// the rename on the new name, so there the window stays.
	if cerr == nil {
		futimens(fd, fileTimes(e))
	}
	if cerr == nil && w.perFileSync {
		if serr := out.Sync(); serr != nil && !errors.Is(serr, unix.EINVAL) {
			cerr = &fatalError{fmt.Errorf("writing %s/%s: %w", w.dest, rel, serr)}
		}
	}
	var st unix.Stat_t
	if cerr == nil {
		if err := unix.Fstat(fd, &st); err != nil {
			cerr = &fatalError{fmt.Errorf("writing %s/%s: %w", w.dest, rel, err)}
		}
	}
	if err := out.Close(); err != nil && cerr == nil {
		cerr = &fatalError{fmt.Errorf("writing %s/%s: %w", w.dest, rel, err)}
	}
	if cerr != nil {
		var fe *fatalError
		var pe *problemError
		if errors.As(cerr, &fe) || errors.Is(cerr, context.Canceled) || errors.Is(cerr, context.DeadlineExceeded) {
			unix.Unlinkat(d.fd, tmp, 0)
			return cerr
		}
		if errors.As(cerr, &pe) {
			unix.Unlinkat(d.fd, tmp, 0)
			return &problemError{kind: pe.kind, err: fmt.Errorf("%s: %w", winPath, pe.err)}
		}
		// The source is damaged: keep what could be read, never under the
		// real name; unless the batch in flight stopped the run before it.
		if serr := w.settle(); serr != nil {
			unix.Unlinkat(d.fd, tmp, 0)
			return serr
		}
		pe = &problemError{kind: "damaged", err: fmt.Errorf("%s: %w (%d of %d bytes read)", winPath, cerr, n, e.Size)}
		kept := name + DamagedSuffix
		if len(kept) <= 255 && n > 0 && renameNoReplace(d.fd, tmp, kept, w.opts.Overwrite) == nil {
			pe.kept = joinRel(d.rel, kept)
		} else {
			unix.Unlinkat(d.fd, tmp, 0)
		}
		return pe
	}
	dfd, err := unix.Dup(d.fd)
	if err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return &fatalError{err}
	}
	if len(w.pending) == 0 {
		w.pendingSince = time.Now()
	}
	w.pending = append(w.pending, pendingOp{dirfd: dfd, tmp: tmp, name: name, rel: rel, winPath: winPath, e: e, dev: st.Dev, ino: st.Ino, dirFd: -1})
	w.pendingBytes += e.Size
	if w.linkByPath {
		w.pendingLinks[linkKey(e.StorePath)] = true
	} else if !w.opts.HardlinkCopy && e.LinkID != 0 && e.Nlink != 1 {
		w.pendingLinks[e.LinkID] = true
	}
	if len(w.pending) >= flushFiles || w.pendingBytes >= flushBytes || e.Size >= bigFile {
		// A big file closes its batch at once: its data is flushed while
		// the next files are written.
		return w.submit()
	}
	return nil
}
