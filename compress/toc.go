package compress

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/usmtkit/usmtkit/store"
)

// Field offsets inside an 80-byte entry record (docs/format.md §3).
//
// If you add a field: grow entry_size in a minor revision (append only),
// update docs/format.md, tocEntry, tocBuilder.addEntry, parseTOC and
// Archive.entry, and the store.Entry mapping in reader.go.
const (
	eParent     = 0
	eNameOff    = 4
	eNameLen    = 8
	eType       = 10
	eFlags      = 11
	eWinAttrs   = 12
	eMode       = 16
	eFirstChunk = 20
	eSize       = 24
	eMtime      = 32
	eAtime      = 40
	eCtime      = 48
	eBtime      = 56
	eHdrOff     = 64
	eNChunks    = 72
	eLinkTarget = 76
)

// tocEntry is what the writer knows about one entry when it adds it.
type tocEntry struct {
	parent        uint32 // index in add order (tar order) of the parent directory
	name          string
	typ           uint8
	flags         uint8
	winAttrs      uint32
	mode          uint32
	size          int64
	mtime, atime  int64
	ctime, btime  int64
	hdrOff        uint64
	linkTarget    uint32 // add-order index of the link group's first name, or noIndex
	symlinkTarget string
}

// tocBuilder accumulates entries in tar (depth-first) order, about 80 bytes
// plus the name per entry, and produces the sorted binary TOC.
type tocBuilder struct {
	recs      []byte
	chunks    []byte
	names     []byte
	kind      store.Kind
	version   string
	chunkSize uint32
	frameSize uint32 // 0: one frame per chunk (format version 1)
	createdNs int64
}

func (b *tocBuilder) count() int { return len(b.recs) / entryRecSize }

func (b *tocBuilder) chunkCount() int { return len(b.chunks) / chunkRecSize }

// addEntry appends an entry and returns its add-order index. Chunks added
// next belong to it.
func (b *tocBuilder) addEntry(e *tocEntry) (uint32, error) {
	idx := b.count()
	if uint64(idx) >= uint64(noIndex)-1 {
		return 0, fmt.Errorf("more than %d entries: too many for one archive", noIndex-2)
	}
	extra := len(e.name) + len(e.symlinkTarget)
	if len(e.name) > maxNameLen || len(e.symlinkTarget) > maxSymlinkLen {
		return 0, fmt.Errorf("name or symlink target of %q is too long for the archive", e.name)
	}
	if uint64(len(b.names))+uint64(extra) > uint64(^uint32(0)) {
		return 0, fmt.Errorf("names take more than 4 GiB: too many entries for one archive")
	}
	var r [entryRecSize]byte
	le := binary.LittleEndian
	le.PutUint32(r[eParent:], e.parent)
	le.PutUint32(r[eNameOff:], uint32(len(b.names)))
	le.PutUint16(r[eNameLen:], uint16(len(e.name)))
	r[eType] = e.typ
	r[eFlags] = e.flags
	le.PutUint32(r[eWinAttrs:], e.winAttrs)
	le.PutUint32(r[eMode:], e.mode)
	le.PutUint32(r[eFirstChunk:], uint32(b.chunkCount()))
	size := e.size
	if e.typ == tocSymlink {
		size = int64(len(e.symlinkTarget))
	}
	le.PutUint64(r[eSize:], uint64(size))
	le.PutUint64(r[eMtime:], uint64(e.mtime))
	le.PutUint64(r[eAtime:], uint64(e.atime))
	le.PutUint64(r[eCtime:], uint64(e.ctime))
	le.PutUint64(r[eBtime:], uint64(e.btime))
	le.PutUint64(r[eHdrOff:], e.hdrOff)
	le.PutUint32(r[eLinkTarget:], e.linkTarget)
	b.recs = append(b.recs, r[:]...)
	b.names = append(b.names, e.name...)
	b.names = append(b.names, e.symlinkTarget...)
	return uint32(idx), nil
}

// addChunk appends a chunk record to the last entry.
func (b *tocBuilder) addChunk(frameOff uint64, cSize, uSize uint32, sum uint64) error {
	if b.chunkCount() >= int(noIndex)-1 {
		return fmt.Errorf("more than %d chunks: too many for one archive; use a larger chunk size", noIndex-2)
	}
	var c [chunkRecSize]byte
	binary.LittleEndian.PutUint64(c[0:], frameOff)
	binary.LittleEndian.PutUint32(c[8:], cSize)
	binary.LittleEndian.PutUint32(c[12:], uSize)
	binary.LittleEndian.PutUint64(c[16:], sum)
	b.chunks = append(b.chunks, c[:]...)
	r := b.recs[len(b.recs)-entryRecSize:]
	binary.LittleEndian.PutUint32(r[eNChunks:], binary.LittleEndian.Uint32(r[eNChunks:])+1)
	return nil
}

