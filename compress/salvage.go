package compress

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/usmtkit/usmtkit/store"
)

// Outcome is what salvage made of one entry.
type Outcome int

const (
	// Intact: the header and all data frames decoded with good checksums
	// and the sizes add up.
	Intact Outcome = iota
	// Damaged: the header was found but data is missing or damaged, or the
	// archive ends inside the entry.
	Damaged
	// Lost: the header frame is destroyed. Lost entries can only be named
	// when the archive's TOC survived.
	Lost
)

func (o Outcome) String() string {
	switch o {
	case Intact:
		return "intact"
	case Damaged:
		return "damaged"
	default:
		return "lost"
	}
}

// SalvagedEntry is one entry found by Salvage.
type SalvagedEntry struct {
	Path     string // store path as recorded in the tar header (no trailing slash)
	Type     store.EntryType
	Hardlink bool   // a tar hard link: Link is the first name of its group
	Link     string // symlink target or hard-link target path
	Size     int64
	Mode     uint32
	MtimeNs  int64
	AtimeNs  int64
	BtimeNs  int64 // valid when HasBtime
	HasBtime bool
	WinAttrs uint32 // valid when HasWinAttr
	HasAttrs bool
	// HeaderOffset is the archive offset of the entry's header frame.
	HeaderOffset int64
	Outcome      Outcome
	Err          error // why the entry is damaged or lost
}

// LostRange is a stretch of the archive that belongs to no recovered entry:
// unparseable bytes, frames that failed to decode, or data frames whose
// header frame is gone.
type LostRange struct {
	Offset, Length int64
	Reason         string
}

// SalvageReport sums up a salvage.
type SalvageReport struct {
	Intact  int64
	Damaged []SalvagedEntry // up to store.MaxProblems; DamagedCount has all
	// DamagedCount counts damaged entries, including unlisted ones.
	DamagedCount int64
	// Lost lists entries whose header frame is gone, by name when the TOC
	// survived (from it); up to store.MaxProblems.
	Lost      []SalvagedEntry
	LostCount int64
	// LostRanges are the damaged or orphaned stretches of the file.
	LostRanges []LostRange
	// EndOfArchive is true when the tar end-of-archive frame was found: the
	// stream was complete up to there.
	EndOfArchive bool
	// TOCFound is true when a valid TOC frame was found (it names lost entries).
	TOCFound bool
	Frames   int64
}

func (r *SalvageReport) addDamaged(e SalvagedEntry) {
	r.DamagedCount++
	if len(r.Damaged) < store.MaxProblems {
		r.Damaged = append(r.Damaged, e)
	}
}

func (r *SalvageReport) addLostRange(off, n int64, reason string) {
	if k := len(r.LostRanges); k > 0 {
		l := &r.LostRanges[k-1]
		if l.Offset+l.Length == off && l.Reason == reason {
			l.Length += n
			return
		}
	}
	if len(r.LostRanges) < store.MaxProblems {
		r.LostRanges = append(r.LostRanges, LostRange{Offset: off, Length: n, Reason: reason})
	}
}

// decoded is a frame the salvager looked at.
type decoded struct {
	f    frameInfo
	data []byte // decoded content (zstd frames that decoded)
	err  error  // decode error (zstd frames)
}

type salvager struct {
	ctx     context.Context
	w       *frameWalker
	pending *decoded
	rep     *SalvageReport
	headers []int64 // header offsets of entries found, ascending
	toc     *toc
	tocOff  int64
}

// nextFrame returns the next frame, decoded when it is a zstd frame.
func (s *salvager) nextFrame() (*decoded, error) {
	if d := s.pending; d != nil {
		s.pending = nil
		return d, nil
	}
	f, err := s.w.next()
	if err != nil {
		return nil, err
	}
	s.rep.Frames++
	d := &decoded{f: f}
	switch f.kind {
	case frameZstd:
		d.data, d.err = s.decodeFrame(f)
	case frameSkippable:
		if f.id == skippableMagic && s.toc == nil {
			s.tryTOC(f)
		}
	}
	return d, nil
}

