package compress

import (
	"archive/tar"
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// ArchiveVersion is Info.Version of an archive of format version v
// ("usmtkit archive v2").
func ArchiveVersion(v uint32) string { return fmt.Sprintf("usmtkit archive v%d", v) }

// DefaultCacheBytes bounds the decoded chunks an Archive keeps: room for
// the chunk a sequential reader is in and a few more (4 MiB each by
// default). A FUSE mount gives what random reads decode to the kernel's
// page cache, which serves later reads better than a bigger cache would
// (docs/mount.md, Speed).
const DefaultCacheBytes = 16 << 20

func init() {
	store.RegisterFileKind(store.FileKind{
		Kind: store.KindArchive,
		// Sniff only sees the head: a zstd frame at offset 0 is necessary,
		// not sufficient (any .zst file has one). Open checks the footer
		// and says clearly when a zstd file is not a usmtkit archive.
		Sniff: func(head []byte, size int64) bool {
			return size >= footerSize+8 && len(head) >= 4 && binary.LittleEndian.Uint32(head) == zstdMagic
		},
		Open: func(path string) (store.Store, error) {
			a, err := Open(path, ReaderOptions{})
			if err != nil {
				return nil, err
			}
			return a, nil
		},
		Describe: Describe,
	})
}

// ReaderOptions configure Open.
type ReaderOptions struct {
	// CacheBytes bounds the decoded chunks kept for later reads: 0 means
	// DefaultCacheBytes, negative means no cache.
	CacheBytes int64
	// MaxTOCBytes caps the memory the decoded TOC may take: 0 means
	// DefaultMaxTOCBytes (1 GiB, about 6 million entries).
	MaxTOCBytes uint64
}

// Archive is an opened archive. It implements store.Store; it is safe for
// concurrent use.
type Archive struct {
	f     io.ReaderAt // the archive file (an *os.File; bytes in fuzz tests)
	close func() error
	path  string
	size  int64
	ft    *footer
	t     *toc
	info  store.Info
	cache *chunkCache
	// ahead holds a token per background decode running (decodeAhead):
	// at most maxAhead chunks are decoded ahead of sequential readers.
	ahead chan struct{}
}

var _ store.Store = (*Archive)(nil)

// chunkDecoder is shared by every archive: DecodeAll is safe for concurrent
// use and keeps one block decoder per CPU.
var chunkDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(MaxChunkSize+512))
})

