package extract

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// syncBatch makes a batch's temporary files durable: syncfs of DEST's file
// system. Tests replace it to check that no name of the batch is visible
// before it returns.
var syncBatch = func(fd int, ops []pendingOp) error { return unix.Syncfs(fd) }

// A batch is closed (handed to the flusher) when it holds flushFiles
// files or flushBytes bytes, when it is older than flushAge, and before and
// after a file of bigFile bytes or more: a big file is its own batch, made
// durable and renamed while the next files are written. With one batch in
// flight and one being written, a run killed at any point leaves at most
// two batches under temporary names; a resumed run writes them again and
// skips everything renamed before.
const (
	flushFiles = 1024
	flushBytes = 512 << 20
	flushAge   = 2 * time.Second
	bigFile    = 16 << 20
)

// flush makes the pending files durable and renames them to their real
// names (through the flusher), and waits until that is done and every
// batch before is collected. It returns the first stop error.
func (w *writer) flush() error {
	if err := w.submit(); err != nil {
		return err
	}
	return w.settle()
}

// submit closes the pending batch: it waits for the batch in flight (at
// most one), then hands the pending ops to the flusher and returns at
// once. On FUSE targets (perFileSync) the batch is done right here, as
// before. After a stop, the pending temporary files are removed instead:
// files after the stop are not extracted.
func (w *writer) submit() error {
	if err := w.settle(); err != nil {
		w.discard()
		return err
	}
	if len(w.pending) == 0 {
		return nil
	}
	if w.stopErr != nil {
		w.discard()
		return nil
	}
	b := &batch{ops: w.pending, rootFd: -1, errs: make([]error, len(w.pending)), done: make(chan struct{})}
	w.pending = nil
	w.pendingBytes = 0
	w.pendingLinks, w.inflightLinks = w.inflightLinks, w.pendingLinks
	hasFiles := false
	for _, op := range b.ops {
		hasFiles = hasFiles || op.dirFd < 0
	}
	var dupErr error
	if hasFiles && !w.perFileSync {
		if b.rootFd, dupErr = unix.Dup(w.stack[0].fd); dupErr != nil {
			b.rootFd = -1
		}
	}
	w.inflight = b
	if dupErr != nil {
		b.syncErr = &fatalError{fmt.Errorf("flushing written files to %s: %w", w.dest, dupErr)}
		w.runBatch(b)
	} else if w.perFileSync {
		w.runBatch(b)
	} else {
		go w.runBatch(b)
	}
	return nil
}

// discard removes the pending temporary files (the run stopped before
// them) and sets the pending folders' times. Nothing is in flight.
func (w *writer) discard() {
	for _, op := range w.pending {
		if op.dirFd >= 0 {
			w.applyMeta(op.dirfd, op.name, op.dirFd, op.e, op.rel)
			unix.Close(op.dirFd)
		} else {
			unix.Unlinkat(op.dirfd, op.tmp, 0)
		}
		unix.Close(op.dirfd)
	}
	w.pending = w.pending[:0]
	w.pendingBytes = 0
	clear(w.pendingLinks)
}

// runBatch is the flusher: one syncfs for the batch, then the renames,
// then the files' and folders' metadata, in order. It touches only the
// batch and (applyMeta) the metadata counters.
func (w *writer) runBatch(b *batch) {
	defer close(b.done)
	if b.rootFd >= 0 {
		if err := syncBatch(b.rootFd, b.ops); err != nil {
			b.syncErr = &fatalError{fmt.Errorf("flushing written files to %s: %w", w.dest, err)}
		}
		unix.Close(b.rootFd)
		b.rootFd = -1
	}
	for i, op := range b.ops {
		if op.dirFd >= 0 {
			w.applyMeta(op.dirfd, op.name, op.dirFd, op.e, op.rel)
			unix.Close(op.dirFd)
			unix.Close(op.dirfd)
			continue
		}
		if b.syncErr != nil {
			unix.Unlinkat(op.dirfd, op.tmp, 0)
			unix.Close(op.dirfd)
			continue
		}
		err := w.placeName(op.dirfd, op.rel, op.tmp, op.name, op.winPath)
		if err == nil {
			w.applyMeta(op.dirfd, op.name, -1, op.e, op.rel)
		}
		b.errs[i] = err
		unix.Close(op.dirfd)
	}
}

// settle waits for the batch in flight, if any, and records what it did:
// files extracted, problems (through problemFn, in file order), progress,
// the hard-link table. It returns the batch's stop error (the first
// problem without --continue, or a failed syncfs) once; later batches are
// then discarded.
func (w *writer) settle() error {
	b := w.inflight
	if b == nil {
		return nil
	}
	<-b.done
	w.inflight = nil
	clear(w.inflightLinks)
	var stop error
	for i, op := range b.ops {
		if op.dirFd >= 0 || b.syncErr != nil {
			continue
		}
		if err := b.errs[i]; err == nil {
			w.rememberLink(op.e, op.rel, op.dev, op.ino)
			w.res.Files++
			w.res.Bytes += op.e.Size
			w.progress(1, 0)
		} else if perr := w.problemFn(err, op.e, op.winPath); perr != nil && stop == nil {
			stop = perr
		}
	}
	if b.syncErr != nil {
		stop = b.syncErr
	}
	if stop != nil && w.stopErr == nil {
		w.stopErr = stop
	}
	return stop
}

// poll collects the batch in flight if the flusher is done with it.
func (w *writer) poll() error {
	if w.inflight == nil {
		return nil
	}
	select {
	case <-w.inflight.done:
		return w.settle()
	default:
		return nil
	}
}