// setFlag ors a flag into an entry.
func (b *tocBuilder) setFlag(idx uint32, f uint8) { b.recs[int(idx)*entryRecSize+eFlags] |= f }

// mark/rollback drop the entries and chunks added after a mark (the writer
// removes a file it could not read).
type tocMark struct{ recs, chunks, names int }

func (b *tocBuilder) mark() tocMark { return tocMark{len(b.recs), len(b.chunks), len(b.names)} }

func (b *tocBuilder) rollback(m tocMark) {
	b.recs, b.chunks, b.names = b.recs[:m.recs], b.chunks[:m.chunks], b.names[:m.names]
}

// finish sorts the entries by (parent, name) — a breadth-first order in
// which every directory's children are one run sorted bytewise — remaps
// parent and link indices, and returns the binary TOC.
func (b *tocBuilder) finish() ([]byte, error) {
	n := b.count()
	if n == 0 || b.recs[eType] != tocDir {
		return nil, fmt.Errorf("internal error: the TOC has no root directory")
	}
	le := binary.LittleEndian
	rec := func(i uint32) []byte { return b.recs[int(i)*entryRecSize : int(i+1)*entryRecSize] }
	name := func(i uint32) []byte {
		r := rec(i)
		off := le.Uint32(r[eNameOff:])
		return b.names[off : off+uint32(le.Uint16(r[eNameLen:]))]
	}
	// Group children by parent, keeping add order (a counting sort).
	start := make([]uint32, n+1)
	for i := 1; i < n; i++ {
		p := le.Uint32(rec(uint32(i))[eParent:])
		if int(p) >= i {
			return nil, fmt.Errorf("internal error: entry %q added before its parent", name(uint32(i)))
		}
		start[p+1]++
	}
	for i := 1; i <= n; i++ {
		start[i] += start[i-1]
	}
	kids := make([]uint32, n)
	fill := append([]uint32(nil), start[:n]...)
	for i := 1; i < n; i++ {
		p := le.Uint32(rec(uint32(i))[eParent:])
		kids[fill[p]] = uint32(i)
		fill[p]++
	}
	fill = nil
	for p := 0; p < n; p++ {
		run := kids[start[p]:start[p+1]]
		sorted := true
		for k := 1; k < len(run); k++ {
			if bytes.Compare(name(run[k-1]), name(run[k])) >= 0 {
				sorted = false
				break
			}
		}
		if sorted {
			continue
		}
		// The source did not list names in bytewise order: sort them here so
		// lookups stay binary searches; tar order is unaffected.
		sort.SliceStable(run, func(x, y int) bool { return bytes.Compare(name(run[x]), name(run[y])) < 0 })
		for k := 1; k < len(run); k++ {
			if bytes.Equal(name(run[k-1]), name(run[k])) {
				return nil, fmt.Errorf("the source lists the name %q twice in one directory", name(run[k]))
			}
		}
	}
	// Breadth-first numbering.
	order := make([]uint32, 1, n)
	for k := 0; k < len(order); k++ {
		p := order[k]
		order = append(order, kids[start[p]:start[p+1]]...)
	}
	kids, start = nil, nil
	newIdx := make([]uint32, n)
	for k, old := range order {
		newIdx[old] = uint32(k)
	}
	out := make([]byte, tocHeaderSize, tocHeaderSize+len(b.recs)+len(b.chunks)+len(b.names))
	copy(out, tocMagic)
	le.PutUint64(out[8:], uint64(n))
	le.PutUint64(out[16:], uint64(b.chunkCount()))
	le.PutUint64(out[24:], uint64(len(b.names)))
	le.PutUint32(out[40:], b.chunkSize)
	le.PutUint32(out[120:], b.frameSize)
	le.PutUint16(out[44:], entryRecSize)
	le.PutUint16(out[46:], chunkRecSize)
	le.PutUint64(out[48:], uint64(b.createdNs))
	copy(out[56:56+tocKindFieldLen], b.kind)
	copy(out[88:88+tocKindFieldLen], b.version)
	for _, old := range order {
		pos := len(out)
		out = append(out, rec(old)...)
		r := out[pos:]
		le.PutUint32(r[eParent:], newIdx[le.Uint32(r[eParent:])])
		if lt := le.Uint32(r[eLinkTarget:]); lt != noIndex {
			le.PutUint32(r[eLinkTarget:], newIdx[lt])
		}
	}
	out = append(out, b.chunks...)
	out = append(out, b.names...)
	return out, nil
}

