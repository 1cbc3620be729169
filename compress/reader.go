package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// ArchiveVersion is Info.Version of an archive of format version v
// ("usmtkit archive v2").
func ArchiveVersion(v uint32) string { return fmt.Sprintf("usmtkit archive v%d", v) }

// DefaultCacheBytes bounds the decoded chunks an Archive keeps: the
// chunk a sequential reader is in and the one decoded ahead of it (4 MiB
// each by default). A FUSE mount gives what random reads decode to the
// kernel's page cache, which serves later reads better than a bigger
// cache would (docs/mount.md, Speed); 16 MiB cost 8-13 MiB more peak RSS
// on a mount for no measurable speed.
const DefaultCacheBytes = 8 << 20

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
	// frames remembers where the frames of chunks are (reader_frames.go)
	// after their cache entries are gone.
	frames frameMemo
	// lastDir is the folder the previous lookup ended in or below
	// (reader_store.go).
	lastDir atomic.Pointer[dirMemo]
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

// openRO opens an archive through safeio: read-only, O_NOATIME where the
// kernel lets us (it needs ownership or CAP_FOWNER).
func openRO(path string) (*os.File, error) { return safeio.OpenFilePath(path) }

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
	return OpenReaderAt(f, fi.Size(), path, f.Close, opts)
}

// OpenReaderAt opens an archive held anywhere a ReaderAt reaches (an
// object in a bucket, package objstore): name is what messages call it,
// closeFn (may be nil) runs on Close. On error closeFn is not called.
func OpenReaderAt(f io.ReaderAt, size int64, path string, closeFn func() error, opts ReaderOptions) (*Archive, error) {
	fi := sizeOnly(size)
	maxTOC := opts.MaxTOCBytes
	if maxTOC == 0 {
		maxTOC = DefaultMaxTOCBytes
	}
	ft, raw, err := readIndex(f, fi.Size(), maxTOC)
	if err != nil {
		if errors.Is(err, ErrNoIndex) && !firstFrameIsHeader(f, fi.Size()) {
			return nil, foreignZstdError(path)
		}
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
	a.close = closeFn
	return a, nil
}

type sizeOnly int64

func (s sizeOnly) Size() int64 { return int64(s) }

func newArchive(r io.ReaderAt, path string, size int64, ft *footer, t *toc, opts ReaderOptions) *Archive {
	a := &Archive{f: r, path: path, size: size, ft: ft, t: t, ahead: make(chan struct{}, maxAhead)}
	cb := opts.CacheBytes
	if cb == 0 {
		cb = DefaultCacheBytes
	}
	a.cache = newChunkCache(cb)
	// Pooled chunk buffers live outside the Go heap (reader_bufs.go): an
	// archive dropped without Close must still give its cache's back.
	runtime.AddCleanup(a, (*chunkCache).release, a.cache)
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

// firstFrameIsHeader reports whether the file's first zstd frame is a
// usmtkit header frame: small, with its content size, decoding to exactly
// one entry's tar header blocks. Every usmtkit archive starts with one, even
// a cut or unfinished one; a plain `tar | zstd` file starts with a frame of
// tar data (or of unknown size) instead.
func firstFrameIsHeader(r io.ReaderAt, size int64) bool {
	n, fcs, err := zstdFrameLen(r, 0, uint64(size))
	if err != nil || fcs < 0 || fcs > maxHeaderFrame || n > maxHeaderFrame {
		return false
	}
	frame := make([]byte, n)
	if _, err := r.ReadAt(frame, 0); err != nil {
		return false
	}
	dec, err := chunkDecoder()
	if err != nil {
		return false
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, fcs))
	if err != nil {
		return false
	}
	_, ok := parseHeaderFrame(data)
	return ok
}

// foreignZstdError is the error for a zstd file that is not a usmtkit
// archive: no store here (exit 10), and how to read it instead.
func foreignZstdError(path string) error {
	return fmt.Errorf("%s is a zstd file but not a usmtkit archive (no usmtkit footer, and it does not start with a usmtkit header frame): %w; if it is a tar archive, read it with `tar --zstd -xf %s`", path, store.ErrNoStore, path)
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
	// The frame header first: a footer that points the TOC at most of the
	// file must be refused before that much is allocated and read.
	var fh [8]byte
	if _, err := r.ReadAt(fh[:], int64(ft.tocOffset)); err != nil {
		return nil, nil, fmt.Errorf("reading the TOC: %w", err)
	}
	if binary.LittleEndian.Uint32(fh[:]) != skippableMagic || uint64(binary.LittleEndian.Uint32(fh[4:])) != ft.tocCSize {
		return nil, nil, fmt.Errorf("%w: the footer does not point at a TOC frame", store.ErrCorrupt)
	}
	payload := make([]byte, ft.tocCSize)
	if _, err := r.ReadAt(payload, int64(ft.tocOffset)+8); err != nil {
		return nil, nil, fmt.Errorf("reading the TOC: %w", err)
	}
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

// Totals implements store.Totaler from the TOC: every entry (the root
// included) and the bytes of the files' data, hard-linked data once.
func (a *Archive) Totals() (entries, bytes int64) { return int64(a.t.n), a.t.dataBytes }

// Info implements store.Store.
func (a *Archive) Info() *store.Info {
	info := a.info
	return &info
}

// Close implements store.Store.
func (a *Archive) Close() error {
	a.cache.release()
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
