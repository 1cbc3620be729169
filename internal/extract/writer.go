package extract

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"
	"unsafe"

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
	ctx      context.Context
	dest     string
	tgt      *Target
	opts     *Options
	res      *Result
	stack    []*wdir
	links    map[uint64]linkRec
	forbid   []string // written slash paths below DEST that are source store roots
	lockFd   int
	noXattr  bool // the target refused user.* xattrs
	progress func(files, bytes int64)
	buf      []byte   // one read of a small file
	raBufs   [][]byte // the read-ahead buffers (startReadAhead)

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

// validName rejects names that could leave the folder they are created in.
func validName(n string) error {
	switch {
	case n == "", n == ".", n == "..":
		return fmt.Errorf("unsafe name %q", n)
	case strings.ContainsAny(n, "/\x00"):
		return fmt.Errorf("unsafe name %q (holds a slash or NUL)", n)
	}
	return nil
}

// outName chooses the name written for a store name in folder d, records
// it, and reports escapes and collisions.
func (w *writer) outName(d *wdir, orig, winPath string, folder bool) (string, error) {
	if err := validName(orig); err != nil {
		return "", problem("refused", "%s: %v: not extracted", winPath, err)
	}
	name := orig
	if prev, ok := d.taken[foldKey(orig)]; folder && ok && prev == orig {
		// The same folder name again: a restore mapping (--map-user,
		// --map-drive) merges two store folders into one DEST folder.
		// Files never merge: a second file of the same name is a conflict.
		return orig, nil
	}
	if w.tgt.WindowsNames {
		if d.taken == nil {
			d.taken = map[string]string{}
		}
		out, escaped, collided, ok := escapeUnique(orig, w.tgt.ASCIIOnly, func(n string) bool { _, t := d.taken[foldKey(n)]; return t })
		if !ok {
			return "", problem("refused", "%s: the name appears twice in the store folder: not extracted", winPath)
		}
		d.taken[foldKey(out)] = orig
		name = out
		rel := joinRel(d.rel, out)
		if collided {
			w.res.Collisions = append(w.res.Collisions, Rename{Path: winPath, Written: rel})
			w.report("collision", winPath, "differs only in case from a name already written in its folder; written as "+rel)
		} else if escaped {
			w.res.Escaped = append(w.res.Escaped, Rename{Path: winPath, Written: rel})
			w.report("escaped", winPath, "written as "+rel)
		}
	}
	if len(name) > 255 {
		return "", problem("failed", "%s: the name is %d bytes long, more than the target allows (255): not extracted", winPath, len(name))
	}
	rel := joinRel(d.rel, name)
	for _, f := range w.forbid {
		if under(rel, f, w.tgt.WindowsNames) {
			return "", problem("refused", "%s: would be written to %s/%s, inside the source store: not extracted", winPath, w.dest, rel)
		}
	}
	return name, nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// under reports whether rel is f or lies below it.
func under(rel, f string, fold bool) bool {
	if fold {
		rel, f = foldKey(rel), foldKey(f)
	}
	return rel == f || strings.HasPrefix(rel, f+"/")
}

func (w *writer) report(kind, path, msg string) {
	if w.opts.Notice != nil {
		w.opts.Notice(kind, path, msg)
	}
}

// enter makes the writer's current folder DEST/comps..., creating folders
// as needed. metas[i] (may be nil) is the store folder comps[i] came from.
// winPaths[i] is its Windows path, for messages.
func (w *writer) enter(comps []string, metas []*store.Entry, winPaths []string) (*wdir, error) {
	// Keep the common prefix of the stack.
	keep := 1
	for keep < len(w.stack) && keep-1 < len(comps) && w.stack[keep].orig == comps[keep-1] {
		keep++
	}
	for len(w.stack) > keep {
		w.pop()
	}
	for i := keep - 1; i < len(comps); i++ {
		parent := w.stack[len(w.stack)-1]
		name, err := w.outName(parent, comps[i], winPaths[i], true)
		if err != nil {
			return nil, err
		}
		rel := joinRel(parent.rel, name)
		created := true
		if err := unix.Mkdirat(parent.fd, name, 0o755); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				if isFatalWriteErr(err) {
					return nil, &fatalError{fmt.Errorf("creating folder %s/%s: %w", w.dest, rel, err)}
				}
				return nil, problem("failed", "%s: cannot create folder %s/%s: %v", winPaths[i], w.dest, rel, err)
			}
			created = false
		}
		fd, err := retryEINTR(func() (int, error) {
			return unix.Openat(parent.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return nil, problem("conflict", "%s: %s/%s already exists and is not a folder (a file or a symlink): nothing is written through it; move it away and rerun", winPaths[i], w.dest, rel)
			}
			return nil, problem("failed", "%s: cannot open folder %s/%s: %v", winPaths[i], w.dest, rel, err)
		}
		if created {
			w.res.Dirs++
		} else if !w.seen[rel] {
			// Only once per folder: the temporary files of this run (pending
			// or in flight) are not stale.
			w.cleanStale(fd, rel)
		}
		if w.seen == nil {
			w.seen = map[string]bool{}
		}
		w.seen[rel] = true
		w.stack = append(w.stack, &wdir{orig: comps[i], name: name, rel: rel, fd: fd, meta: metas[i]})
	}
	// A folder entered again (resumed run) still gets its metadata.
	top := w.stack[len(w.stack)-1]
	if len(comps) > 0 && top.meta == nil {
		top.meta = metas[len(metas)-1]
	}
	return top, nil
}