// toc is a validated, decoded TOC used in place: entries are read from raw
// on demand, so a million entries cost their 80 bytes each and nothing more.
type toc struct {
	raw       []byte
	n         int
	nChunks   int
	es, cs    int // record strides
	entOff    int
	chunkOff  int
	namesOff  int
	namesLen  int
	kind      store.Kind
	version   string
	chunkSize uint32
	frameSize uint32 // version 2: every frame of a chunk but the last holds this; 0 in version 1 (checkFrameSize)
	createdNs int64
	// nlink counts the names of each hard-link group that has more than
	// one, keyed by the group's first name; absent means 1.
	nlink map[uint32]uint32
	// dataBytes is the bytes of every file's data, each hard-link group
	// once (summed while the TOC is checked at open).
	dataBytes int64
}

func (t *toc) rec(i uint32) []byte { o := t.entOff + int(i)*t.es; return t.raw[o : o+entryRecSize] }

func (t *toc) parent(i uint32) uint32 { return binary.LittleEndian.Uint32(t.rec(i)[eParent:]) }
func (t *toc) typ(i uint32) uint8     { return t.rec(i)[eType] }
func (t *toc) size(i uint32) int64    { return int64(binary.LittleEndian.Uint64(t.rec(i)[eSize:])) }
func (t *toc) flags(i uint32) uint8   { return t.rec(i)[eFlags] }

func (t *toc) name(i uint32) []byte {
	r := t.rec(i)
	off := t.namesOff + int(binary.LittleEndian.Uint32(r[eNameOff:]))
	return t.raw[off : off+int(binary.LittleEndian.Uint16(r[eNameLen:]))]
}

func (t *toc) symlinkTarget(i uint32) []byte {
	r := t.rec(i)
	off := t.namesOff + int(binary.LittleEndian.Uint32(r[eNameOff:])) + int(binary.LittleEndian.Uint16(r[eNameLen:]))
	return t.raw[off : off+int(binary.LittleEndian.Uint64(r[eSize:]))]
}

// chunkRange returns the first chunk index and the count of a file entry.
func (t *toc) chunkRange(i uint32) (first, n uint32) {
	r := t.rec(i)
	return binary.LittleEndian.Uint32(r[eFirstChunk:]), binary.LittleEndian.Uint32(r[eNChunks:])
}

type chunkRec struct {
	off   uint64
	cSize uint32
	uSize uint32
	sum   uint64
}

func (t *toc) chunk(c uint32) chunkRec {
	o := t.chunkOff + int(c)*t.cs
	b := t.raw[o : o+chunkRecSize]
	return chunkRec{
		off:   binary.LittleEndian.Uint64(b[0:]),
		cSize: binary.LittleEndian.Uint32(b[8:]),
		uSize: binary.LittleEndian.Uint32(b[12:]),
		sum:   binary.LittleEndian.Uint64(b[16:]),
	}
}

// children returns the index range [lo, hi) of a directory's children.
// Entries are sorted by parent, so it is two binary searches.
func (t *toc) children(dir uint32) (lo, hi uint32) {
	l := sort.Search(t.n-1, func(k int) bool { return t.parent(uint32(k+1)) >= dir }) + 1
	h := sort.Search(t.n-1, func(k int) bool { return t.parent(uint32(k+1)) > dir }) + 1
	return uint32(l), uint32(h)
}

// lookupChild finds a child by name with a binary search in the
// directory's run.
func (t *toc) lookupChild(dir uint32, name string) (uint32, bool) {
	lo, hi := t.children(dir)
	k := sort.Search(int(hi-lo), func(k int) bool { return string(t.name(lo+uint32(k))) >= name })
	if k < int(hi-lo) && string(t.name(lo+uint32(k))) == name {
		return lo + uint32(k), true
	}
	return 0, false
}

// linkTarget resolves a hard link to its group's first name.
func (t *toc) linkTarget(i uint32) uint32 {
	if t.typ(i) == tocHardlink {
		return binary.LittleEndian.Uint32(t.rec(i)[eLinkTarget:])
	}
	return i
}