// openRO opens a file read-only without updating its access time when the
// kernel lets us (O_NOATIME needs ownership or CAP_FOWNER).
func openRO(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Open opens an archive: it reads and validates the footer and the whole
// TOC (docs/format.md §4) before anything is trusted. A file without a
// valid footer gives an error wrapping ErrNoIndex; a damaged TOC one
// wrapping store.ErrCorrupt; both say how to salvage.
func Open(path string, opts ReaderOptions) (*Archive, error) {
	f, err := openRO(path)
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	a, err := open(f, path, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func open(f *os.File, path string, opts ReaderOptions) (*Archive, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening archive %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("opening archive %s: not a regular file", path)
	}
	maxTOC := opts.MaxTOCBytes
	if maxTOC == 0 {
		maxTOC = DefaultMaxTOCBytes
	}
	ft, raw, err := readIndex(f, fi.Size(), maxTOC)
	if err != nil {
		return nil, indexError(path, err)
	}
	t, err := parseTOC(raw, ft.entryCount, ft.tocOffset)
	if err == nil {
		err = checkFrameSize(ft, t)
	}
	if err != nil {
		return nil, indexError(path, err)
	}
	a := newArchive(f, path, fi.Size(), ft, t, opts)
	a.close = f.Close
	return a, nil
}

func newArchive(r io.ReaderAt, path string, size int64, ft *footer, t *toc, opts ReaderOptions) *Archive {
	a := &Archive{f: r, path: path, size: size, ft: ft, t: t, ahead: make(chan struct{}, maxAhead)}
	cb := opts.CacheBytes
	if cb == 0 {
		cb = DefaultCacheBytes
	}
	a.cache = newChunkCache(cb)
	a.info = store.Info{
		Kind:    store.KindArchive,
		Version: ArchiveVersion(ft.version),
		Level:   store.LevelArchive,
		Input:   []string{path},
		Roots:   []string{path},
		Notes:   []string{a.describeSource()},
	}
	a.info.Control = a.findControl()
	return a
}

func (a *Archive) describeSource() string {
	v := a.t.version
	if v != "" {
		v = ", " + v
	}
	return fmt.Sprintf("archive of a %s store%s, written %s, %d entries", a.t.kind, v,
		time.Unix(0, a.t.createdNs).UTC().Format(time.RFC3339), a.t.n)
}

func indexError(path string, err error) error {
	switch {
	case errors.Is(err, ErrVersion):
		return fmt.Errorf("opening archive %s: %w", path, err)
	case errors.Is(err, ErrNoIndex):
		return fmt.Errorf("opening archive %s: %w; if it is a usmtkit archive, recover its files with `usmtkit salvage`", path, err)
	case errors.Is(err, store.ErrCorrupt):
		return fmt.Errorf("opening archive %s: its index is damaged (%w); recover its files with `usmtkit salvage`", path, err)
	}
	return fmt.Errorf("opening archive %s: %w", path, err)
}

// readIndex reads and checks the footer and the TOC frame and returns the
// decoded TOC. Every size is checked against the file size and maxTOC
// before anything is allocated.
func readIndex(r io.ReaderAt, size int64, maxTOC uint64) (*footer, []byte, error) {
	if size < footerSize+8 {
		return nil, nil, fmt.Errorf("%w: the file is too short", ErrNoIndex)
	}
	fb := make([]byte, footerSize)
	if _, err := r.ReadAt(fb, size-footerSize); err != nil {
		return nil, nil, fmt.Errorf("reading the footer: %w", err)
	}
	ft, err := parseFooter(fb, size, maxTOC)
	if err != nil {
		return nil, nil, err
	}
	frame := make([]byte, 8+ft.tocCSize)
	if _, err := r.ReadAt(frame, int64(ft.tocOffset)); err != nil {
		return nil, nil, fmt.Errorf("reading the TOC: %w", err)
	}
	if binary.LittleEndian.Uint32(frame) != skippableMagic || uint64(binary.LittleEndian.Uint32(frame[4:])) != ft.tocCSize {
		return nil, nil, fmt.Errorf("%w: the footer does not point at a TOC frame", store.ErrCorrupt)
	}
	payload := frame[8:]
	if xxhash.Sum64(payload) != ft.tocXXH {
		return nil, nil, fmt.Errorf("%w: TOC checksum mismatch", store.ErrCorrupt)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(tocWindowCap(ft.tocUSize)))
	if err != nil {
		return nil, nil, err
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(payload, make([]byte, 0, ft.tocUSize))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: decoding the TOC: %v", store.ErrCorrupt, err)
	}
	if uint64(len(raw)) != ft.tocUSize {
		return nil, nil, fmt.Errorf("%w: the TOC decodes to %d bytes, the footer says %d", store.ErrCorrupt, len(raw), ft.tocUSize)
	}
	return ft, raw, nil
}

// tocWindowCap bounds the decoder's memory for a TOC of usize bytes. The
// output itself is capped to usize by the destination's capacity; the
// window of a small frame is at least zstd's 1 KiB minimum (klauspost
// writes frames under 1 KiB with that window), so allow up to 1 MiB.
func tocWindowCap(usize uint64) uint64 { return max(usize+1, 1<<20) }

// Describe reads what is cheap to know about an archive (its footer and the
// TOC header) without loading the TOC; store.Detect uses it for SMP share
// members.
func Describe(path string) (*store.Info, error) {
	f, err := openRO(path)
	if err != nil {
		return nil, fmt.Errorf("opening archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if size < footerSize+8 {
		return nil, indexError(path, ErrNoIndex)
	}
	fb := make([]byte, footerSize)
	if _, err := f.ReadAt(fb, size-footerSize); err != nil {
		return nil, fmt.Errorf("reading archive %s: %w", path, err)
	}
	ft, err := parseFooter(fb, size, DefaultMaxTOCBytes)
	if err != nil {
		return nil, indexError(path, err)
	}
	// Stream-decode just the TOC header.
	dec, err := zstd.NewReader(io.NewSectionReader(f, int64(ft.tocOffset)+8, int64(ft.tocCSize)),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(tocWindowCap(ft.tocUSize)))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	hdr := make([]byte, tocHeaderSize)
	if _, err := io.ReadFull(dec, hdr); err != nil || string(hdr[:8]) != tocMagic {
		return nil, indexError(path, fmt.Errorf("%w: unreadable TOC header", store.ErrCorrupt))
	}
	kind := cString(hdr[56 : 56+tocKindFieldLen])
	ver := cString(hdr[88 : 88+tocKindFieldLen])
	if ver != "" {
		ver = ", " + ver
	}
	return &store.Info{
		Kind: store.KindArchive, Version: ArchiveVersion(ft.version), Level: store.LevelArchive,
		Input: []string{path}, Roots: []string{path},
		Notes: []string{fmt.Sprintf("archive of a %s store%s, written %s, %d entries", kind, ver,
			time.Unix(0, int64(binary.LittleEndian.Uint64(hdr[48:]))).UTC().Format(time.RFC3339), ft.entryCount)},
	}, nil
}

// SourceKind is the kind of the store the archive was made from.
func (a *Archive) SourceKind() store.Kind { return a.t.kind }

// SourceVersion is the Info.Version of the store the archive was made from.
func (a *Archive) SourceVersion() string { return a.t.version }

// Created is when the archive was written.
func (a *Archive) Created() time.Time { return time.Unix(0, a.t.createdNs) }

// EntryCount is the number of entries, the root included.
func (a *Archive) EntryCount() int { return a.t.n }

// Info implements store.Store.
func (a *Archive) Info() *store.Info {
	info := a.info
	return &info
}

// Close implements store.Store.
func (a *Archive) Close() error {
	if a.close == nil {
		return nil
	}
	return a.close()
}

func (a *Archive) findControl() []store.ControlFile {
	var out []store.ControlFile
	for _, top := range []string{"USMT", "USMT3"} {
		d, ok := a.t.lookupChild(0, top)
		if !ok || a.t.typ(d) != tocDir {
			continue
		}
		lo, hi := a.t.children(d)
		for i := lo; i < hi; i++ {
			p := top + "/" + string(a.t.name(i))
			if e := a.entry(i, p); e.Control {
				out = append(out, store.ControlFile{Name: strings.ToLower(e.Name()), StorePath: p, Size: e.Size})
			}
		}
	}
	return out
}

// entry builds the store entry of TOC entry i at path p, filled as the
// source store had it.
func (a *Archive) entry(i uint32, p string) store.Entry {
	t := a.t
	r := t.rec(i)
	le := binary.LittleEndian
	e := store.Entry{
		StorePath: p,
		Mode:      le.Uint32(r[eMode:]),
		Size:      int64(le.Uint64(r[eSize:])),
		MtimeNs:   int64(le.Uint64(r[eMtime:])),
		AtimeNs:   int64(le.Uint64(r[eAtime:])),
		CtimeNs:   int64(le.Uint64(r[eCtime:])),
		Nlink:     1,
		Ino:       uint64(i) + 2,
	}
	fl := r[eFlags]
	if fl&entHasBtime != 0 {
		e.BtimeNs, e.HasBtime = int64(le.Uint64(r[eBtime:])), true
	}
	if fl&entHasAttrs != 0 {
		e.WinAttrs, e.HasWinAttr = le.Uint32(r[eWinAttrs:]), true
	}
	switch r[eType] {
	case tocDir:
		e.Type = store.TypeDir
	case tocSymlink:
		e.Type = store.TypeSymlink
		e.LinkTarget = string(t.symlinkTarget(i))
	default:
		e.Type = store.TypeFile
		g := t.linkTarget(i)
		e.Ino = uint64(g) + 2
		e.LinkID = uint64(g) + 2
		if n := t.nlink[g]; n > 0 {
			e.Nlink = n
		}
	}
	e.WinPath, e.Control = store.MapPath(t.kind, p)
	if e.Control && e.Type != store.TypeFile {
		e.Control = false
	}
	return e
}

// pathOf rebuilds the store path of an entry from its parents.
func (a *Archive) pathOf(i uint32) string {
	var parts []string
	for i != 0 {
		parts = append(parts, string(a.t.name(i)))
		i = a.t.parent(i)
	}
	for l, r := 0, len(parts)-1; l < r; l, r = l+1, r-1 {
		parts[l], parts[r] = parts[r], parts[l]
	}
	return strings.Join(parts, "/")
}

// lookup finds the entry of a store path.
func (a *Archive) lookup(op, storePath string) (uint32, error) {
	p := strings.Trim(storePath, "/")
	cur := uint32(0)
	if p == "" {
		return 0, nil
	}
	for _, comp := range strings.Split(p, "/") {
		if a.t.typ(cur) != tocDir {
			return 0, &store.PathError{Op: op, Path: storePath, Err: fs.ErrNotExist}
		}
		next, ok := a.t.lookupChild(cur, comp)
		if !ok {
			return 0, &store.PathError{Op: op, Path: storePath, Err: fs.ErrNotExist}
		}
		cur = next
	}
	return cur, nil
}

// Stat implements store.Store.
func (a *Archive) Stat(storePath string) (*store.Entry, error) {
	i, err := a.lookup("looking up", storePath)
	if err != nil {
		return nil, err
	}
	e := a.entry(i, strings.Trim(storePath, "/"))
	return &e, nil
}

// ReadDir implements store.Store.
func (a *Archive) ReadDir(storePath string) ([]store.Entry, error) {
	i, err := a.lookup("listing", storePath)
	if err != nil {
		return nil, err
	}
	if a.t.typ(i) != tocDir {
		return nil, &store.PathError{Op: "listing", Path: storePath, Err: errors.New("not a directory")}
	}
	dir := strings.Trim(storePath, "/")
	lo, hi := a.t.children(i)
	out := make([]store.Entry, 0, hi-lo)
	for c := lo; c < hi; c++ {
		out = append(out, a.entry(c, store.JoinPath(dir, string(a.t.name(c)))))
	}
	return out, nil
}

// Walk implements store.Store: depth-first pre-order with children sorted
// bytewise, which is store.ComparePaths order.
func (a *Archive) Walk(ctx context.Context, fn store.WalkFunc) error {
	root := a.entry(0, "")
	if err := fn(&root, nil); err != nil {
		if errors.Is(err, store.SkipDir) {
			return nil
		}
		return err
	}
	type level struct {
		path     string
		next, hi uint32
	}
	lo, hi := a.t.children(0)
	stack := []level{{"", lo, hi}}
	for n := 0; len(stack) > 0; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		top := &stack[len(stack)-1]
		if top.next == top.hi {
			stack = stack[:len(stack)-1]
			continue
		}
		i := top.next
		top.next++
		p := store.JoinPath(top.path, string(a.t.name(i)))
		e := a.entry(i, p)
		err := fn(&e, nil)
		if err != nil && !errors.Is(err, store.SkipDir) {
			return err
		}
		if err == nil && e.Type == store.TypeDir {
			lo, hi := a.t.children(i)
			if lo < hi {
				stack = append(stack, level{p, lo, hi})
			}
		}
	}
	return nil
}

// Open implements store.Store. A hard link opens its group's content.
func (a *Archive) Open(e *store.Entry) (store.File, error) {
	i, err := a.lookup("opening", e.StorePath)
	if err != nil {
		return nil, err
	}
	switch a.t.typ(i) {
	case tocFile, tocHardlink:
	default:
		return nil, &store.PathError{Op: "opening", Path: e.StorePath, Err: errors.New("not a regular file")}
	}
	g := a.t.linkTarget(i)
	first, n := a.t.chunkRange(g)
	f := &archiveFile{a: a, path: e.StorePath, idx: g, first: first, size: a.t.size(g)}
	f.next.Store(math.MinInt64 / 2) // no read yet: only offset 0 starts a walk
	f.ends = make([]int64, n)
	var end int64
	for k := uint32(0); k < n; k++ {
		end += int64(a.t.chunk(first + k).uSize)
		f.ends[k] = end
	}
	return f, nil
}

// archiveFile is an open file of an archive.
type archiveFile struct {
	a     *Archive
	path  string
	idx   uint32 // the link group's first name
	first uint32
	size  int64
	ends  []int64 // ends[k] = file offset just past chunk k
	// next is where the last read ended: a read starting near it is part
	// of a sequential walk (see ReadAtFresh).
	next atomic.Int64
	// walking: the last read was part of a sequential walk.
	walking atomic.Bool
	// closed stops decodes ahead that have not started yet.
	closed atomic.Bool
}

func (f *archiveFile) Size() int64 { return f.size }

// Close implements store.File. A decode ahead already running finishes
// into the cache (one chunk at most); none is started any more.
func (f *archiveFile) Close() error {
	f.closed.Store(true)
	return nil
}

// seqSlack is how far from the end of the previous read a read may start
// and still count as sequential: the kernel's readahead sends requests of
// up to 1 MiB, sometimes out of order.
const seqSlack = 1 << 20

// ReadAt serves any byte range: a binary search finds the first chunk, and
// each chunk comes from the cache or is decoded (see ReadAtFresh).
func (f *archiveFile) ReadAt(p []byte, off int64) (int, error) {
	return f.ReadAtFresh(p, off, nil)
}

// ReadAtFresh is ReadAt that also hands fresh, when it is not nil, the
// spans of the file a random read had to decode and that were not decoded
// before (cache hits are not reported, nor are the chunks of a sequential
// walk, whose next bytes the reader will ask for anyway): the span's file
// offset and its bytes, which are never modified afterwards and may be
// kept. The FUSE adapter gives them to the kernel's page cache.
//
// A read that continues a sequential walk (or starts at offset 0) decodes
// and verifies whole chunks. Any other read decodes a chunk only up to the end of the
// read (partial decode, docs/mount.md): the chunk's xxhash64 and zstd
// checksum are checked once a later read completes the chunk.
func (f *archiveFile) ReadAtFresh(p []byte, off int64, fresh func(off int64, data []byte)) (int, error) {
	_, n, err := f.read(p, off, fresh, false)
	return n, err
}

// ReadSpan is ReadAtFresh without the copy when it can: if the bytes
// asked for lie in one chunk, it returns them as a slice of the decoded
// chunk (read-only: decoded data is never modified, and it may be kept,
// e.g. until a FUSE reply is written), else it fills p and returns p[:n].
// A short result with io.EOF means the end of the file.
func (f *archiveFile) ReadSpan(p []byte, off int64, fresh func(off int64, data []byte)) ([]byte, error) {
	b, n, err := f.read(p, off, fresh, true)
	if b == nil {
		b = p[:n]
	}
	return b, err
}

// read serves ReadAtFresh and ReadSpan; with span set, a read inside one
// chunk returns that chunk's bytes instead of copying them into p.
func (f *archiveFile) read(p []byte, off int64, fresh func(off int64, data []byte), span bool) ([]byte, int, error) {
	if off < 0 {
		return nil, 0, &store.PathError{Op: "reading", Path: f.path, Err: errors.New("negative offset")}
	}
	if off >= f.size {
		return nil, 0, io.EOF
	}
	if f.a.t.flags(f.idx)&entIncomplete != 0 {
		return nil, 0, &store.PathError{Op: "reading", Path: f.path, Err: fmt.Errorf("%w: the source could not be read completely when the archive was written; the archive holds zeros", store.ErrCorrupt)}
	}
	end := min(off+int64(len(p)), f.size)
	// Note where this read ends before decoding: the kernel sends the next
	// readahead request before this one is answered.
	prev := f.next.Swap(end)
	// A walk starts with a read at 0 or exactly where the last one ended;
	// a read near the previous one (the kernel's readahead requests, out
	// of order) continues a walk but never starts one: one random read in
	// ten of a 20 MiB file lands within seqSlack of the last, one in a
	// hundred does so twice in a row, and taking those for a walk cost a
	// whole-chunk decode and a decode ahead (10-18 ms, the mount bench's
	// random 4 KiB p99) instead of one frame.
	near := off >= prev-seqSlack && off <= prev+seqSlack
	walk := off == 0 || off == prev || near && f.walking.Load()
	f.walking.Store(walk)
	// A read at 0 starts a walk but decodes only what it needs, like a
	// random read: file managers and `file` read the first bytes of many
	// files to learn their type, and decoding whole chunks (and the next
	// one ahead) for that cost up to 8 MiB per file. A reader that goes on
	// continues the walk with its next read.
	seq := walk && off != 0
	k := searchEnds(f.ends, off)
	if seq {
		// Decode the chunk after the one this read ends in while the
		// reader consumes this one.
		f.a.decodeAhead(f, searchEnds(f.ends, end-1)+1)
	}
	want := int(end - off)
	n := 0
	for n < want && k < len(f.ends) {
		start := f.chunkStart(k)
		lo := int(off + int64(n) - start)
		need := int(min(end, f.ends[k]) - start)
		// data holds the chunk's bytes from chunk offset base on.
		data, base, from, err := f.a.chunkData(f, uint32(k), lo, need, seq)
		if err != nil {
			return nil, n, err
		}
		if from >= 0 && from < len(data) && fresh != nil && !seq {
			fresh(start+int64(base+from), data[from:])
		}
		if span && n == 0 && end <= f.ends[k] {
			b := data[lo-base : need-base : need-base]
			if len(b) < len(p) {
				return b, len(b), io.EOF
			}
			return b, len(b), nil
		}
		n += copy(p[n:], data[lo-base:need-base])
		k++
	}
	if n < len(p) {
		return nil, n, io.EOF
	}
	return nil, n, nil
}

func (f *archiveFile) chunkStart(k int) int64 {
	if k == 0 {
		return 0
	}
	return f.ends[k-1]
}

// searchEnds returns the chunk holding offset off.
func searchEnds(ends []int64, off int64) int {
	lo, hi := 0, len(ends)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ends[m] <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// chunkData returns the logical bytes lo..need of chunk k of a file
// (chunk offsets), from the cache or decoded: the whole chunk, verified,
// when full is set or need covers it; else the frames of the chunk that
// hold them (reader_frames.go) or, in a chunk of one frame, its first
// need bytes. data holds the chunk's bytes from chunk offset base on. from
// is -1 when nothing was decoded, else the index in data where the bytes
// not decoded before start (0 when the cache knew nothing of them). A
// chunk found damaged stays damaged: every later read of it fails the
// same way.
func (a *Archive) chunkData(f *archiveFile, k uint32, lo, need int, full bool) (data []byte, base, from int, err error) {
	c := f.first + k
	size := int64(a.t.chunk(c).uSize)
	expect := size // what this read will probably decode
	if !full && a.ft.version > formatSingleFrame {
		expect = min(size, int64(a.t.frameSize))
	} else if !full {
		expect = min(size, int64(need))
	}
	ent, err := a.cache.entry(c, size, expect)
	if err != nil {
		return nil, 0, -1, f.chunkError(k, err)
	}
	ent.mu.Lock()
	defer ent.mu.Unlock()
	return a.fill(f, k, ent, lo, need, full)
}

// fill is chunkData for an entry whose lock the caller holds.
func (a *Archive) fill(f *archiveFile, k uint32, ent *cacheEnt, lo, need int, full bool) (data []byte, base, from int, err error) {
	c := f.first + k
	last := k == uint32(len(f.ends))-1
	if ent.err != nil {
		return nil, 0, -1, f.chunkError(k, ent.err)
	}
	if len(ent.data) >= need && (ent.done || !full) {
		return ent.data, 0, -1, nil
	}
	// A read that does not cover the whole chunk decodes only its frames:
	// also one that ends at the chunk's end (a PDF or ZIP reader starts
	// with the last bytes of the file) or runs on into the next chunk.
	if !full && (lo > 0 || need < int(a.t.chunk(c).uSize)) && a.ft.version > formatSingleFrame {
		if sp, ok := ent.spanFor(lo, need); ok {
			return sp.data, sp.start, -1, nil
		}
		sp, ok, err := a.decodeFrames(c, last, f.size, ent, lo, need)
		if err != nil {
			return nil, 0, -1, a.chunkFailed(f, k, ent, err)
		}
		switch ok {
		case framesDecoded:
			ent.addSpan(sp)
			a.cache.resize(ent)
			return sp.data, sp.start, 0, nil
		case framesTooMany:
			full = true
		}
		// framesOne: a chunk of one frame, decoded as before.
	}
	data, done, err := a.decodeRange(c, last, f.size, need, full)
	if err != nil {
		return nil, 0, -1, a.chunkFailed(f, k, ent, err)
	}
	from = len(ent.data)
	ent.data, ent.done = data, done
	if done {
		ent.spans = nil
	}
	a.cache.resize(ent)
	return data, 0, from, nil
}

// chunkFailed records damage found in chunk k (every later read of it
// fails the same way) and returns the error for the reader.
func (a *Archive) chunkFailed(f *archiveFile, k uint32, ent *cacheEnt, err error) error {
	if errors.Is(err, store.ErrCorrupt) {
		ent.err = err
		a.cache.damaged(f.first+k, ent, err)
	}
	return f.chunkError(k, err)
}

func (f *archiveFile) chunkError(k uint32, err error) error {
	ch := f.a.t.chunk(f.first + k)
	return &store.PathError{Op: "reading", Path: f.path,
		Err: fmt.Errorf("chunk %d of %d (archive offset %d): %w", k, len(f.ends), ch.off, err)}
}

// framePool holds buffers for compressed frames read from the archive; the
// decoded data is allocated fresh because the cache keeps it. It is a
// small free list rather than a sync.Pool: a sync.Pool is emptied by
// every garbage collection, which (with a chunk decoded every few
// milliseconds) made most frame reads allocate and zero a new buffer of up
// to a compressed chunk's size, a fifth of a random read's cost. At most
// maxPooledFrames buffers are kept; more concurrent decodes allocate and
// drop theirs.
var framePool = frameBufs{free: make(chan *[]byte, maxPooledFrames)}

// maxPooledFrames: one buffer (up to a compressed chunk, about 4 MiB at
// the default chunk size) covers the usual case, one decode at a time per
// reader plus the decode ahead, at the cost of one allocation for the
// second of two overlapping decodes; each kept buffer stays in memory.
const maxPooledFrames = 1

// maxPooledFrameBytes bounds a kept buffer: the frame of a default 4 MiB
// chunk, incompressible, fits.
const maxPooledFrameBytes = 2 * DefaultChunkSize

// frameBufs is a bounded free list of frame buffers.
type frameBufs struct{ free chan *[]byte }

func (p *frameBufs) Get() any {
	select {
	case bp := <-p.free:
		return bp
	default:
		return new([]byte)
	}
}

func (p *frameBufs) Put(bp *[]byte) {
	if cap(*bp) > maxPooledFrameBytes {
		return // archives with big chunks: not kept for ever
	}
	select {
	case p.free <- bp:
	default:
	}
}

// readFrame reads the first n bytes of chunk c's frame into a pooled
// buffer; put it back with framePool.Put(bp).
func (a *Archive) readFrame(c uint32, n uint32) (bp *[]byte, frame []byte, err error) {
	ch := a.t.chunk(c)
	bp = framePool.Get().(*[]byte)
	if cap(*bp) < int(ch.cSize) {
		*bp = make([]byte, ch.cSize)
	}
	frame = (*bp)[:n]
	if _, err := a.f.ReadAt(frame, int64(ch.off)); err != nil {
		framePool.Put(bp)
		return nil, nil, fmt.Errorf("reading the archive: %w", err)
	}
	if len(frame) < 4 || binary.LittleEndian.Uint32(frame) != zstdMagic {
		framePool.Put(bp)
		return nil, nil, fmt.Errorf("%w: no zstd frame at the recorded offset", store.ErrCorrupt)
	}
	return bp, frame, nil
}

// decodeChunk reads, decodes and verifies one whole chunk frame. The error
// wraps store.ErrCorrupt when the data is damaged.
func (a *Archive) decodeChunk(c uint32, last bool, fileSize int64) ([]byte, error) {
	ch := a.t.chunk(c)
	bp, frame, err := a.readFrame(c, ch.cSize)
	if err != nil {
		return nil, err
	}
	defer framePool.Put(bp)
	want := int(ch.uSize)
	if last {
		want += int(tarPad(fileSize))
	}
	data, err := decodeWholeFrame(frame, want)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	if len(data) != want {
		return nil, fmt.Errorf("%w: decoded %d bytes, expected %d", store.ErrCorrupt, len(data), want)
	}
	data = data[:ch.uSize]
	if a.ft.flags&flagChunkXXH != 0 && xxhash.Sum64(data) != ch.sum {
		return nil, fmt.Errorf("%w: xxhash64 mismatch", store.ErrCorrupt)
	}
	return data, nil
}

// zstd frame layout used by partial decoding (RFC 8878 §3.1.1.2).
const (
	zstdBlockHeader   = 3
	zstdMaxBlockSize  = 128 << 10 // Block_Maximum_Size: no block decodes to more
	zstdBlockRaw      = 0
	zstdBlockRLE      = 1
	zstdBlockReserved = 3
)

// decodeRange decodes chunk c: whole and verified (done) when full is set
// or need covers the chunk; otherwise only the zstd blocks that hold its
// first need bytes.
//
// A partial decode reads the frame's block headers, keeps the blocks
// that cover need bytes (a block decodes to at most 128 KiB), marks the
// last kept block as the frame's last and decodes that shortened frame:
// every kept block is decoded and checked by the zstd decoder (block
// types and sizes, entropy tables and bitstreams, match offsets inside
// the window, output sizes), and the decoder then reports that the frame
// is shorter than its header says, which is the expected outcome. What a
// partial decode cannot check is the frame checksum and the chunk's
// xxhash64, which cover the whole chunk: bytes stored raw (incompressible
// data) or as raw literals are returned unchecked. They are checked, and
// the chunk reported damaged for good, when a read completes the chunk.
func (a *Archive) decodeRange(c uint32, last bool, fileSize int64, need int, full bool) ([]byte, bool, error) {
	ch := a.t.chunk(c)
	if full || need >= int(ch.uSize) {
		data, err := a.decodeChunk(c, last, fileSize)
		return data, err == nil, err
	}
	want := int(ch.uSize)
	if last {
		want += int(tarPad(fileSize))
	}
	// Read about as much of the frame as the data needed, with a margin;
	// all of it when the blocks turn out to be less dense.
	n := min(ch.cSize, uint32(uint64(ch.cSize)*uint64(need)/uint64(ch.uSize))+ch.cSize/16+64<<10)
	bp, frame, err := a.readFrame(c, n)
	if err != nil {
		return nil, false, err
	}
	defer framePool.Put(bp)
	// cutFrameEst counts 128 KiB per compressed block, the most one holds;
	// an encoder that sizes blocks to the content (the C library does) makes
	// smaller ones, and the kept blocks then decode to less than need. The
	// next attempt scales the target by what the blocks really gave. Each
	// attempt changes the frame's header and a block header in place
	// (decodePrefix, the Last_Block bit): both are put back after it.
	var head [zstdMaxFrameHeader]byte
	headLen := copy(head[:], frame)
	target := need
	for attempt := 0; ; attempt++ {
		cut, est, lastHdr, err := cutFrameEst(frame, target, want)
		if err == errNeedMore && len(frame) < int(ch.cSize) {
			if _, err := a.f.ReadAt((*bp)[len(frame):ch.cSize], int64(ch.off)+int64(len(frame))); err != nil {
				return nil, false, fmt.Errorf("reading the archive: %w", err)
			}
			frame = (*bp)[:ch.cSize]
			cut, est, lastHdr, err = cutFrameEst(frame, target, want)
		}
		if err == errWholeFrame {
			data, err := a.decodeChunk(c, last, fileSize)
			return data, err == nil, err
		}
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
		}
		saved := frame[lastHdr]
		frame[lastHdr] |= 1 // Last_Block
		data, err := decodePrefix(frame[:cut], min(est, want), want)
		frame[lastHdr] = saved
		copy(frame, head[:headLen])
		if err != nil {
			return nil, false, err
		}
		if len(data) >= need {
			return data[:min(len(data), int(ch.uSize))], false, nil
		}
		if attempt == 2 || len(data) == 0 {
			data, err := a.decodeChunk(c, last, fileSize)
			return data, err == nil, err
		}
		target = int(int64(target)*int64(need)/int64(len(data))) + zstdMaxBlockSize
	}
}

var (
	errNeedMore   = errors.New("the frame's block headers run past the bytes read")
	errWholeFrame = errors.New("the needed blocks are the whole frame")
)

// cutFrame finds the end of the first blocks of a zstd frame that decode
// to at least need bytes if every compressed block holds 128 KiB, and
// marks the last of them as the frame's last block (in frame, which the
// caller owns). want is the chunk's size with its tar padding: the frame
// header must say so.
func cutFrame(frame []byte, need, want int) (int, error) {
	cut, _, lastHdr, err := cutFrameEst(frame, need, want)
	if err == nil {
		frame[lastHdr] |= 1
	}
	return cut, err
}

// zstdMaxFrameHeader is the longest zstd frame header (RFC 8878 §3.1.1.1).
const zstdMaxFrameHeader = 18

// cutFrameEst is cutFrame without changing frame: it also returns the
// most the kept blocks can decode to (128 KiB per compressed block, at
// least need) and the offset of the last kept block's header, whose
// Last_Block bit the caller sets to decode frame[:cut].
func cutFrameEst(frame []byte, need, want int) (cut, est, lastHdr int, err error) {
	var h zstd.Header
	if err := h.Decode(frame); err != nil {
		return 0, 0, 0, err
	}
	if h.Skippable || !h.HasFCS || h.FrameContentSize != uint64(want) || h.HeaderSize <= 0 {
		return 0, 0, 0, fmt.Errorf("the frame header says %d bytes, the TOC %d", h.FrameContentSize, want)
	}
	pos, out := h.HeaderSize, 0
	for {
		if pos+zstdBlockHeader > len(frame) {
			return 0, 0, 0, errNeedMore
		}
		hdr := pos
		bh := uint32(frame[pos]) | uint32(frame[pos+1])<<8 | uint32(frame[pos+2])<<16
		typ, size := (bh>>1)&3, int(bh>>3)
		body := size
		switch typ {
		case zstdBlockRLE:
			body = 1
		case zstdBlockReserved:
			return 0, 0, 0, errors.New("reserved block type")
		}
		if size > zstdMaxBlockSize {
			return 0, 0, 0, fmt.Errorf("block of %d bytes", size)
		}
		pos += zstdBlockHeader + body
		if pos > len(frame) {
			return 0, 0, 0, errNeedMore
		}
		if bh&1 != 0 {
			return 0, 0, 0, errWholeFrame
		}
		if typ == zstdBlockRaw || typ == zstdBlockRLE {
			out += size
		} else {
			out += zstdMaxBlockSize
		}
		if out >= need {
			return pos, out, hdr, nil
		}
	}
}

// VerifyAll checks every header frame (it decodes, its checksum holds and it
// describes the entry the TOC lists) and every chunk (decode, zstd checksum,
// xxhash64), bypassing the cache. fn is called once per header (chunk -1)
// and once per chunk, in Walk order, with err nil when it is good; errors
// about damage wrap store.ErrCorrupt. VerifyAll keeps going after damage and
// returns an error only when it cannot go on (ctx cancelled, read error).
func (a *Archive) VerifyAll(ctx context.Context, fn func(path string, chunk int, err error)) error {
	return a.Walk(ctx, func(e *store.Entry, _ error) error {
		if e.StorePath == "" {
			return nil
		}
		i, err := a.lookup("verifying", e.StorePath)
		if err != nil {
			return err
		}
		fn(e.StorePath, -1, a.verifyHeader(i, e))
		if a.t.typ(i) != tocFile {
			return nil
		}
		first, n := a.t.chunkRange(i)
		for k := uint32(0); k < n; k++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			_, err := a.decodeChunk(first+k, k == n-1, a.t.size(i))
			if err != nil && !errors.Is(err, store.ErrCorrupt) {
				return fmt.Errorf("verifying %s: %w", e.StorePath, err)
			}
			if err == nil && a.t.flags(i)&entIncomplete != 0 {
				err = fmt.Errorf("%w: the source could not be read completely when the archive was written", store.ErrCorrupt)
			}
			if err != nil {
				ch := a.t.chunk(first + k)
				err = fmt.Errorf("chunk %d of %d (archive offset %d): %w", k, n, ch.off, err)
			}
			fn(e.StorePath, int(k), err)
		}
		return nil
	})
}

// maxHeaderFrame bounds a header frame: PAX records of a few long names.
const maxHeaderFrame = 1 << 20

func (a *Archive) verifyHeader(i uint32, e *store.Entry) error {
	off := int64(binary.LittleEndian.Uint64(a.t.rec(i)[eHdrOff:]))
	n, fcs, err := zstdFrameLen(a.f, off, a.ft.tocOffset)
	if err != nil {
		return fmt.Errorf("header frame at archive offset %d: %w: %v", off, store.ErrCorrupt, err)
	}
	if n > maxHeaderFrame || fcs < 0 || fcs > maxHeaderFrame {
		return fmt.Errorf("header frame at archive offset %d: %w: %d bytes long, content size %d", off, store.ErrCorrupt, n, fcs)
	}
	frame := make([]byte, n)
	if _, err := a.f.ReadAt(frame, off); err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	dec, err := chunkDecoder()
	if err != nil {
		return err
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, fcs))
	if err != nil {
		return fmt.Errorf("header frame at archive offset %d: %w: %v", off, store.ErrCorrupt, err)
	}
	h, ok := parseHeaderFrame(data)
	if !ok {
		return fmt.Errorf("header frame at archive offset %d: %w: not a tar header", off, store.ErrCorrupt)
	}
	name := strings.TrimSuffix(h.Name, "/")
	wantType := map[uint8]byte{tocFile: tar.TypeReg, tocDir: tar.TypeDir, tocSymlink: tar.TypeSymlink, tocHardlink: tar.TypeLink}[a.t.typ(i)]
	wantSize := e.Size
	if a.t.typ(i) != tocFile {
		wantSize = 0
	}
	if name != e.StorePath || h.Typeflag != wantType || h.Size != wantSize {
		return fmt.Errorf("header frame at archive offset %d: %w: it describes %q (type %c, %d bytes), the TOC lists %q", off, store.ErrCorrupt, h.Name, h.Typeflag, h.Size, e.StorePath)
	}
	return nil
}

