package compress

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// Level is the compression level of an archive.
type Level int

const (
	// LevelDefault is about zstd -3: the ratio of a solid tar.zst within a
	// few percent, about 300 MB/s per core.
	LevelDefault Level = iota
	// LevelFastest is about zstd -1.
	LevelFastest
	// LevelBetter is about zstd -7: a few percent smaller, half the speed.
	LevelBetter
)

// String gives the name ParseLevel accepts.
func (l Level) String() string {
	switch l {
	case LevelFastest:
		return "fastest"
	case LevelBetter:
		return "better"
	default:
		return "default"
	}
}

// ParseLevel parses "fastest", "default" or "better".
func ParseLevel(s string) (Level, error) {
	switch strings.ToLower(s) {
	case "fastest":
		return LevelFastest, nil
	case "", "default":
		return LevelDefault, nil
	case "better":
		return LevelBetter, nil
	}
	return 0, fmt.Errorf("unknown compression level %q: use fastest, default or better", s)
}

func (l Level) zstd() zstd.EncoderLevel {
	switch l {
	case LevelFastest:
		return zstd.SpeedFastest
	case LevelBetter:
		return zstd.SpeedBetterCompression
	default:
		return zstd.SpeedDefault
	}
}

// WriteOptions configure Write.
type WriteOptions struct {
	Level Level
	// ChunkSize is the size of the independently compressed pieces files
	// are cut into: 0 means DefaultChunkSize (4 MiB); allowed
	// MinChunkSize..MaxChunkSize. Smaller chunks make random reads cheaper
	// and the archive slightly bigger.
	ChunkSize int
	// FrameSize is how much of a chunk one zstd frame holds: 0 means
	// DefaultFrameSize (128 KiB), or the chunk size when that is smaller;
	// allowed MinChunkSize..ChunkSize. A random read decodes the frames
	// it touches, not the whole chunk; the chunk stays the unit of the
	// TOC and its xxhash64. FrameSize equal to ChunkSize writes format
	// version 1 (one frame per chunk).
	FrameSize int
	// Threads is the number of chunks compressed at once; 0 means
	// GOMAXPROCS. At most Threads+2 chunks are in memory at a time.
	Threads int
	// Progress, when set, is called from one goroutine at most about ten
	// times a second and once at the end.
	Progress func(Progress)
	// TotalBytes and TotalFiles are passed through to Progress when the
	// caller knows them (from a prior index of the store); 0 means unknown.
	TotalBytes, TotalFiles int64
	// Encoder picks the zstd encoder of the data chunks: "" the fastest
	// built in (C zstd when cgo is available), EncoderGo or EncoderC. The
	// archive format is the same.
	Encoder string
}

// Progress is a snapshot of a running Write.
type Progress struct {
	BytesDone, BytesTotal int64 // file content bytes; total 0 when unknown
	FilesDone, FilesTotal int64 // regular files and hard links
	BytesOut              int64 // archive bytes written so far
}

// Problem is an entry Write could not archive as it was listed.
type Problem struct {
	Path string // store path
	Err  error
}

func (p Problem) String() string { return p.Path + ": " + p.Err.Error() }

// WriteResult is what Write did. The caller decides what the problem lists
// mean for its exit status (usmtkit exits 3 when any list is non-empty).
type WriteResult struct {
	Entries  int64 // TOC entries, the root included
	Files    int64
	Dirs     int64 // the root included
	Symlinks int64
	Links    int64  // hard links written as tar links (names after the first)
	BytesIn  int64  // file content bytes archived
	BytesOut int64  // archive size
	Encoder  string // the chunk encoder used: EncoderC or EncoderGo

	// Changed files were archived as they were read (with the size listed
	// by the walk: a shrunk file is zero-filled, a grown one cut), but they
	// changed while being read, so the copy may be inconsistent.
	Changed []Problem
	// Unreadable entries are not in the archive (a file whose read failed
	// midway is removed again; on a non-seekable output it is kept
	// zero-filled and marked incomplete in the TOC, so usmtkit reports it
	// as damaged).
	Unreadable []Problem
	// Skipped entries are kinds an archive does not hold (FIFOs, sockets,
	// devices).
	Skipped []Problem
	// WalkErrors are errors the store reported while listing.
	WalkErrors []Problem
	// Dropped counts problems not listed because a list reached
	// store.MaxProblems.
	Dropped int64
}