func (s *salvager) decodeFrame(f frameInfo) ([]byte, error) {
	const capMax = MaxChunkSize + 512
	if f.n > maxChunkCSize {
		return nil, fmt.Errorf("%w: a %d-byte frame is larger than any this format writes", store.ErrCorrupt, f.n)
	}
	c := int64(capMax)
	if f.fcs >= 0 {
		if f.fcs > capMax {
			return nil, fmt.Errorf("%w: the frame claims %d bytes, more than any this format writes", store.ErrCorrupt, f.fcs)
		}
		c = f.fcs
	}
	buf := make([]byte, f.n)
	if _, err := s.w.r.ReadAt(buf, f.off); err != nil {
		return nil, err
	}
	dec, err := chunkDecoder()
	if err != nil {
		return nil, err
	}
	data, err := dec.DecodeAll(buf, make([]byte, 0, c))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", store.ErrCorrupt, err)
	}
	return data, nil
}

// tryTOC uses a TOC frame found on the way, when it is intact on its own,
// to name the entries whose header frames are lost.
func (s *salvager) tryTOC(f frameInfo) {
	if f.n-8 > maxTOCCSize {
		return
	}
	payload := make([]byte, f.n-8)
	if _, err := s.w.r.ReadAt(payload, f.off+8); err != nil {
		return
	}
	dec, err := chunkDecoder()
	if err != nil {
		return
	}
	// The TOC decoder cap: a TOC compresses well, but bound it anyway.
	raw, err := dec.DecodeAll(payload, make([]byte, 0, min(int64(len(payload))*64+tocHeaderSize, DefaultMaxTOCBytes)))
	if err != nil || len(raw) < tocHeaderSize || string(raw[:8]) != tocMagic {
		return
	}
	t, err := parseTOC(raw, binary.LittleEndian.Uint64(raw[8:]), uint64(f.off))
	if err != nil {
		return
	}
	s.toc, s.tocOff = t, f.off
	s.rep.TOCFound = true
}