// parseHeaderFrame reports whether data is exactly the tar header blocks of
// one entry (PAX extended header + ustar header, or a ustar header alone)
// with valid checksums, and returns the header.
func parseHeaderFrame(data []byte) (*tar.Header, bool) {
	if len(data) < 512 || len(data)%512 != 0 || len(data) > maxHeaderFrame {
		return nil, false
	}
	last := data[len(data)-512:]
	if string(last[257:263]) != "ustar\x00" {
		return nil, false
	}
	cr := &countingReader{r: bytes.NewReader(data)}
	h, err := tar.NewReader(cr).Next()
	if err != nil || cr.n != int64(len(data)) {
		return nil, false
	}
	return h, true
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// chunkCache is an LRU of decoded chunks, whole, a prefix, or some of
// their frames, bounded in bytes: an entry counts the decoded bytes it
// holds (a 4 MiB chunk of which one 128 KiB frame was read counts 128
// KiB, so random reads keep 32 times more of what they decoded, and the
// frames found, than if it counted the chunk). Readers of one chunk take
// turns on the entry's lock, so a chunk is decoded once at a time and a
// later read that needs more of it decodes further. Chunks found damaged
// are remembered (not counted: a few bytes each).
type chunkCache struct {
	max int64

	mu   sync.Mutex
	used int64
	lru  *list.List // of *cacheEnt, front = most recent
	ents map[uint32]*list.Element
	bad  map[uint32]error
}

type cacheEnt struct {
	c    uint32
	cost int64 // the bytes counted for it (under chunkCache.mu)

	mu   sync.Mutex // held while decoding
	data []byte     // decoded bytes: the whole chunk when done, else a prefix
	done bool       // the whole chunk, verified
	err  error      // damage found
	// A chunk of several frames (reader_frames.go): the frames found so
	// far and the decoded runs of frames that are not a prefix.
	frames []frameLoc
	spans  []span
}

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{max: max, lru: list.New(), ents: map[uint32]*list.Element{}, bad: map[uint32]error{}}
}