// Incomplete reports whether anything was not archived exactly as listed.
func (r *WriteResult) Incomplete() bool {
	return len(r.Changed)+len(r.Unreadable)+len(r.Skipped)+len(r.WalkErrors) > 0 || r.Dropped > 0
}

func (r *WriteResult) add(list *[]Problem, path string, err error) {
	if len(*list) >= store.MaxProblems {
		r.Dropped++
		return
	}
	*list = append(*list, Problem{Path: path, Err: err})
}

// job kinds, processed by the sink in submission order.
const (
	jobEntry = iota // add a TOC entry; write its header frame (if any)
	jobChunk        // write a data frame and add its chunk record
	jobRaw          // write a frame that is in no TOC record (EOA)
	jobAbort        // remove the last entry and its frames again
	jobFlag         // or a flag into the last entry
)

type job struct {
	kind int
	done chan struct{} // closed by the worker; nil when out is ready
	in   []byte
	out  []byte
	err  error     // the encoder's failure
	buf  *chunkBuf // returned to the pool after writing
	ent  *tocEntry
	idx  uint32 // expected add-order index (jobEntry), consistency check
	// chunk bookkeeping
	uSize    uint32
	sum      uint64 // XXH64 of the logical bytes (TOC)
	frameSum uint64 // XXH64 of in, the logical bytes and the tar padding
	flag     uint8
	last     bool // the last chunk of a file: count it in progress
	hole     bool // a full chunk inside a hole of a sparse file: zeros, not read
}

type chunkBuf struct {
	in  []byte // chunkSize + 511 (room for the tar padding)
	out []byte
}

// writer is one Write call.
type writer struct {
	ctx       context.Context
	src       store.Store
	opts      WriteOptions
	chunkSize int
	frameSize int           // opts.FrameSize
	enc       *zstd.Encoder // headers, EOA, TOC: frames with checksum
	chunkEnc  chunkEncoder  // data chunks
	res       *WriteResult

	work    chan *job
	ordered chan *job
	free    chan *chunkBuf
	nbufs   int
	maxBufs int

	canRewind bool
	zeroOnce  sync.Once
	zeroEnc   []byte
	zeroErr   error

	zeroSumOnce sync.Once
	zeroXXH     uint64

	// producer state (the Walk callback goroutine)
	digest  xxhash.Digest
	count   uint32 // entries submitted and not aborted
	stack   []dirRef
	links   map[uint64]linkRef
	tw      bytes.Buffer
	hdrBuf  []byte
	rootSet bool

	// sink state
	sinkErr   error
	sinkMu    sync.Mutex
	failed    chan struct{}
	failOnce  sync.Once
	toc       tocBuilder
	off       int64
	lastMark  tocMark
	lastOff   int64
	bytesDone int64
	filesDone int64
	lastProg  time.Time
	wbDone    int64 // output bytes handed to startWriteback
	bw        archiveOut
	out       *os.File
}

type dirRef struct {
	path string
	idx  uint32
}

type linkRef struct {
	path string
	idx  uint32
	size int64
}