// isTmpName reports whether a name is one of our temporary files.
func isTmpName(n string) bool {
	i := strings.LastIndex(n, tmpMarker)
	if !strings.HasPrefix(n, ".") || i < 0 || len(n)-i-len(tmpMarker) != 8 {
		return false
	}
	for _, c := range []byte(n[i+len(tmpMarker):]) {
		if !isHex(c) {
			return false
		}
	}
	return true
}

// cleanStale removes temporary files a killed run left in a folder that
// already existed. It is safe because the lock in DEST keeps a second
// extract out.
func (w *writer) cleanStale(fd int, rel string) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(dup), w.dest+"/"+rel)
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if !isTmpName(n) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if unix.Unlinkat(fd, n, 0) == nil {
			w.res.StaleTempsRemoved++
		}
	}
}

func tmpNameFor(name string) string {
	base := name
	if len(base) > 200 {
		cut := 200
		for cut > 0 && base[cut]&0xC0 == 0x80 {
			cut-- // do not split a UTF-8 sequence
		}
		base = base[:cut]
	}
	return fmt.Sprintf(".%s%s%08x", base, tmpMarker, rand.Uint32())
}

// existing looks at what is already at name in d. It returns done=true
// when the entry must not be written (skipped because identical).
func (w *writer) existing(d *wdir, name string, e *store.Entry, winPath string) (done bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, problem("failed", "%s: cannot look at %s/%s: %v", winPath, w.dest, joinRel(d.rel, name), err)
	}
	rel := joinRel(d.rel, name)
	isReg := st.Mode&unix.S_IFMT == unix.S_IFREG
	if w.opts.SkipExisting && isReg && st.Size == e.Size && sameTime(st.Mtim.Nano(), e.MtimeNs, w.tgt.TimeGranularity) {
		w.res.SkippedExisting++
		w.rememberLink(e, rel, st.Dev, st.Ino)
		return true, nil
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return false, problem("conflict", "%s: %s/%s is a folder: the file is not extracted; move the folder away and rerun", winPath, w.dest, rel)
	case w.opts.Overwrite:
		return false, nil
	case w.opts.SkipExisting:
		return false, problem("conflict", "%s: %s/%s already exists with another size or time: not overwritten; pass --overwrite to replace it", winPath, w.dest, rel)
	}
	return false, problem("conflict", "%s: %s/%s already exists: nothing was overwritten; rerun with --skip-existing to keep existing files and resume, or --overwrite to replace them", winPath, w.dest, rel)
}

func sameTime(a, b int64, gran time.Duration) bool {
	d := a - b
	if d < 0 {
		d = -d
	}
	return d == 0 || d < int64(gran) || (gran > time.Nanosecond && d <= int64(gran))
}

