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

// The safe writer. Every file and folder is created relative to a
// descriptor of its parent folder, which was itself opened with
// O_NOFOLLOW|O_DIRECTORY relative to its own parent, starting at DEST: a
// symlink planted anywhere in DEST is never followed, and no name with a
// slash, "." or ".." is ever handed to the kernel. Files are written under
// a temporary name, fsynced, and renamed into place, so a real name never
// holds a partial file.

const (
	tmpMarker = ".usmtkit-tmp-"
	// DamagedSuffix is appended to the name of a file whose source was
	// damaged: the part that could be read is kept under NAME.usmtkit-damaged,
	// never under the real name.
	DamagedSuffix = ".usmtkit-damaged"
	lockName      = ".usmtkit-extract.lock"
	copyChunk     = 8 << 20
)

// wdir is one folder of DEST on the writer's stack.
type wdir struct {
	orig  string // the name the folder has in the store ("" for DEST)
	name  string // the name written
	rel   string // slash path of written names below DEST ("" for DEST)
	fd    int
	meta  *store.Entry      // times and attributes to set when the folder is left
	taken map[string]string // Windows-name targets: folded written name -> store name
}

// linkRec remembers where the first name of a hard-link group was written.
type linkRec struct {
	rel      string // written slash path below DEST
	dev, ino uint64
}

type writer struct {
	ctx     context.Context
	dest    string
	tgt     *Target
	opts    *Options
	res     *Result
	stack   []*wdir
	links   map[uint64]linkRec
	forbid  []string // written slash paths below DEST that are source store roots
	lockFd  int
	noXattr bool // the target refused user.* xattrs
	// linkByPath (salvage): hard links come as tar link entries naming the
	// store path of their first name, not as link groups. Every file
	// written is remembered by the hash of its store path (linkKey), with
	// its written path only when it differs from the store path: about 50
	// bytes a file.
	linkByPath bool
	progress   func(files, bytes int64)
	buf        []byte   // one read of a small file
	raBufs     [][]byte // the read-ahead buffers (startReadAhead)

	// Files are made durable in batches: written under temporary names,
	// then one syncfs for the batch, then renamed (see flush). On FUSE
	// targets, where syncfs may not reach the file system daemon, each
	// file is fsynced instead (perFileSync) and the batch only renames.
	//
	// A closed batch is handed to a background flusher goroutine (one
	// batch in flight at most) that does syncfs, renames and metadata
	// while this goroutine writes the next batch's temporary files. The
	// flusher only makes system calls on the batch's own descriptors and
	// sets the batch's results, plus the metadata counters in applyMeta
	// (never run here while a batch is in flight: see pop); everything
	// else (counters, problems, progress, the hard-link table, the stop
	// error) is updated here when the batch is collected (settle).
	perFileSync   bool
	pending       []pendingOp
	pendingBytes  int64
	pendingLinks  map[uint64]bool // link groups whose first name is in pending
	pendingSince  time.Time
	inflight      *batch
	inflightLinks map[uint64]bool // link groups whose first name is in inflight
	stopErr       error           // a batch stopped the run: later batches are discarded
	seen          map[string]bool // folders (rel) created or cleaned of stale temps in this run
	// problemFn records a per-file problem found while flushing; it
	// returns the error that stops the run (without --continue), or nil.
	problemFn func(err error, e *store.Entry, winPath string) error
}

// pendingOp is a finished temporary file waiting for its rename, or a
// folder waiting for its times (after the renames into it).
type pendingOp struct {
	dirfd    int // dup of the folder's descriptor (owned)
	tmp      string
	name     string
	rel      string
	winPath  string
	e        *store.Entry
	dev, ino uint64
	dirFd    int // for folder ops: the folder's own descriptor (owned); -1 for files
}

// batch is a closed set of pending ops handed to the flusher. ops, rootFd
// and the ops' descriptors are owned by the flusher until done is closed;
// syncErr and errs are set by the flusher and read after done.
type batch struct {
	ops     []pendingOp
	rootFd  int // dup of DEST for syncfs (owned), or -1: no syncfs
	syncErr error
	errs    []error // per op: why the file could not be renamed into place
	done    chan struct{}
}

// problemError is a per-file problem: the file is not extracted, the run
// goes on with --continue and stops without it.
type problemError struct {
	kind string // "damaged", "failed", "conflict", "refused"
	err  error
	kept string // DEST-relative path of kept partial data (damaged only)
}

func (p *problemError) Error() string { return p.err.Error() }
func (p *problemError) Unwrap() error { return p.err }

func problem(kind string, format string, a ...any) error {
	return &problemError{kind: kind, err: fmt.Errorf(format, a...)}
}

// fatalError stops the run whatever --continue says: DEST is full,
// read-only or failing.
type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

func isFatalWriteErr(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.EIO)
}

func retryEINTR[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err != unix.EINTR {
			return v, err
		}
	}
}

// openDest opens (creating it if needed) the DEST folder and takes the
// extraction lock in it.
func openDest(dest string) (int, error) {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return -1, fmt.Errorf("creating the destination %s: %w; check the path and that the disk is mounted read-write", dest, err)
	}
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, fmt.Errorf("opening the destination %s: %w", dest, err)
	}
	return fd, nil
}

func (w *writer) lock() error {
	fd, err := retryEINTR(func() (int, error) {
		return unix.Openat(w.stack[0].fd, lockName, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	})
	if err != nil {
		return fmt.Errorf("creating the lock file %s/%s: %w; check that the destination is writable", w.dest, lockName, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			unix.Close(fd)
			return fmt.Errorf("another usmtkit extract is writing into %s; wait for it to finish (or choose another destination)", w.dest)
		}
		// The file system has no locks (some FUSE targets): go on unlocked.
	}
	w.lockFd = fd
	return nil
}

func (w *writer) unlock() {
	if w.lockFd > 0 {
		unix.Unlinkat(w.stack[0].fd, lockName, 0)
		unix.Close(w.lockFd)
		w.lockFd = -1
	}
}

// close leaves every folder (setting their times) and releases DEST.
func (w *writer) close() error {
	for len(w.stack) > 1 {
		w.pop()
	}
	err := w.flush()
	w.unlock()
	if len(w.stack) == 1 {
		unix.Close(w.stack[0].fd)
		w.stack = nil
	}
	return err
}

// pop leaves the top folder: its times are set once every file renamed
// into it is in place (now, or at the next flush).
func (w *writer) pop() {
	d := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	parent := w.stack[len(w.stack)-1]
	if d.meta == nil {
		unix.Close(d.fd)
		return
	}
	if len(w.pending) == 0 && w.inflight == nil {
		w.applyMeta(parent.fd, d.name, d.fd, d.meta, d.rel)
		unix.Close(d.fd)
		return
	}
	// Files may still be renamed into the folder (pending or in flight):
	// its times are set after them, by the flusher.
	pfd, err := unix.Dup(parent.fd)
	if err != nil {
		unix.Close(d.fd)
		return
	}
	if len(w.pending) == 0 {
		w.pendingSince = time.Now()
	}
	w.pending = append(w.pending, pendingOp{dirfd: pfd, name: d.name, rel: d.rel, e: d.meta, dirFd: d.fd})
}