// Write writes src as an archive to out, which must be empty and at offset
// 0 (a regular file) or a pipe. Entries come from src.Walk; the footer is
// written last, after the rest is flushed and fsynced, so an interrupted
// Write never leaves a file that opens as a valid archive. Use CreateFile
// to write a file atomically.
func Write(ctx context.Context, out *os.File, src store.Store, opts WriteOptions) (*WriteResult, error) {
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize < MinChunkSize || opts.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("chunk size %d is out of range: use %d KiB to %d MiB", opts.ChunkSize, MinChunkSize>>10, MaxChunkSize>>20)
	}
	if opts.FrameSize == 0 {
		opts.FrameSize = min(DefaultFrameSize, opts.ChunkSize)
	}
	if opts.FrameSize < MinChunkSize || opts.FrameSize > opts.ChunkSize {
		return nil, fmt.Errorf("frame size %d is out of range: use %d KiB up to the chunk size (%d KiB)", opts.FrameSize, MinChunkSize>>10, opts.ChunkSize>>10)
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.GOMAXPROCS(0)
	}
	info := src.Info()
	if len(info.Kind) > tocKindFieldLen || len(info.Version) > tocKindFieldLen {
		return nil, fmt.Errorf("store kind %q / version %q too long for the archive header", info.Kind, info.Version)
	}
	w := &writer{
		ctx: ctx, src: src, opts: opts, chunkSize: opts.ChunkSize, frameSize: opts.FrameSize,
		res:     &WriteResult{},
		work:    make(chan *job, opts.Threads+2),
		ordered: make(chan *job, 256),
		maxBufs: opts.Threads + 2,
		links:   map[uint64]linkRef{},
		failed:  make(chan struct{}),
		out:     out,
	}
	w.free = make(chan *chunkBuf, w.maxBufs)
	w.toc = tocBuilder{kind: info.Kind, version: info.Version, chunkSize: uint32(opts.ChunkSize), createdNs: time.Now().UnixNano()}
	if w.frameSize < w.chunkSize {
		w.toc.frameSize = uint32(w.frameSize)
	}
	if fi, err := out.Stat(); err == nil && fi.Mode().IsRegular() {
		pos, err := out.Seek(0, io.SeekCurrent)
		if err != nil || pos != 0 {
			return nil, fmt.Errorf("writing the archive to %s: the output must be at offset 0", out.Name())
		}
		w.canRewind = true
	}
	// One encoder for the walk goroutine's header frames (and the EOA and
	// TOC), so they never wait behind a chunk; one per worker for chunks.
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(opts.Level.zstd()),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("starting the zstd encoder: %w", err)
	}
	w.enc = enc
	defer enc.Close()
	if w.chunkEnc, err = newChunkEncoderFor(opts.Encoder, opts.Level, opts.Threads); err != nil {
		return nil, fmt.Errorf("starting the zstd encoder: %w", err)
	}
	defer w.chunkEnc.close()
	w.res.Encoder = w.chunkEnc.name()
	w.bw = bufio.NewWriterSize(out, outBufSize)
	if w.canRewind {
		if d, ok := newDirectOut(out); ok {
			w.bw = d
			defer d.stop()
		}
	}

	var wg sync.WaitGroup
	for range opts.Threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range w.work {
				if j.hole || (len(j.in) == w.chunkSize && AllZero(j.in)) {
					// Sparse files and preallocated images: a zero chunk
					// always encodes to the same frame, so encode it once.
					var zero []byte
					zero, j.err = w.zeroFrame()
					j.out = append(j.out[:0], zero...)
				} else {
					j.out, j.err = w.encodeChunk(j.out[:0], j.in, j.frameSum)
				}
				close(j.done)
			}
		}()
	}
	sinkDone := make(chan struct{})
	go func() {
		defer close(sinkDone)
		w.sink()
	}()

	walkErr := src.Walk(ctx, w.visit)
	if walkErr == nil && !w.rootSet {
		walkErr = w.addRoot(&store.Entry{Type: store.TypeDir})
	}
	if walkErr == nil {
		// End of archive: the two zero blocks, one frame of their own.
		w.submit(&job{kind: jobRaw, out: w.enc.EncodeAll(make([]byte, 1024), nil)})
	}
	close(w.work)
	wg.Wait()
	close(w.ordered)
	<-sinkDone
	if walkErr == nil {
		walkErr = w.sinkErr
	}
	if walkErr == nil {
		walkErr = ctx.Err()
	}
	if walkErr != nil {
		if errors.Is(walkErr, errSinkFailed) {
			walkErr = w.sinkErr
		}
		return nil, walkErr
	}
	if err := w.finish(); err != nil {
		return nil, err
	}
	w.res.Entries = int64(w.toc.count())
	w.res.BytesOut = w.off
	w.progress(true)
	return w.res, nil
}

var errSinkFailed = errors.New("archive output failed")