func (w *writer) rememberLink(e *store.Entry, rel string, dev, ino uint64) {
	if w.opts.HardlinkCopy || e.LinkID == 0 || e.Nlink == 1 {
		return
	}
	if _, ok := w.links[e.LinkID]; !ok {
		w.links[e.LinkID] = linkRec{rel: rel, dev: dev, ino: ino}
	}
}

// placeName moves the finished temporary file tmp to name: refusing to
// replace anything unless --overwrite.
func (w *writer) placeName(dirfd int, rel, tmp, name, winPath string) error {
	err := renameNoReplace(dirfd, tmp, name, w.opts.Overwrite)
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		if errors.Is(err, unix.EEXIST) {
			return problem("conflict", "%s: %s/%s appeared while it was extracted: not overwritten", winPath, w.dest, rel)
		}
		if isFatalWriteErr(err) {
			return &fatalError{fmt.Errorf("renaming into %s/%s: %w", w.dest, rel, err)}
		}
		return problem("failed", "%s: cannot create %s/%s: %v", winPath, w.dest, rel, err)
	}
	return nil
}

// renameNoReplace renames old to name in the folder dfd, refusing to
// replace an existing name unless replace.
func renameNoReplace(dfd int, old, name string, replace bool) error {
	if replace {
		return unix.Renameat(dfd, old, dfd, name)
	}
	err := unix.Renameat2(dfd, old, dfd, name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		// The file system has no RENAME_NOREPLACE (FUSE, CIFS): check, then
		// rename. The lock in DEST keeps other extracts out of the gap.
		var st unix.Stat_t
		if unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			return unix.EEXIST
		}
		return unix.Renameat(dfd, old, dfd, name)
	}
	return err
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

func splitRel(rel string) (dir, base string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// openRelDir opens a folder below DEST one component at a time, never
// following a symlink.
func (w *writer) openRelDir(rel string) (int, error) {
	fd, err := unix.Dup(w.stack[0].fd)
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return fd, nil
	}
	for _, c := range strings.Split(rel, "/") {
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}

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
	rel := joinRel(d.rel, name)
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
	if !w.opts.HardlinkCopy && e.LinkID != 0 && e.Nlink != 1 {
		w.pendingLinks[e.LinkID] = true
	}
	if len(w.pending) >= flushFiles || w.pendingBytes >= flushBytes || e.Size >= bigFile {
		// A big file closes its batch at once: its data is flushed while
		// the next files are written.
		return w.submit()
	}
	return nil
}

// fdFile is a source file that exposes its descriptor (directory stores):
// copy_file_range then moves the data inside the kernel.
type fdFile interface{ Fd() uintptr }

// Writeback is started on a file's data as it is written (see kick):
// every writebackChunk bytes, and at its end when it has writebackMin
// bytes or more. Smaller files are left to the batch's syncfs, which
// writes many of them together.
const (
	writebackChunk = 8 << 20
	writebackMin   = 1 << 20
	// readBuf is one read of the source. A file larger than that is read
	// (for an archive: decoded and verified) by a goroutine up to
	// readAhead reads ahead of the writes.
	readBuf   = 1 << 20
	readAhead = 6
)