// Salvage walks an archive frame by frame without trusting its footer or
// TOC (docs/format.md §5) and calls fn for every entry whose header frame it
// finds, in archive order. For a file, data yields its content from
// verified frames only; reading it returns an error wrapping
// store.ErrCorrupt as soon as data is found missing or damaged, and io.EOF
// only after exactly Size good bytes, so a caller that got io.EOF holds an
// intact copy. fn may read none, part or all of data.
//
// An error returned by fn stops the salvage, except one wrapping
// store.ErrCorrupt for an entry that turned out damaged. The report counts
// intact, damaged and lost entries and the lost byte ranges.
func Salvage(ctx context.Context, path string, fn func(e *SalvagedEntry, data io.Reader) error) (*SalvageReport, error) {
	f, err := openRO(path)
	if err != nil {
		return nil, fmt.Errorf("salvaging archive: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("salvaging archive %s: %w", path, err)
	}
	rep, err := salvage(ctx, f, fi.Size(), fn)
	if err != nil {
		return rep, fmt.Errorf("salvaging archive %s: %w", path, err)
	}
	return rep, nil
}

// SalvageReaderAt is Salvage of an archive held anywhere a ReaderAt
// reaches (an object in a bucket, package objstore).
func SalvageReaderAt(ctx context.Context, r io.ReaderAt, size int64, name string, fn func(e *SalvagedEntry, data io.Reader) error) (*SalvageReport, error) {
	rep, err := salvage(ctx, r, size, fn)
	if err != nil {
		return rep, fmt.Errorf("salvaging archive %s: %w", name, err)
	}
	return rep, nil
}

func salvage(ctx context.Context, r io.ReaderAt, size int64, fn func(e *SalvagedEntry, data io.Reader) error) (*SalvageReport, error) {
	s := &salvager{ctx: ctx, w: newFrameWalker(r, size), rep: &SalvageReport{}}
	if err := s.run(fn); err != nil {
		return s.rep, err
	}
	s.nameLost()
	return s.rep, nil
}

func (s *salvager) run(fn func(e *SalvagedEntry, data io.Reader) error) error {
	for {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		d, err := s.nextFrame()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch d.f.kind {
		case frameGarbage:
			s.rep.addLostRange(d.f.off, d.f.n, "unreadable bytes")
			continue
		case frameSkippable:
			continue
		}
		if d.err != nil {
			// A frame outside any file's data that fails: most likely a
			// destroyed header frame, whose entry is then lost.
			s.rep.addLostRange(d.f.off, d.f.n, "frame fails to decode")
			continue
		}
		if h, ok := parseHeaderFrame(d.data); ok {
			if err := s.entry(d, h, fn); err != nil {
				return err
			}
			continue
		}
		if isZeros(d.data) && len(d.data)%512 == 0 {
			s.rep.EndOfArchive = true
			continue
		}
		if strings.HasPrefix(string(d.data[:min(len(d.data), 8)]), tocMagic) {
			continue // a TOC whose skippable frame header is damaged: no data
		}
		s.rep.addLostRange(d.f.off, d.f.n, "data without a header")
	}
}

// isZeros reports whether b is non-empty and all zeros.
func isZeros(b []byte) bool { return len(b) > 0 && AllZero(b) }

// entry handles one header frame and the data frames that follow it.
func (s *salvager) entry(d *decoded, h *tar.Header, fn func(e *SalvagedEntry, data io.Reader) error) error {
	e := &SalvagedEntry{
		Path:         strings.TrimSuffix(h.Name, "/"),
		Size:         h.Size,
		Mode:         uint32(h.Mode) & 0o7777,
		MtimeNs:      h.ModTime.UnixNano(),
		HeaderOffset: d.f.off,
	}
	if !h.AccessTime.IsZero() {
		e.AtimeNs = h.AccessTime.UnixNano()
	}
	if v, ok := h.PAXRecords["LIBARCHIVE.creationtime"]; ok {
		if ns, err := parsePAXTime(v); err == nil {
			e.BtimeNs, e.HasBtime = ns, true
		}
	}
	if v, ok := h.PAXRecords["USMTZ.attrs"]; ok {
		if a, err := strconv.ParseUint(v, 16, 32); err == nil {
			e.WinAttrs, e.HasAttrs = uint32(a), true
		}
	}
	var data io.Reader = strings.NewReader("")
	var r *entryReader
	switch h.Typeflag {
	case tar.TypeDir:
		e.Type, e.Size = store.TypeDir, 0
	case tar.TypeSymlink:
		e.Type, e.Link, e.Size = store.TypeSymlink, h.Linkname, 0
	case tar.TypeLink:
		e.Type, e.Hardlink, e.Link, e.Size = store.TypeFile, true, h.Linkname, 0
	case tar.TypeReg:
		e.Type = store.TypeFile
		if h.Size < 0 {
			e.Outcome, e.Err = Damaged, fmt.Errorf("%w: negative size", store.ErrCorrupt)
			s.rep.addDamaged(*e)
			return nil
		}
		r = &entryReader{s: s, remaining: h.Size, pad: tarPad(h.Size)}
		data = r
	default:
		// Not something this format writes (another writer's tar): its
		// data, if any, is skipped as data without a header.
		e.Type, e.Outcome, e.Err = store.TypeOther, Damaged, fmt.Errorf("tar entry type %q is not supported", h.Typeflag)
		s.rep.addDamaged(*e)
		return nil
	}
	s.headers = append(s.headers, d.f.off)
	ferr := fn(e, data)
	var damage error
	if r != nil {
		// Consume what fn did not read, to know the outcome and to stay
		// aligned on the next header.
		io.Copy(io.Discard, r)
		if r.fatal != nil {
			return r.fatal
		}
		damage = r.damage
	}
	if damage == nil && errors.Is(ferr, store.ErrCorrupt) {
		damage = ferr // e.g. a hard link whose target was not recovered
	}
	if damage != nil {
		e.Outcome, e.Err = Damaged, damage
		s.rep.addDamaged(*e)
		if ferr != nil && !errors.Is(ferr, store.ErrCorrupt) {
			return ferr
		}
		return nil
	}
	if ferr != nil {
		return ferr
	}
	s.rep.Intact++
	return nil
}

// entryReader yields a file's content from the frames after its header.
type entryReader struct {
	s         *salvager
	remaining int64 // logical bytes not yet taken from frames
	pad       int64
	cur       []byte // taken, not yet read
	damage    error
	fatal     error
	lastKnown int64 // chunk size learned from the first full frame
}

func (r *entryReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.damage != nil {
			return 0, r.damage
		}
		if r.fatal != nil {
			return 0, r.fatal
		}
		if r.remaining == 0 {
			return 0, io.EOF
		}
		r.fill()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// fill takes the next frame as this file's data, or records why it cannot.
func (r *entryReader) fill() {
	s := r.s
	if err := s.ctx.Err(); err != nil {
		r.fatal = err
		return
	}
	d, err := s.nextFrame()
	if errors.Is(err, io.EOF) {
		r.damage = fmt.Errorf("%w: the archive ends %d bytes before the end of this file (truncated)", store.ErrCorrupt, r.remaining)
		return
	}
	if err != nil {
		r.fatal = err
		return
	}
	switch d.f.kind {
	case frameGarbage:
		s.rep.addLostRange(d.f.off, d.f.n, "unreadable bytes")
		r.damage = fmt.Errorf("%w: unreadable bytes at archive offset %d", store.ErrCorrupt, d.f.off)
		r.skipOwnFrames()
		return
	case frameSkippable:
		s.pending = d
		r.damage = fmt.Errorf("%w: %d bytes of data are missing", store.ErrCorrupt, r.remaining)
		return
	}
	if d.err != nil {
		s.rep.addLostRange(d.f.off, d.f.n, "frame fails to decode")
		r.damage = fmt.Errorf("data frame at archive offset %d: %w", d.f.off, d.err)
		r.skipOwnFrames()
		return
	}
	n := int64(len(d.data))
	exactLast := n == r.remaining+r.pad
	if !exactLast {
		if _, isHdr := parseHeaderFrame(d.data); isHdr || n > r.remaining || n == 0 {
			// The next entry (or something else) begins: this file's data
			// frames are missing.
			s.pending = d
			r.damage = fmt.Errorf("%w: %d bytes of data are missing before archive offset %d", store.ErrCorrupt, r.remaining, d.f.off)
			return
		}
	}
	take := min(n, r.remaining)
	if exactLast && !isZeros(d.data[take:]) && r.pad > 0 {
		r.damage = fmt.Errorf("%w: the tar padding at archive offset %d is not zero", store.ErrCorrupt, d.f.off)
		return
	}
	r.cur = d.data[:take]
	r.remaining -= take
}

// skipOwnFrames attributes the frames that follow a damaged spot to this
// file until something that is clearly not its data appears.
func (r *entryReader) skipOwnFrames() {
	s := r.s
	for {
		d, err := s.nextFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.fatal = err
			}
			return
		}
		if d.f.kind == frameSkippable {
			s.pending = d
			return
		}
		if d.f.kind == frameZstd && d.err == nil {
			if _, isHdr := parseHeaderFrame(d.data); isHdr || (isZeros(d.data) && len(d.data)%512 == 0 && len(d.data) <= 1024) {
				s.pending = d
				return
			}
		}
		s.rep.addLostRange(d.f.off, d.f.n, "data of a damaged file")
	}
}