// encodeChunk appends the frames of one chunk (its logical bytes and, for
// a file's last chunk, the tar padding) to dst: one frame per frameSize
// bytes, the last frame taking the rest. sum is the XXH64 of the whole
// chunk, the checksum of a chunk that is one frame.
func (w *writer) encodeChunk(dst, src []byte, sum uint64) ([]byte, error) {
	if len(src) <= w.frameSize {
		return w.chunkEnc.appendFrame(dst, src, sum)
	}
	for len(src) > 0 {
		n := min(w.frameSize, len(src))
		var err error
		if dst, err = w.chunkEnc.appendFrame(dst, src[:n], xxhash.Sum64(src[:n])); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return dst, nil
}

// chunkBound is the most encodeChunk makes of one chunk with its padding.
func (w *writer) chunkBound() int {
	n := w.chunkSize + 511
	frames := (n + w.frameSize - 1) / w.frameSize
	return frames * w.chunkEnc.bound(w.frameSize)
}

// zeroFrame is the encoding of one all-zero chunk.
func (w *writer) zeroFrame() ([]byte, error) {
	w.zeroOnce.Do(func() { w.zeroEnc, w.zeroErr = w.encodeChunk(nil, make([]byte, w.chunkSize), w.zeroSum()) })
	return w.zeroEnc, w.zeroErr
}

// zeroSum is the xxhash64 of one all-zero chunk.
func (w *writer) zeroSum() uint64 {
	w.zeroSumOnce.Do(func() { w.zeroXXH = xxhash.Sum64(make([]byte, w.chunkSize)) })
	return w.zeroXXH
}

// sparseFd returns a descriptor to probe for holes when f is a large file
// on a file system that reports holes, else -1. Reading an 8 GiB hole costs
// seconds; seeing it costs one lseek per chunk.
func (w *writer) sparseFd(f store.File, size int64) int {
	fder, ok := f.(interface{ Fd() uintptr })
	if !ok || size < 2*int64(w.chunkSize) {
		return -1
	}
	fd := int(fder.Fd())
	h, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	if err != nil || h >= size {
		return -1
	}
	return fd
}

// isHole reports whether [off, off+n) of the file holds no data.
func isHole(fd int, off, n int64) bool {
	d, err := unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return true // no data at or after off
	}
	return err == nil && d >= off+n
}

var zeroBlock [64 << 10]byte

// AllZero reports whether b is all zeros, at memequal speed: a block
// written as a hole (here, and by extract when it writes an archive's file).
func AllZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// submit queues a job for the sink; it gives up when the sink failed.
func (w *writer) submit(j *job) error {
	select {
	case w.ordered <- j:
		return nil
	case <-w.failed:
		return errSinkFailed
	}
}

// encode hands a chunk to the encoder workers and queues it, in order, for
// the sink.
func (w *writer) encode(j *job) error {
	select {
	case w.work <- j:
	case <-w.failed:
		return errSinkFailed
	}
	return w.submit(j)
}

// getBuf takes a chunk buffer, allocating up to maxBufs: this is the bound on
// chunks in flight.
func (w *writer) getBuf() (*chunkBuf, error) {
	select {
	case b := <-w.free:
		return b, nil
	default:
	}
	if w.nbufs < w.maxBufs {
		w.nbufs++
		// The output buffer is allocated at its bound once: grown by
		// append it would be reallocated and copied again and again.
		return &chunkBuf{in: make([]byte, w.chunkSize+511), out: make([]byte, 0, w.chunkBound())}, nil
	}
	select {
	case b := <-w.free:
		return b, nil
	case <-w.failed:
		return nil, errSinkFailed
	case <-w.ctx.Done():
		return nil, w.ctx.Err()
	}
}

// visit is the Walk callback: it turns one source entry into jobs.
func (w *writer) visit(e *store.Entry, werr error) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if werr != nil {
		w.res.add(&w.res.WalkErrors, e.StorePath, werr)
		// A directory is still archived (with what is known of it) so its
		// listed children have a parent; anything else is left out.
		if e.Type != store.TypeDir {
			return nil
		}
	}
	if e.StorePath == "" {
		if w.rootSet {
			return fmt.Errorf("the store listed its root twice")
		}
		return w.addRoot(e)
	}
	if !w.rootSet {
		if err := w.addRoot(&store.Entry{Type: store.TypeDir}); err != nil {
			return err
		}
	}
	dir, name := store.SplitPath(e.StorePath)
	for len(w.stack) > 0 && w.stack[len(w.stack)-1].path != dir {
		w.stack = w.stack[:len(w.stack)-1]
	}
	if len(w.stack) == 0 || name == "" || name == "." || name == ".." {
		w.res.add(&w.res.Skipped, e.StorePath, errors.New("listed outside its parent directory; not archived"))
		return nil
	}
	parent := w.stack[len(w.stack)-1].idx
	switch e.Type {
	case store.TypeDir:
		idx, err := w.addHeader(e, parent, tocDir, "", nil)
		if err != nil {
			return err
		}
		w.stack = append(w.stack, dirRef{path: e.StorePath, idx: idx})
		w.res.Dirs++
	case store.TypeSymlink:
		if e.LinkTarget == "" {
			w.res.add(&w.res.Unreadable, e.StorePath, errors.New("symlink target could not be read; not archived"))
			return nil
		}
		if _, err := w.addHeader(e, parent, tocSymlink, e.LinkTarget, nil); err != nil {
			return err
		}
		w.res.Symlinks++
	case store.TypeFile:
		return w.addFile(e, parent)
	default:
		w.res.add(&w.res.Skipped, e.StorePath, fmt.Errorf("a %s cannot be archived", e.Type))
	}
	return nil
}