// kick asks the kernel to start writing [off, off+n) of fd to disk now,
// without waiting for it (SYNC_FILE_RANGE_WRITE): the disk then works
// while the next data is decoded and written, and the batch's syncfs
// later finds little left to write. It is only a hint: durability still
// comes from the syncfs before the rename, so errors are ignored (a
// failing disk fails the syncfs). FUSE targets fsync each file anyway.
func (w *writer) kick(fd int, off, n int64) {
	if w.perFileSync || n <= 0 {
		return
	}
	unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// copyData copies size bytes of src to out, checking the context and
// reporting progress between chunks.
func (w *writer) copyData(out *os.File, src store.File, size int64) (int64, error) {
	var off, kicked int64
	dfd := int(out.Fd())
	// wrote accounts for n bytes written at off: progress, and writeback
	// started every writebackChunk bytes.
	wrote := func(n int) {
		off += int64(n)
		w.progress(0, int64(n))
		if off-kicked >= writebackChunk {
			w.kick(dfd, kicked, off-kicked)
			kicked = off
		}
	}
	if ff, ok := src.(fdFile); ok && size > 0 && !hasHoles(int(ff.Fd()), size) {
		sfd := int(ff.Fd())
		for off < size {
			if err := w.ctx.Err(); err != nil {
				return off, err
			}
			soff := off
			n, err := unix.CopyFileRange(sfd, &soff, dfd, nil, int(min(copyChunk, size-off)), 0)
			if err != nil {
				if off == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) ||
					errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF)) {
					break // not possible between these file systems: copy through memory
				}
				if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
					continue
				}
				if isFatalWriteErr(err) && !errors.Is(err, unix.EIO) {
					return off, &fatalError{err}
				}
				if errors.Is(err, unix.EFBIG) {
					return off, problem("failed", "the file is too large for the target file system: %v", err)
				}
				return off, fmt.Errorf("reading the store: %w", err)
			}
			if n == 0 {
				return off, fmt.Errorf("the file ended at %d bytes, shorter than listed: %w", off, store.ErrChanged)
			}
			wrote(n)
		}
	}
	// Through memory: one read for a small file, else a read-ahead
	// goroutine, so that decoding the next piece and writing this one use
	// both CPUs, as zstd and tar do in a pipeline.
	var next func(want int) ([]byte, error)
	if size-off <= readBuf {
		if w.buf == nil {
			w.buf = make([]byte, readBuf)
		}
		next = func(want int) ([]byte, error) {
			n, err := src.ReadAt(w.buf[:want], off)
			return w.buf[:n], err
		}
	} else {
		ra := w.startReadAhead(src, off, size)
		defer ra.stop()
		next = ra.next
	}
	holes := false // a block of zeros was skipped, not written
	for off < size {
		if err := w.ctx.Err(); err != nil {
			return off, err
		}
		want := int(min(readBuf, size-off))
		b, err := next(want)
		if len(b) == want && allZero(b) {
			// Left as a hole: a sparse file stays sparse (an archive
			// stores holes as zeros), and the file is cut to its size
			// at the end.
			if _, serr := out.Seek(int64(len(b)), io.SeekCurrent); serr != nil {
				return off, fmt.Errorf("writing to the target: %w", serr)
			}
			holes = true
			wrote(len(b))
			continue
		}
		if len(b) > 0 {
			if _, werr := out.Write(b); werr != nil {
				if isFatalWriteErr(werr) {
					return off, &fatalError{werr}
				}
				// The destination refused this file (EFBIG on FAT, ...).
				return off, problem("failed", "writing to the target failed: %v", werr)
			}
			wrote(len(b))
		}
		if len(b) < want {
			if err == nil || err == io.EOF {
				return off, fmt.Errorf("the file ended at %d bytes, shorter than listed: %w", off, store.ErrChanged)
			}
			return off, err
		}
	}
	if holes {
		if err := out.Truncate(off); err != nil {
			if isFatalWriteErr(err) {
				return off, &fatalError{err}
			}
			return off, problem("failed", "writing to the target failed: %v", err)
		}
	}
	if size >= writebackMin {
		w.kick(dfd, kicked, off-kicked)
	}
	return off, nil
}

// hasHoles reports whether the source file fd of size bytes has a hole
// (SEEK_HOLE before its end). copy_file_range between two file systems
// writes holes out as zeros, so such a file is copied through memory,
// where blocks of zeros are skipped.
func hasHoles(fd int, size int64) bool {
	h, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	return err == nil && h < size
}

// zeroBlock is compared against, a piece at a time.
var zeroBlock [64 << 10]byte

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// readAheader reads a file's pieces in order on its own goroutine.
type readAheader struct {
	ch   chan piece  // pieces read, in order; closed after the last
	free chan []byte // buffers written out, for the reader to fill again
	quit chan struct{}
	done chan struct{}
	held []byte // the piece the writer holds, freed at the next call
}

type piece struct {
	b   []byte
	err error
}