// entry returns chunk c's entry, new or cached, and marks it recent; an
// entry that could not fit once decoded whole (size: the chunk's bytes),
// or any entry when there is no cache, is returned without being kept. A
// new entry counts nothing until resize. It fails with the damage already
// found in the chunk. Room for expect bytes (what the caller will probably
// decode into a new entry) is made first, so that the least recently used
// entries can be collected before the decode allocates.
func (cc *chunkCache) entry(c uint32, size, expect int64) (*cacheEnt, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if err := cc.bad[c]; err != nil {
		return nil, err
	}
	if el, ok := cc.ents[c]; ok {
		cc.lru.MoveToFront(el)
		return el.Value.(*cacheEnt), nil
	}
	ent := &cacheEnt{c: c}
	if cc.max < 0 || size > cc.max {
		return ent, nil
	}
	for cc.used+expect > cc.max && cc.lru.Len() > 0 {
		cc.remove(cc.lru.Back())
	}
	cc.ents[c] = cc.lru.PushFront(ent)
	return ent, nil
}

// resize counts what ent (whose lock the caller holds) now holds and
// drops the least recently used other entries while the cache is over
// its bound.
func (cc *chunkCache) resize(ent *cacheEnt) {
	held := int64(len(ent.data))
	for _, sp := range ent.spans {
		held += int64(len(sp.data))
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	el, ok := cc.ents[ent.c]
	if !ok || el.Value.(*cacheEnt) != ent {
		return // not kept, or dropped meanwhile
	}
	cc.used += held - ent.cost
	ent.cost = held
	for cc.used > cc.max && cc.lru.Back() != el {
		cc.remove(cc.lru.Back())
	}
}

func (cc *chunkCache) remove(el *list.Element) {
	ent := el.Value.(*cacheEnt)
	cc.lru.Remove(el)
	delete(cc.ents, ent.c)
	cc.used -= ent.cost
}

// has reports whether chunk c is cached (whole or in part).
func (cc *chunkCache) has(c uint32) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	_, ok := cc.ents[c]
	return ok
}

// damaged records that chunk c is damaged and drops its entry.
func (cc *chunkCache) damaged(c uint32, ent *cacheEnt, err error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.bad[c] = err
	if el, ok := cc.ents[c]; ok && el.Value.(*cacheEnt) == ent {
		cc.remove(el)
	}
}