func (w *writer) addRoot(e *store.Entry) error {
	w.rootSet = true
	idx, err := w.addHeader(e, 0, tocDir, "", nil)
	if err != nil {
		return err
	}
	w.stack = append(w.stack[:0], dirRef{path: "", idx: idx})
	w.res.Dirs++
	return nil
}

// addHeader queues the entry's TOC record and header frame (none for the
// root) and returns its add-order index.
func (w *writer) addHeader(e *store.Entry, parent uint32, typ uint8, link string, lt *linkRef) (uint32, error) {
	te := &tocEntry{
		parent: parent, name: e.Name(), typ: typ,
		winAttrs: e.WinAttrs, mode: e.Mode, size: e.Size,
		mtime: e.MtimeNs, atime: e.AtimeNs, ctime: e.CtimeNs, btime: e.BtimeNs,
		linkTarget: noIndex, hdrOff: noHeader,
	}
	if e.StorePath == "" {
		te.name = ""
	}
	if e.HasBtime {
		te.flags |= entHasBtime
	} else {
		te.btime = 0
	}
	if e.HasWinAttr {
		te.flags |= entHasAttrs
	} else {
		te.winAttrs = 0
	}
	switch typ {
	case tocDir:
		te.size = 0
	case tocSymlink:
		te.symlinkTarget = link
		te.size = int64(len(link))
	case tocHardlink:
		te.linkTarget = lt.idx
		te.size = lt.size
	}
	j := &job{kind: jobEntry, ent: te, idx: w.count}
	if e.StorePath != "" {
		hdr, err := w.tarHeader(e, typ, link)
		if err != nil {
			return 0, err
		}
		j.out = w.enc.EncodeAll(hdr, nil)
	}
	if err := w.submit(j); err != nil {
		return 0, err
	}
	w.count++
	return j.idx, nil
}

// tarHeader builds the PAX header blocks of an entry (docs/format.md §1).
func (w *writer) tarHeader(e *store.Entry, typ uint8, link string) ([]byte, error) {
	h := tar.Header{
		Name:    e.StorePath,
		Mode:    int64(e.Mode & 0o7777),
		ModTime: time.Unix(0, e.MtimeNs),
		Format:  tar.FormatPAX,
	}
	if e.AtimeNs != 0 {
		h.AccessTime = time.Unix(0, e.AtimeNs)
	}
	if e.CtimeNs != 0 {
		h.ChangeTime = time.Unix(0, e.CtimeNs)
	}
	switch typ {
	case tocDir:
		h.Typeflag, h.Name = tar.TypeDir, e.StorePath+"/"
		if h.Mode == 0 {
			h.Mode = 0o755
		}
	case tocFile:
		h.Typeflag, h.Size = tar.TypeReg, e.Size
	case tocSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, link
		if h.Mode == 0 {
			h.Mode = 0o777
		}
	case tocHardlink:
		h.Typeflag, h.Linkname = tar.TypeLink, link
	}
	if h.Mode == 0 {
		h.Mode = 0o644
	}
	pax := map[string]string{}
	if e.HasBtime {
		pax["LIBARCHIVE.creationtime"] = formatPAXTime(e.BtimeNs)
	}
	if e.HasWinAttr {
		pax["USMTZ.attrs"] = fmt.Sprintf("%08x", e.WinAttrs)
	}
	if !utf8.ValidString(h.Name) || !utf8.ValidString(h.Linkname) {
		// POSIX: the path bytes are not UTF-8 and must not be translated.
		pax["hdrcharset"] = "BINARY"
	}
	if e.WinPath != "" {
		if win, _ := store.MapPath(w.toc.kind, e.StorePath); win != e.WinPath && !strings.ContainsRune(e.WinPath, 0) {
			pax["USMTZ.winpath"] = e.WinPath
		}
	}
	if len(pax) > 0 {
		h.PAXRecords = pax
	}
	w.tw.Reset()
	tw := tar.NewWriter(&w.tw)
	if err := tw.WriteHeader(&h); err != nil {
		return nil, fmt.Errorf("building the tar header of %s: %w", e.StorePath, err)
	}
	// No Close: that would add the end-of-archive blocks.
	return w.tw.Bytes(), nil
}