// startReadAhead starts reading src from off to size in readBuf pieces.
// The buffers (w.raBufs) are reused from file to file: stop waits for the
// reader, so no buffer is in use after it.
func (w *writer) startReadAhead(src store.File, off, size int64) *readAheader {
	if w.raBufs == nil {
		for i := 0; i < readAhead+1; i++ {
			w.raBufs = append(w.raBufs, make([]byte, readBuf))
		}
	}
	r := &readAheader{ch: make(chan piece, readAhead), free: make(chan []byte, len(w.raBufs)),
		quit: make(chan struct{}), done: make(chan struct{})}
	for _, b := range w.raBufs {
		r.free <- b
	}
	go func() {
		defer close(r.done)
		defer close(r.ch)
		for off < size {
			var b []byte
			select {
			case b = <-r.free:
			case <-r.quit:
				return
			}
			want := int(min(readBuf, size-off))
			n, err := src.ReadAt(b[:want], off)
			select {
			case r.ch <- piece{b: b[:n], err: err}:
			case <-r.quit:
				return
			}
			if n < want {
				return // the writer stops at a short read
			}
			off += int64(n)
		}
	}()
	return r
}

// next returns the next piece (want bytes unless the file is short) and
// hands the previous one back to the reader.
func (r *readAheader) next(want int) ([]byte, error) {
	if r.held != nil {
		r.free <- r.held[:cap(r.held)]
		r.held = nil
	}
	p, ok := <-r.ch
	if !ok {
		return nil, io.ErrUnexpectedEOF
	}
	r.held = p.b
	return p.b, p.err
}

// stop ends the reader and waits for it.
func (r *readAheader) stop() {
	close(r.quit)
	<-r.done
}

// applyMeta sets the times (ns precision) and, where the target keeps
// them, the creation time and Windows attributes of a written file or
// folder. fd is an open descriptor of it, or -1. Failures are counted and
// reported, never fatal.
func (w *writer) applyMeta(dirfd int, name string, fd int, e *store.Entry, rel string) {
	ts := []unix.Timespec{unix.NsecToTimespec(e.AtimeNs), unix.NsecToTimespec(e.MtimeNs)}
	var err error
	if fd >= 0 {
		err = futimens(fd, ts)
	} else {
		err = unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		w.metaFailed(rel, "setting times", err)
	}
	if !e.HasBtime && !e.HasWinAttr {
		return
	}
	if !w.tgt.NTFS3G && w.noXattr {
		w.res.MetaUnsupported++
		return
	}
	ofd := fd
	if ofd < 0 {
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
		ofd, err = unix.Openat(dirfd, name, flags, 0)
		if err != nil {
			w.metaFailed(rel, "opening to set attributes", err)
			return
		}
		defer unix.Close(ofd)
	}
	set := func(attr string, val []byte) {
		err := unix.Fsetxattr(ofd, attr, val, 0)
		if err == nil {
			return
		}
		if !w.tgt.NTFS3G && (errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)) {
			w.noXattr = true
			return
		}
		w.metaFailed(rel, "setting "+attr, err)
	}
	if w.tgt.NTFS3G {
		var b [8]byte
		if e.HasBtime {
			binary.BigEndian.PutUint64(b[:], store.UnixNsToFiletime(e.BtimeNs))
			set("system.ntfs_crtime_be", b[:8])
		}
		if e.HasWinAttr {
			binary.BigEndian.PutUint32(b[:4], e.WinAttrs)
			set("system.ntfs_attrib_be", b[:4])
		}
		return
	}
	if e.HasBtime {
		set(XattrCrtime, []byte(time.Unix(0, e.BtimeNs).UTC().Format(time.RFC3339Nano)))
	}
	if e.HasWinAttr && !w.noXattr {
		set(XattrAttrs, []byte(fmt.Sprintf("0x%08x", e.WinAttrs)))
	}
	if w.noXattr {
		w.res.MetaUnsupported++
	}
}

// futimens sets the times of an open file or folder (utimensat with a
// NULL path), at full nanosecond precision.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// The xattrs that keep Windows metadata on targets other than ntfs-3g.
const (
	XattrCrtime = "user.usmtkit.crtime" // creation time, RFC 3339 UTC with ns
	XattrAttrs  = "user.usmtkit.attrs"  // FILE_ATTRIBUTE_* bits, "0x%08x"
)

func (w *writer) metaFailed(rel, what string, err error) {
	w.res.MetaFailures++
	if w.res.MetaError == "" {
		w.res.MetaError = fmt.Sprintf("%s on %s/%s: %v", what, w.dest, rel, err)
	}
}
