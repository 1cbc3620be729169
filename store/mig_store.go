package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// MIGStore shows the File\ records of an unencrypted USMT.MIG as a store,
// EXPERIMENTALLY: each `File\C:\...` record is the file C:\... (store path
// USMT/File/C$/...), its content the record's inflated zlib stream. That
// layout is inferred from public descriptions (file(1) Magdir/windows,
// PhotoRec file_mig.c; docs/stores.md) and was never checked against a
// store written by Windows, so it is opt-in (--experimental-mig) and says
// so everywhere.
//
// Opening walks the records once and inflates every payload (streamed, its
// Adler-32 checked): that is how a file's size is learnt, and how a payload
// that is not zlib is found before it is shown. What is kept is an index —
// per file its name, its record's offset and its size (about 48 bytes plus
// the name), per folder the same — never a payload. Everything the walk
// cannot interpret is listed in LeftOut, never guessed: a record kind other
// than File, a name that is not a drive path or not valid UTF-16, a payload
// that does not inflate, a path named by two records, a file name also used
// as a folder, and parts of the file that are not records at all.
type MIGStore struct {
	r       io.ReaderAt
	file    *os.File // nil when r is not a file (the fuzz tests)
	info    Info
	mig     *MIGInfo
	size    int64
	mtimeNs int64

	nodes []migNode
	names []byte   // every node's name, back to back (nodes hold no pointers: the GC skips them)
	dirs  []migDir // by folder id; 0 is the root

	leftOut      []MIGLeftOut // the first migLeftOutKept
	leftOutCount int64
	files, bytes int64
	marker       string // EXPERIMENTAL.txt, when asked for
}

// MIGLeftOut is something of a USMT.MIG the experimental reader does not show.
type MIGLeftOut struct {
	Offset int64  `json:"offset"`         // the record's offset in the file
	Name   string `json:"record_name"`    // as decoded (lossily, when it is not valid UTF-16)
	Path   string `json:"path,omitempty"` // the Windows path, when the name had one
	Why    string `json:"why"`
}

// MIGStoreOptions configure OpenMIG.
type MIGStoreOptions struct {
	// Marker adds MIGMarkerName at the store root and in USMT/File (the
	// top of a mount's windows view), saying what is experimental and
	// listing what was left out.
	Marker bool
	// Progress, when set, is called as the walk goes with the bytes of the
	// MIG walked so far and its size.
	Progress func(done, total int64)
}

// MIGMarkerName is the file a mount of a MIG carries at its root.
const MIGMarkerName = "EXPERIMENTAL.txt"

// MIGExperimentalNote is what every command reading a MIG's contents says.
const MIGExperimentalNote = "EXPERIMENTAL: the contents of a USMT.MIG are read by a layout inferred from public descriptions (file(1), PhotoRec), never checked against a store written by Windows; compare important files with usmtutils /extract (docs/stores.md)"

// migLeftOutKept bounds the left-out list held in memory; all are counted.
const migLeftOutKept = 1000

// migStoreMaxIndex bounds the index's memory (estimated as below): a
// million files with 30-byte names take about 80 MB. Past it the rest of
// the file is left out, and said so.
var migStoreMaxIndex int64 = 512 << 20

// migNodeCost is the estimated bytes one index node costs besides its
// name: the node (32 bytes) and the slack of growing the slice.
const migNodeCost = 48

// migNode is one file or folder of the index: 32 bytes and no pointer.
type migNode struct {
	nameOff, nameLen uint32 // the name: names[nameOff:nameOff+nameLen]
	parent           int32  // folder id of the folder holding it
	dir              int32  // its own folder id; -1 for a file
	rec              int64  // the record's offset; -1 for the marker
	size             int64  // inflated bytes
}

// name is node i's name, a view of the names arena (which is only ever
// appended to, and not at all once the store is open).
func (s *MIGStore) name(i int32) string {
	n := &s.nodes[i]
	return unsafe.String(&s.names[n.nameOff], int(n.nameLen))
}

type migDir struct {
	node   int32 // its index in nodes; -1 for the root
	lo, hi int32 // its children: nodes[lo:hi], sorted by name
}

type migDirKey struct {
	parent int32
	name   string
}