// formatPAXTime formats ns since the epoch as PAX decimal seconds, the way
// archive/tar does for mtime.
func formatPAXTime(ns int64) string {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec, nsec = sec-1, nsec+1e9
	}
	if nsec == 0 {
		return strconv.FormatInt(sec, 10)
	}
	sign := ""
	if sec < 0 {
		sign = "-"
		sec = -(sec + 1)
		nsec = 1e9 - nsec
	}
	return strings.TrimRight(fmt.Sprintf("%s%d.%09d", sign, sec, nsec), "0")
}

// addFile archives one regular file: a hard link to an earlier name, or
// the header and the content in chunks.
func (w *writer) addFile(e *store.Entry, parent uint32) error {
	track := e.LinkID != 0 && e.Nlink != 1
	if track {
		if l, ok := w.links[e.LinkID]; ok {
			if _, err := w.addHeader(e, parent, tocHardlink, l.path, &l); err != nil {
				return err
			}
			w.res.Links++
			return nil
		}
	}
	f, err := w.src.Open(e)
	if err != nil {
		if errors.Is(err, store.ErrChanged) {
			w.res.add(&w.res.Changed, e.StorePath, fmt.Errorf("%w; not archived", err))
		} else {
			w.res.add(&w.res.Unreadable, e.StorePath, err)
		}
		return nil
	}
	defer f.Close()
	idx, err := w.addHeader(e, parent, tocFile, "", nil)
	if err != nil {
		return err
	}
	changed, err := w.addData(e, f)
	if err != nil {
		return err
	}
	if changed == nil {
		// Re-stat: a write that kept the size shows in the mtime.
		if st, err := w.src.Stat(e.StorePath); err != nil {
			changed = fmt.Errorf("%w: it could not be looked at again after reading: %v", store.ErrChanged, err)
		} else if st.Size != e.Size || st.MtimeNs != e.MtimeNs {
			changed = fmt.Errorf("%w (size %d → %d, mtime changed: %v)", store.ErrChanged, e.Size, st.Size, st.MtimeNs != e.MtimeNs)
		}
	}
	if errors.Is(changed, errUnreadable) {
		return nil
	}
	if changed != nil {
		w.res.add(&w.res.Changed, e.StorePath, changed)
		if err := w.submit(&job{kind: jobFlag, flag: entChanged}); err != nil {
			return err
		}
	}
	w.res.Files++
	w.res.BytesIn += e.Size
	if track {
		w.links[e.LinkID] = linkRef{path: e.StorePath, idx: idx, size: e.Size}
	}
	return nil
}

var errUnreadable = errors.New("unreadable")

// addData queues the chunks of a file. It returns a non-nil "changed"
// error when the file was shorter than listed (the rest is zero-filled, so
// the tar stream stays consistent), errUnreadable when a read failed and
// the entry was dropped (or zero-filled and flagged incomplete), or a hard
// error that ends the Write.
func (w *writer) addData(e *store.Entry, f store.File) (changed error, err error) {
	size := e.Size
	var readErr error
	holes := w.sparseFd(f, size)
	readAhead(f, size)
	for off := int64(0); off < size; {
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		n := int64(w.chunkSize)
		if size-off < n {
			n = size - off
		}
		if holes >= 0 && n == int64(w.chunkSize) && readErr == nil && changed == nil && isHole(holes, off, n) {
			// A full chunk that ends the file ends on a 512 boundary: no padding.
			j := &job{kind: jobChunk, hole: true, uSize: uint32(n), sum: w.zeroSum(), last: off+n == size, done: make(chan struct{})}
			if err := w.encode(j); err != nil {
				return nil, err
			}
			off += n
			continue
		}
		b, err := w.getBuf()
		if err != nil {
			return nil, err
		}
		in := b.in[:n]
		if readErr == nil && changed == nil {
			got, rerr := f.ReadAt(in, off)
			if int64(got) < n {
				if rerr == nil || errors.Is(rerr, io.EOF) {
					changed = fmt.Errorf("%w: it shrank while being read (%d bytes listed, %d read); the rest is zero-filled", store.ErrChanged, size, off+int64(got))
				} else {
					readErr = rerr
				}
				clear(in[got:])
			}
		} else {
			clear(in)
		}
		if readErr != nil && w.canRewind {
			w.free <- b
			w.res.add(&w.res.Unreadable, e.StorePath, fmt.Errorf("reading at offset %d: %w; not archived", off, readErr))
			w.count-- // the sink drops the entry again
			return errUnreadable, w.submit(&job{kind: jobAbort})
		}
		last := off+n == size
		// One XXH64 pass gives both the TOC sum (the logical bytes) and the
		// frame checksum (with the tar padding), which the chunk encoder
		// leaves to us.
		w.digest.Reset()
		w.digest.Write(in)
		j := &job{kind: jobChunk, buf: b, uSize: uint32(n), sum: w.digest.Sum64(), last: last, done: make(chan struct{}), out: b.out}
		if last {
			pad := tarPad(size)
			clear(b.in[n : n+pad])
			w.digest.Write(b.in[n : n+pad])
			in = b.in[:n+pad]
		}
		j.frameSum = w.digest.Sum64()
		j.in = in
		if err := w.encode(j); err != nil {
			return nil, err
		}
		off += n
	}
	if readErr != nil {
		// Not seekable: the header promised size bytes, so they were sent
		// as zeros; the TOC marks the entry so readers report it damaged.
		w.res.add(&w.res.Unreadable, e.StorePath, fmt.Errorf("%w; archived zero-filled and marked damaged (the output cannot be rewound)", readErr))
		return errUnreadable, w.submit(&job{kind: jobFlag, flag: entIncomplete})
	}
	return changed, nil
}

