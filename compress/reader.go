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
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// ArchiveVersion is Info.Version of an opened archive.
const ArchiveVersion = "usmtkit archive v1"

// DefaultCacheBytes bounds the decoded chunks an Archive keeps.
const DefaultCacheBytes = 64 << 20

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
	if err != nil {
		return nil, indexError(path, err)
	}
	a := newArchive(f, path, fi.Size(), ft, t, opts)
	a.close = f.Close
	return a, nil
}

func newArchive(r io.ReaderAt, path string, size int64, ft *footer, t *toc, opts ReaderOptions) *Archive {
	a := &Archive{f: r, path: path, size: size, ft: ft, t: t}
	cb := opts.CacheBytes
	if cb == 0 {
		cb = DefaultCacheBytes
	}
	a.cache = newChunkCache(cb)
	a.info = store.Info{
		Kind:    store.KindArchive,
		Version: ArchiveVersion,
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
		Kind: store.KindArchive, Version: ArchiveVersion, Level: store.LevelArchive,
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
}

func (f *archiveFile) Size() int64  { return f.size }
func (f *archiveFile) Close() error { return nil }

// ReadAt serves any byte range: a binary search finds the first chunk, and
// each chunk comes from the cache or is decoded and verified.
func (f *archiveFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &store.PathError{Op: "reading", Path: f.path, Err: errors.New("negative offset")}
	}
	if off >= f.size {
		return 0, io.EOF
	}
	if f.a.t.flags(f.idx)&entIncomplete != 0 {
		return 0, &store.PathError{Op: "reading", Path: f.path, Err: fmt.Errorf("%w: the source could not be read completely when the archive was written; the archive holds zeros", store.ErrCorrupt)}
	}
	k := searchEnds(f.ends, off)
	n := 0
	for n < len(p) && k < len(f.ends) {
		data, err := f.a.chunkData(f.path, f.idx, f.first, uint32(k), uint32(len(f.ends)), f.size)
		if err != nil {
			return n, err
		}
		start := int64(0)
		if k > 0 {
			start = f.ends[k-1]
		}
		n += copy(p[n:], data[off+int64(n)-start:])
		k++
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
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

// chunkData returns the logical bytes of chunk k of a file, from the cache
// or decoded and verified.
func (a *Archive) chunkData(path string, idx, first, k, n uint32, size int64) ([]byte, error) {
	c := first + k
	return a.cache.get(c, func() ([]byte, error) {
		data, err := a.decodeChunk(c, k == n-1, size)
		if err != nil {
			ch := a.t.chunk(c)
			return nil, &store.PathError{Op: "reading", Path: path,
				Err: fmt.Errorf("chunk %d of %d (archive offset %d): %w", k, n, ch.off, err)}
		}
		return data, nil
	})
}

// framePool holds buffers for compressed frames read from the archive; the
// decoded data is allocated fresh because the cache keeps it.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// decodeChunk reads, decodes and verifies one chunk frame. The error wraps
// store.ErrCorrupt when the data is damaged.
func (a *Archive) decodeChunk(c uint32, last bool, fileSize int64) ([]byte, error) {
	ch := a.t.chunk(c)
	bp := framePool.Get().(*[]byte)
	defer framePool.Put(bp)
	if cap(*bp) < int(ch.cSize) {
		*bp = make([]byte, ch.cSize)
	}
	frame := (*bp)[:ch.cSize]
	if _, err := a.f.ReadAt(frame, int64(ch.off)); err != nil {
		return nil, fmt.Errorf("reading the archive: %w", err)
	}
	want := int(ch.uSize)
	if last {
		want += int(tarPad(fileSize))
	}
	dec, err := chunkDecoder()
	if err != nil {
		return nil, err
	}
	if len(frame) < 4 || binary.LittleEndian.Uint32(frame) != zstdMagic {
		return nil, fmt.Errorf("%w: no zstd frame at the recorded offset", store.ErrCorrupt)
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, want))
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

// chunkCache is an LRU of decoded chunks bounded in bytes. Concurrent
// misses on one chunk decode it once.
type chunkCache struct {
	max int64

	mu       sync.Mutex
	used     int64
	lru      *list.List // of *cacheEnt, front = most recent
	ents     map[uint32]*list.Element
	inflight map[uint32]*cacheCall
}

type cacheEnt struct {
	c    uint32
	data []byte
}

type cacheCall struct {
	done chan struct{}
	data []byte
	err  error
}

func newChunkCache(max int64) *chunkCache {
	return &chunkCache{max: max, lru: list.New(), ents: map[uint32]*list.Element{}, inflight: map[uint32]*cacheCall{}}
}

func (cc *chunkCache) get(c uint32, load func() ([]byte, error)) ([]byte, error) {
	if cc.max < 0 {
		return load()
	}
	cc.mu.Lock()
	if el, ok := cc.ents[c]; ok {
		cc.lru.MoveToFront(el)
		data := el.Value.(*cacheEnt).data
		cc.mu.Unlock()
		return data, nil
	}
	if call, ok := cc.inflight[c]; ok {
		cc.mu.Unlock()
		<-call.done
		return call.data, call.err
	}
	call := &cacheCall{done: make(chan struct{})}
	cc.inflight[c] = call
	cc.mu.Unlock()

	call.data, call.err = load()

	cc.mu.Lock()
	delete(cc.inflight, c)
	if call.err == nil && int64(len(call.data)) <= cc.max {
		cc.ents[c] = cc.lru.PushFront(&cacheEnt{c: c, data: call.data})
		cc.used += int64(len(call.data))
		for cc.used > cc.max {
			el := cc.lru.Back()
			ent := el.Value.(*cacheEnt)
			cc.lru.Remove(el)
			delete(cc.ents, ent.c)
			cc.used -= int64(len(ent.data))
		}
	}
	cc.mu.Unlock()
	close(call.done)
	return call.data, call.err
}