// OpenMIG opens an unencrypted USMT.MIG (info from WalkMIG) as a store.
// An encrypted one is refused with ErrEncrypted.
func OpenMIG(ctx context.Context, path string, info *MIGInfo, o MIGStoreOptions) (*MIGStore, error) {
	if info.Encrypted {
		return nil, info.openError(path)
	}
	r := &fsReader{}
	f, err := r.openRead(path, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, describeErrno(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() != info.Size {
		f.Close()
		return nil, fmt.Errorf("%s: %w (it was %d bytes when identified, it is %d now)", path, ErrChanged, info.Size, fi.Size())
	}
	s, err := openMIGReader(ctx, f, info, fi.ModTime().UnixNano(), path, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.file = f
	return s, nil
}

// openMIGReader builds the store over r (info.Size bytes).
func openMIGReader(ctx context.Context, r io.ReaderAt, info *MIGInfo, mtimeNs int64, path string, o MIGStoreOptions) (*MIGStore, error) {
	s := &MIGStore{r: r, mig: info, size: info.Size, mtimeNs: mtimeNs}
	s.info = Info{Kind: KindMIG, Version: "USMT 4+", Level: LevelMIGFile, Input: []string{path}, Roots: []string{path}}
	b := &migBuilder{s: s, dirIDs: map[migDirKey]int32{}, maxIndex: migStoreMaxIndex}
	b.s.dirs = []migDir{{node: -1}}
	// The structural walk counted the records: one node each, and room
	// for folders, so the slice does not double past what it needs.
	s.nodes = make([]migNode, 0, min(int64(info.Records)+int64(info.Records)/8+16, migStoreMaxIndex/migNodeCost))
	if err := b.walk(ctx, o.Progress); err != nil {
		return nil, err
	}
	var markers []int
	if o.Marker {
		markers = append(markers, b.addNode(0, MIGMarkerName, -1, -1, 0))
		markers = append(markers, b.addNode(b.dirOf("USMT/File"), MIGMarkerName, -1, -1, 0))
	}
	b.finish()
	if o.Marker {
		s.marker = s.markerText()
		for i := range s.nodes {
			if s.nodes[i].rec == -1 && s.nodes[i].dir < 0 {
				s.nodes[i].size = int64(len(s.marker))
			}
		}
	}
	return s, nil
}

// OpenMIGDetected is OpenMIG on what Detect found (a KindMIG detection),
// keeping its version, level, input and notes.
func OpenMIGDetected(ctx context.Context, d *Detection, o MIGStoreOptions) (*MIGStore, error) {
	if d.Kind != KindMIG || d.MIG == nil {
		return nil, fmt.Errorf("%s is a %s store, not a USMT.MIG", d.Input, d.Kind)
	}
	s, err := OpenMIG(ctx, d.Root, d.MIG, o)
	if err != nil {
		return nil, err
	}
	s.info.Version, s.info.Level, s.info.Input = d.Version, d.Level, []string{d.Input}
	s.info.Notes = append(s.info.Notes, d.Notes...)
	return s, nil
}

// LeftOut returns what was not shown (the first 1000) and how many in all.
func (s *MIGStore) LeftOut() ([]MIGLeftOut, int64) { return s.leftOut, s.leftOutCount }

// Files and Bytes are the files shown and their inflated bytes (the
// marker not counted).
func (s *MIGStore) Files() int64 { return s.files }
func (s *MIGStore) Bytes() int64 { return s.bytes }

// MIG is the structural walk the store was opened with.
func (s *MIGStore) MIG() *MIGInfo { return s.mig }

func (s *MIGStore) leave(l MIGLeftOut) {
	s.leftOutCount++
	if len(s.leftOut) < migLeftOutKept {
		s.leftOut = append(s.leftOut, l)
	}
}

// migBuilder builds the index of a MIGStore.
type migBuilder struct {
	s        *MIGStore
	dirIDs   map[migDirKey]int32
	index    int64 // estimated bytes held
	maxIndex int64
}

func (b *migBuilder) addNode(parent int32, name string, dir int32, rec, size int64) int {
	s := b.s
	s.nodes = append(s.nodes, migNode{nameOff: uint32(len(s.names)), nameLen: uint32(len(name)), parent: parent, dir: dir, rec: rec, size: size})
	s.names = append(s.names, name...)
	b.index += migNodeCost + int64(len(name))
	return len(s.nodes) - 1
}

// dirOf returns the folder id of a store path, creating the folders.
func (b *migBuilder) dirOf(p string) int32 {
	id := int32(0)
	for p != "" {
		var comp string
		comp, p, _ = strings.Cut(p, "/")
		k := migDirKey{id, comp}
		next, ok := b.dirIDs[k]
		if !ok {
			next = int32(len(b.s.dirs))
			b.s.dirs = append(b.s.dirs, migDir{})
			b.addNode(id, comp, next, -1, 0)
			b.dirIDs[migDirKey{id, strings.Clone(comp)}] = next
		}
		id = next
	}
	return id
}

// walk reads every record once, from the first to the end of the chain.
func (b *migBuilder) walk(ctx context.Context, progress func(done, total int64)) error {
	s := b.s
	info, size := s.mig, s.size
	if info.FirstRecord < 0 {
		s.leave(MIGLeftOut{Offset: 0, Why: "no record chain was found: nothing could be read (usmtkit info says why)"})
		return nil
	}
	cur := newMIGCursor(s.r, size)
	pi := newPayloadInflater(s.r)
	pi.cur = cur
	defer pi.close()
	off := info.FirstRecord
	lastTick := time.Now()
	for n := 0; off < size && size-off != migTail; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if progress != nil && n&63 == 0 && time.Since(lastTick) > 200*time.Millisecond {
			progress(off, size)
			lastTick = time.Now()
		}
		rest := func() string { return fmt.Sprintf("%#x to the end of the file (%d bytes)", off, size-off) }
		if n >= migMaxRecords {
			s.leave(MIGLeftOut{Offset: off, Why: fmt.Sprintf("not read: the walk stops after %d records; from %s", migMaxRecords, rest())})
			break
		}
		if b.index > b.maxIndex {
			s.leave(MIGLeftOut{Offset: off, Why: fmt.Sprintf("not read: the index of the records before it reached %d MiB, the most usmtkit holds; from %s", b.maxIndex>>20, rest())})
			break
		}
		rec, ok := readMIGRecord(cur, off)
		if !ok {
			what := "are not a record (the chain breaks there)"
			if off+24 > size {
				what = "are too short to be a record (truncated?)"
			}
			s.leave(MIGLeftOut{Offset: off, Why: fmt.Sprintf("not read: the bytes from %s %s", rest(), what)})
			break
		}
		l := MIGLeftOut{Offset: off}
		leave := func(why string) {
			if l.Name == "" && rec.NameEnd() <= size {
				// For display only: lossy, and cut at migNameCap.
				nb, _ := cur.at(rec.Offset+24, int(min(rec.NameLen, migNameCap)))
				l.Name = decodeUTF16LE(nb)
			}
			l.Why = why
			s.leave(l)
		}
		if rec.Next > size {
			leave(fmt.Sprintf("the record runs past the end of the file (it needs %d bytes, the file has %d): truncated", rec.Next, size))
			break
		}
		off = rec.Next
		if rec.NameLen > rec.Size {
			leave("the name is longer than the record")
			continue
		}
		if rec.NameLen > migMaxNameBytes {
			leave(fmt.Sprintf("the name is %d bytes, longer than a Windows path can be", rec.NameLen))
			continue
		}
		nb, _ := cur.at(rec.Offset+24, int(rec.NameLen))
		name, err := decodeMIGName(nb)
		if err != nil {
			leave(err.Error())
			continue
		}
		l.Name = name
		sp, why := migFileStorePath(name)
		if why != "" {
			leave(why)
			continue
		}
		l.Path = MIGWindowsPath(name)
		inflated, detail := pi.inflate(ctx, rec.NameEnd(), rec.Next, migMaxInflate)
		if err := ctx.Err(); err != nil {
			return err
		}
		if detail != "" {
			leave(detail)
			continue
		}
		dir, base := SplitPath(sp)
		b.addNode(b.dirOf(dir), base, -1, rec.Offset, inflated)
	}
	if progress != nil {
		progress(size, size)
	}
	return nil
}

// finish sorts the index, leaves out names given twice, and records each
// folder's children.
func (b *migBuilder) finish() {
	s := b.s
	b.dirIDs = nil
	byName := func(a, c migNode) int {
		if a.parent != c.parent {
			return cmp.Compare(a.parent, c.parent)
		}
		return bytes.Compare(s.names[a.nameOff:a.nameOff+a.nameLen], s.names[c.nameOff:c.nameOff+c.nameLen])
	}
	slices.SortFunc(s.nodes, byName)
	s.indexDirs()
	drop := false
	for i := 0; i < len(s.nodes); {
		j := i + 1
		for j < len(s.nodes) && byName(s.nodes[i], s.nodes[j]) == 0 {
			j++
		}
		if j-i > 1 {
			folder := slices.ContainsFunc(s.nodes[i:j], func(n migNode) bool { return n.dir >= 0 })
			nfiles := 0
			for _, n := range s.nodes[i:j] {
				if n.dir < 0 {
					nfiles++
				}
			}
			for k := i; k < j; k++ {
				n := &s.nodes[k]
				if n.dir >= 0 {
					continue
				}
				win, _ := MapPath(KindUSMTDir, s.pathOf(int32(k)))
				l := MIGLeftOut{Offset: n.rec, Path: win, Name: `File\` + win}
				if folder {
					l.Why = "other records use this name as a folder (is this a folder's own record?): which is meant is not known"
				} else {
					l.Why = fmt.Sprintf("%d records name this same path: which one holds the file is not known", nfiles)
				}
				s.leave(l)
				n.parent = -1 // dropped below
				drop = true
			}
		}
		i = j
	}
	if drop {
		s.nodes = slices.DeleteFunc(s.nodes, func(n migNode) bool { return n.parent < 0 })
		s.indexDirs()
		slices.SortStableFunc(s.leftOut, func(a, c MIGLeftOut) int { return cmp.Compare(a.Offset, c.Offset) })
	}
	s.nodes = slices.Clip(s.nodes)
	for i, n := range s.nodes {
		if i == 0 || s.nodes[i-1].parent != n.parent {
			s.dirs[n.parent].lo = int32(i)
		}
		s.dirs[n.parent].hi = int32(i + 1)
		if n.dir < 0 && n.rec >= 0 {
			s.files++
			s.bytes += n.size
		}
	}
}

// indexDirs records where each folder's node is.
func (s *MIGStore) indexDirs() {
	for i, n := range s.nodes {
		if n.dir >= 0 {
			s.dirs[n.dir].node = int32(i)
		}
	}
}

// pathOf rebuilds the store path of node i.
func (s *MIGStore) pathOf(i int32) string {
	var parts []string
	for i >= 0 {
		n := &s.nodes[i]
		parts = append(parts, s.name(i))
		i = s.dirs[n.parent].node
	}
	slices.Reverse(parts)
	return strings.Join(parts, "/")
}

// lookup finds the node of a store path; -1 is the root.
func (s *MIGStore) lookup(op, storePath string) (int32, error) {
	p := strings.Trim(storePath, "/")
	cur := int32(-1)
	dir := int32(0)
	if p == "" {
		return -1, nil
	}
	for _, comp := range strings.Split(p, "/") {
		if dir < 0 {
			return 0, &PathError{Op: op, Path: storePath, Err: fs.ErrNotExist}
		}
		d := s.dirs[dir]
		kids := s.nodes[d.lo:d.hi]
		i, found := slices.BinarySearchFunc(kids, comp, func(n migNode, name string) int {
			return strings.Compare(unsafe.String(&s.names[n.nameOff], int(n.nameLen)), name)
		})
		if !found {
			return 0, &PathError{Op: op, Path: storePath, Err: fs.ErrNotExist}
		}
		cur = d.lo + int32(i)
		dir = s.nodes[cur].dir
	}
	return cur, nil
}

// entry builds the store entry of node i (-1: the root) at path p. The
// records' own times are not known: every entry has the MIG file's.
func (s *MIGStore) entry(i int32, p string) Entry {
	e := Entry{StorePath: p, Type: TypeDir, Mode: 0o755, MtimeNs: s.mtimeNs, AtimeNs: s.mtimeNs, CtimeNs: s.mtimeNs,
		Nlink: 1, Ino: uint64(i) + 2}
	if i < 0 {
		return e
	}
	n := &s.nodes[i]
	if n.dir < 0 {
		e.Type, e.Mode, e.Size = TypeFile, 0o644, n.size
	}
	if n.rec == -1 && n.dir < 0 {
		e.Control = true // the marker: not user data
		return e
	}
	e.WinPath, _ = MapPath(KindUSMTDir, p)
	return e
}

// Info implements Store.
func (s *MIGStore) Info() *Info { return &s.info }

// Stat implements Store.
func (s *MIGStore) Stat(storePath string) (*Entry, error) {
	i, err := s.lookup("looking up", storePath)
	if err != nil {
		return nil, err
	}
	e := s.entry(i, strings.Trim(storePath, "/"))
	return &e, nil
}

// ReadDir implements Store.
func (s *MIGStore) ReadDir(storePath string) ([]Entry, error) {
	i, err := s.lookup("listing", storePath)
	if err != nil {
		return nil, err
	}
	dir := int32(0)
	if i >= 0 {
		dir = s.nodes[i].dir
	}
	if dir < 0 {
		return nil, &PathError{Op: "listing", Path: storePath, Err: errors.New("not a directory")}
	}
	p := strings.Trim(storePath, "/")
	d := s.dirs[dir]
	out := make([]Entry, 0, d.hi-d.lo)
	for c := d.lo; c < d.hi; c++ {
		out = append(out, s.entry(c, JoinPath(p, s.name(c))))
	}
	return out, nil
}

// Walk implements Store: depth-first pre-order, children sorted bytewise
// (ComparePaths order), memory bounded by the depth.
func (s *MIGStore) Walk(ctx context.Context, fn WalkFunc) error {
	root := s.entry(-1, "")
	if err := fn(&root, nil); err != nil {
		if errors.Is(err, SkipDir) {
			return nil
		}
		return err
	}
	type level struct {
		path     string
		next, hi int32
	}
	stack := []level{{"", s.dirs[0].lo, s.dirs[0].hi}}
	for n := 0; len(stack) > 0; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		top := &stack[len(stack)-1]
		if top.next >= top.hi {
			stack = stack[:len(stack)-1]
			continue
		}
		i := top.next
		top.next++
		p := JoinPath(top.path, s.name(i))
		e := s.entry(i, p)
		err := fn(&e, nil)
		if err != nil && !errors.Is(err, SkipDir) {
			return err
		}
		if err == nil && s.nodes[i].dir >= 0 {
			d := s.dirs[s.nodes[i].dir]
			if d.lo < d.hi {
				stack = append(stack, level{p, d.lo, d.hi})
			}
		}
	}
	return nil
}

// Open implements Store: the file's content is its record's zlib stream,
// inflated as it is read.
func (s *MIGStore) Open(e *Entry) (File, error) {
	i, err := s.lookup("opening", e.StorePath)
	if err != nil {
		return nil, err
	}
	if i < 0 || s.nodes[i].dir >= 0 {
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: fmt.Errorf("%w: not a file", ErrChanged)}
	}
	n := s.nodes[i]
	if n.size != e.Size {
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: fmt.Errorf("%w: listed with %d bytes, the index has %d", ErrChanged, e.Size, n.size)}
	}
	if n.rec == -1 {
		return &migTextFile{s: s.marker}, nil
	}
	if s.file != nil {
		if fi, err := s.file.Stat(); err != nil || fi.Size() != s.size || fi.ModTime().UnixNano() != s.mtimeNs {
			return nil, &PathError{Op: "opening", Path: e.StorePath, Err: fmt.Errorf("%w: the USMT.MIG file was modified after it was opened", ErrChanged)}
		}
	}
	return s.openPayload(n)
}

// Close implements Store.
func (s *MIGStore) Close() error {
	if s.file == nil {
		return nil
	}
	return s.file.Close()
}

// markerText is EXPERIMENTAL.txt.
func (s *MIGStore) markerText() string {
	var b strings.Builder
	fmt.Fprintf(&b, `EXPERIMENTAL — read this before using these files.

usmtkit shows the File\ records of %s as files: each record
File\C:\... is the file C:\..., and its content is the zlib stream that
follows the record's name. That layout is INFERRED from two public
descriptions of USMT.MIG (file(1)'s Magdir/windows and PhotoRec's
file_mig.c) and has never been checked against a store written by
Windows. What else a record holds (times, attributes, the 8 bytes before
the zlib stream, the other record kinds) is not known and not shown.
Every payload shown inflated completely and its Adler-32 matched.

Before relying on a file, compare it with what Windows restores:
usmtutils /extract %s <dest> (or LoadState). Times shown are the
USMT.MIG file's own, not the files'.

Shown: %d files, %d bytes.
Left out: %d records or parts of the file (docs/stores.md explains each reason).
`, s.info.Roots[0], s.info.Roots[0], s.files, s.bytes, s.leftOutCount)
	for _, l := range s.leftOut {
		name := l.Path
		if name == "" {
			name = l.Name
		}
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(&b, "  %#x\t%s\t%s\n", l.Offset, name, l.Why)
	}
	if s.leftOutCount > int64(len(s.leftOut)) {
		fmt.Fprintf(&b, "  ... and %d more (usmtkit verify --report failureonly lists every damaged record)\n", s.leftOutCount-int64(len(s.leftOut)))
	}
	return b.String()
}