// sink writes finished jobs in order and keeps the TOC. It owns w.toc,
// w.off and the output.
func (w *writer) sink() {
	for j := range w.ordered {
		if j.done != nil {
			<-j.done
		}
		if w.sinkErr == nil {
			if err := w.apply(j); err != nil {
				w.sinkErr = fmt.Errorf("writing the archive to %s: %w", w.out.Name(), err)
				w.failOnce.Do(func() { close(w.failed) })
			}
		}
		if j.buf != nil {
			j.buf.out = j.out[:0]
			w.free <- j.buf
		}
	}
}

func (w *writer) apply(j *job) error {
	switch j.kind {
	case jobEntry:
		w.lastMark, w.lastOff = w.toc.mark(), w.off
		if j.out != nil {
			j.ent.hdrOff = uint64(w.off)
		}
		idx, err := w.toc.addEntry(j.ent)
		if err != nil {
			return err
		}
		if idx != j.idx {
			return fmt.Errorf("internal error: entry index %d, expected %d", idx, j.idx)
		}
		if j.ent.typ == tocHardlink || (j.ent.typ == tocFile && j.ent.size == 0) {
			w.filesDone++
		}
		return w.write(j.out)
	case jobChunk:
		if j.err != nil {
			return fmt.Errorf("compressing a chunk: %w", j.err)
		}
		if err := w.toc.addChunk(uint64(w.off), uint32(len(j.out)), j.uSize, j.sum); err != nil {
			return err
		}
		w.bytesDone += int64(j.uSize)
		if j.last {
			w.filesDone++
		}
		if err := w.write(j.out); err != nil {
			return err
		}
		w.progress(false)
		return nil
	case jobRaw:
		return w.write(j.out)
	case jobFlag:
		w.toc.setFlag(uint32(w.toc.count()-1), j.flag)
		return nil
	case jobAbort:
		if err := w.bw.Flush(); err != nil {
			return err
		}
		if err := w.out.Truncate(w.lastOff); err != nil {
			return err
		}
		if _, err := w.out.Seek(w.lastOff, io.SeekStart); err != nil {
			return err
		}
		w.off = w.lastOff
		w.wbDone = min(w.wbDone, w.off)
		w.toc.rollback(w.lastMark)
		return nil
	}
	return nil
}

func (w *writer) write(b []byte) error {
	n, err := w.bw.Write(b)
	w.off += int64(n)
	if err == nil && w.canRewind {
		w.startWriteback()
	}
	return err
}

// writebackStep is how much written data may wait in the page cache
// before the kernel is asked to start writing it out.
const writebackStep = 32 << 20

// startWriteback asks the kernel to start writing out what was written so
// far (without waiting), so the fsync before the footer finds little left
// to do: disk writes overlap compression instead of following it.
func (w *writer) startWriteback() {
	if d, ok := w.bw.(*directOut); ok && d.after == nil {
		return // direct writes bypass the page cache
	}
	flushed := w.off - int64(w.bw.Buffered())
	if flushed-w.wbDone < writebackStep {
		return
	}
	// Errors only mean no early writeback; the fsync still runs.
	unix.SyncFileRange(int(w.out.Fd()), w.wbDone, flushed-w.wbDone, unix.SYNC_FILE_RANGE_WRITE)
	w.wbDone = flushed
}