// parseTOC validates a decoded TOC completely (docs/format.md §4, checks 5–9)
// so that every accessor above can index without further checks.
// dataEnd is the TOC frame offset: no frame may reach past it.
func parseTOC(raw []byte, entryCount uint64, dataEnd uint64) (*toc, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: invalid TOC: %s", store.ErrCorrupt, fmt.Sprintf(format, a...))
	}
	le := binary.LittleEndian
	if len(raw) < tocHeaderSize || string(raw[:8]) != tocMagic {
		return nil, bad("bad header")
	}
	n, nc, nl := le.Uint64(raw[8:]), le.Uint64(raw[16:]), le.Uint64(raw[24:])
	if n != entryCount {
		return nil, bad("%d entries, the footer says %d", n, entryCount)
	}
	if f := le.Uint64(raw[32:]); uint32(f) != 0 {
		return nil, fmt.Errorf("%w: the TOC sets unknown required flags %#x; upgrade usmtkit", ErrVersion, uint32(f))
	}
	es, cs := uint64(le.Uint16(raw[44:])), uint64(le.Uint16(raw[46:]))
	if es < entryRecSize || cs < chunkRecSize {
		return nil, bad("record sizes %d/%d", es, cs)
	}
	total := uint64(len(raw))
	if n == 0 || n >= uint64(noIndex) || nc >= uint64(noIndex) || nl > total ||
		n > total/es || nc > total/cs || tocHeaderSize+n*es+nc*cs+nl != total {
		return nil, bad("sizes do not add up (%d entries, %d chunks, %d name bytes in %d bytes)", n, nc, nl, total)
	}
	t := &toc{
		raw: raw, n: int(n), nChunks: int(nc), es: int(es), cs: int(cs),
		entOff:    tocHeaderSize,
		chunkOff:  tocHeaderSize + int(n*es),
		namesOff:  tocHeaderSize + int(n*es+nc*cs),
		namesLen:  int(nl),
		chunkSize: le.Uint32(raw[40:]),
		frameSize: le.Uint32(raw[120:]),
		createdNs: int64(le.Uint64(raw[48:])),
		kind:      store.Kind(cString(raw[56 : 56+tocKindFieldLen])),
		version:   cString(raw[88 : 88+tocKindFieldLen]),
	}
	var prevParent uint32
	var prevName []byte
	for i := uint32(0); i < uint32(n); i++ {
		r := t.rec(i)
		p := le.Uint32(r[eParent:])
		nameOff, nameLen := uint64(le.Uint32(r[eNameOff:])), uint64(le.Uint16(r[eNameLen:]))
		typ := r[eType]
		size := le.Uint64(r[eSize:])
		first, cnt := le.Uint32(r[eFirstChunk:]), le.Uint32(r[eNChunks:])
		hdr := le.Uint64(r[eHdrOff:])
		if nameOff+nameLen > nl {
			return nil, bad("entry %d: name outside the names table", i)
		}
		name := t.name(i)
		if i == 0 {
			if typ != tocDir || nameLen != 0 || p != 0 {
				return nil, bad("entry 0 is not the root directory")
			}
		} else {
			if p >= i || t.typ(p) != tocDir {
				return nil, bad("entry %d: parent %d is not an earlier directory", i, p)
			}
			if nameLen == 0 || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 ||
				string(name) == "." || string(name) == ".." {
				return nil, bad("entry %d: invalid name %q", i, name)
			}
			if i > 1 && (p < prevParent || (p == prevParent && bytes.Compare(prevName, name) >= 0)) {
				return nil, bad("entry %d (%q) is out of order or duplicated", i, name)
			}
			if hdr >= dataEnd {
				return nil, bad("entry %d: header frame offset %d outside the data", i, hdr)
			}
			prevParent, prevName = p, name
		}
		switch typ {
		case tocDir:
			if size != 0 || cnt != 0 {
				return nil, bad("directory entry %d has data", i)
			}
		case tocFile:
			if uint64(first)+uint64(cnt) > nc || (cnt == 0) != (size == 0) {
				return nil, bad("entry %d: chunk range %d+%d invalid for size %d", i, first, cnt, size)
			}
			var sum, end uint64
			for c := first; c < first+cnt; c++ {
				ch := t.chunk(c)
				if ch.uSize == 0 || ch.uSize > MaxChunkSize || ch.cSize == 0 || ch.cSize > maxChunkCSize ||
					ch.off < end || ch.off > dataEnd || uint64(ch.cSize) > dataEnd-ch.off {
					return nil, bad("entry %d (%q): chunk %d out of range", i, name, c-first)
				}
				end = ch.off + uint64(ch.cSize)
				sum += uint64(ch.uSize)
			}
			if sum != size {
				return nil, bad("entry %d (%q): chunks hold %d bytes, size is %d", i, name, sum, size)
			}
			t.dataBytes += int64(size)
		case tocHardlink:
			lt := le.Uint32(r[eLinkTarget:])
			if uint64(lt) >= n || t.typ(lt) != tocFile || t.size(lt) != int64(size) || cnt != 0 {
				return nil, bad("hard link entry %d (%q) has an invalid target", i, name)
			}
			if t.nlink == nil {
				t.nlink = map[uint32]uint32{}
			}
			if t.nlink[lt] == 0 {
				t.nlink[lt] = 1
			}
			t.nlink[lt]++
		case tocSymlink:
			if size > maxSymlinkLen || nameOff+nameLen+size > nl || cnt != 0 {
				return nil, bad("symlink entry %d (%q) has an invalid target", i, name)
			}
		default:
			return nil, bad("entry %d has unknown type %d", i, typ)
		}
		if int64(size) < 0 {
			return nil, bad("entry %d: negative size", i)
		}
	}
	return t, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