// nameLost lists the TOC entries whose header frames were not found.
func (s *salvager) nameLost() {
	if s.toc == nil {
		return
	}
	t := s.toc
	sort.Slice(s.headers, func(i, j int) bool { return s.headers[i] < s.headers[j] })
	a := &Archive{t: t}
	for i := uint32(1); i < uint32(t.n); i++ {
		off := int64(binary.LittleEndian.Uint64(t.rec(i)[eHdrOff:]))
		k := sort.Search(len(s.headers), func(k int) bool { return s.headers[k] >= off })
		if k < len(s.headers) && s.headers[k] == off {
			continue
		}
		s.rep.LostCount++
		if len(s.rep.Lost) < store.MaxProblems {
			p := a.pathOf(i)
			e := a.entry(i, p)
			s.rep.Lost = append(s.rep.Lost, SalvagedEntry{
				Path: p, Type: e.Type, Hardlink: t.typ(i) == tocHardlink, Size: e.Size, Mode: e.Mode,
				MtimeNs: e.MtimeNs, HeaderOffset: off, Outcome: Lost,
				Err: fmt.Errorf("%w: its header frame is gone", store.ErrCorrupt),
			})
		}
	}
}

// parsePAXTime parses PAX decimal seconds into ns since the epoch.
func parsePAXTime(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	secs, frac, _ := strings.Cut(strings.TrimPrefix(s, "-"), ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return 0, err
	}
	if len(frac) > 9 {
		frac = frac[:9]
	}
	var nsec int64
	if frac != "" {
		nsec, err = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return 0, err
		}
	}
	ns := sec*1e9 + nsec
	if neg {
		ns = -ns
	}
	return ns, nil
}