func (w *writer) progress(final bool) {
	if w.opts.Progress == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(w.lastProg) < 100*time.Millisecond {
		return
	}
	w.lastProg = now
	w.opts.Progress(Progress{
		BytesDone: w.bytesDone, BytesTotal: w.opts.TotalBytes,
		FilesDone: w.filesDone, FilesTotal: w.opts.TotalFiles,
		BytesOut: w.off,
	})
}

// finish writes the TOC, syncs, and only then writes the footer.
func (w *writer) finish() error {
	raw, err := w.toc.finish()
	if err != nil {
		return err
	}
	version := uint32(FormatVersion)
	if w.frameSize >= w.chunkSize {
		version = formatSingleFrame
	}
	tocFrame, foot, err := indexFrames(w.enc, raw, w.off, uint64(w.toc.count()), version)
	if err != nil {
		return err
	}
	if err := w.write(tocFrame); err != nil {
		return w.outErr(err)
	}
	if err := w.bw.Flush(); err != nil {
		return w.outErr(err)
	}
	if err := syncFile(w.out); err != nil {
		return w.outErr(err)
	}
	if err := w.write(foot); err != nil {
		return w.outErr(err)
	}
	if err := w.bw.Flush(); err != nil {
		return w.outErr(err)
	}
	if w.canRewind {
		// A reused output file may have been longer: the footer must be last.
		if err := w.out.Truncate(w.off); err != nil {
			return w.outErr(err)
		}
	}
	return nil
}

// indexFrames builds the TOC skippable frame for a TOC at tocOff and the
// footer that points at it.
func indexFrames(enc *zstd.Encoder, raw []byte, tocOff int64, entries uint64, version uint32) (tocFrame, foot []byte, err error) {
	ctoc := enc.EncodeAll(raw, nil)
	if uint64(len(ctoc)) > maxTOCCSize {
		return nil, nil, fmt.Errorf("the table of contents is %d bytes compressed, over the %d limit: split the store", len(ctoc), uint64(maxTOCCSize))
	}
	tocFrame = append(skippableHeader(uint32(len(ctoc))), ctoc...)
	ft := footer{
		tocOffset: uint64(tocOff), tocCSize: uint64(len(ctoc)), tocUSize: uint64(len(raw)),
		tocXXH: xxhash.Sum64(ctoc), entryCount: entries,
		version: version, flags: flagChunkXXH | flagFrameCRC,
	}
	return tocFrame, ft.marshal(), nil
}

func (w *writer) outErr(err error) error {
	return fmt.Errorf("writing the archive to %s: %w", w.out.Name(), err)
}

// syncFile fsyncs, ignoring outputs that cannot be synced (pipes).
func syncFile(f *os.File) error {
	err := f.Sync()
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EROFS) {
		return nil
	}
	return err
}

// CreateFile writes src as an archive to outPath atomically: into a
// temporary file in the same folder, fsynced, renamed over outPath, then
// the folder fsynced. An existing outPath is refused unless force. On an
// error or cancellation the temporary file is removed and outPath is
// untouched. The archive is created with mode 0600: it holds a user's data.
func CreateFile(ctx context.Context, outPath string, src store.Store, opts WriteOptions, force bool) (res *WriteResult, err error) {
	if fi, err := os.Lstat(outPath); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a folder: give the archive file name, e.g. %s", outPath, filepath.Join(outPath, "store.tar.zst"))
	}
	tmp, err := safeio.CreateAtomic(outPath, 0o600, force)
	if errors.Is(err, safeio.ErrExists) {
		return nil, fmt.Errorf("%s already exists: choose another name or pass --force to replace it", outPath)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the archive: %w", err)
	}
	defer tmp.Abort() // a no-op after Commit
	res, err = Write(ctx, tmp.File, src, opts)
	if err != nil {
		return nil, err
	}
	if err = tmp.Commit(); err != nil {
		if errors.Is(err, safeio.ErrExists) {
			return nil, fmt.Errorf("%s appeared while the archive was written: choose another name or pass --force", outPath)
		}
		return nil, fmt.Errorf("moving the archive into place at %s: %w", outPath, err)
	}
	return res, nil
}

// IsInside reports whether path, once symlinks are resolved, is one of
// roots or lies below one, by safeio's one rule (docs/safety.md). path
// need not exist yet. The CLI uses it to refuse writing an archive into
// the store it reads.
func IsInside(path string, roots []string) (bool, error) {
	err := safeio.CheckOutside(path, roots)
	if errors.Is(err, safeio.ErrInsideStore) {
		return true, nil
	}
	return false, err
}
