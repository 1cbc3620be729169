package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/store"
)

// SalvageInfo is what the salvage walk found (docs/verify.md).
type SalvageInfo struct {
	IndexError   string `json:"index_error"`    // why the archive could not be opened
	Intact       int64  `json:"intact"`         // entries recovered whole
	Damaged      int64  `json:"damaged"`        // entries found with damaged or missing data
	Lost         int64  `json:"lost"`           // entries whose header frame is gone (counted only when a TOC copy names them)
	TOCFound     bool   `json:"toc_found"`      // an intact TOC frame was found on the way
	EndOfArchive bool   `json:"end_of_archive"` // the tar end-of-archive marker was found: not cut short
}

// IndexDamaged reports whether err, from opening an archive, means its
// footer or TOC is missing or damaged: the case RunSalvage is for. A newer
// format version is not damage.
func IndexDamaged(err error) bool {
	if err == nil || errors.Is(err, compress.ErrVersion) {
		return false
	}
	return errors.Is(err, compress.ErrNoIndex) || errors.Is(err, store.ErrCorrupt)
}

// RunSalvage verifies the archive at path whose index (footer or TOC)
// could not be used (indexErr, from compress.Open): the entries are found
// by the salvage walk (compress.Salvage), which decodes every frame and
// checks its zstd checksum. Each entry found is OK or CORRUPTED; against a
// manifest, entries not found are MISSING; without one, entries named by
// a surviving TOC copy but whose header frame is gone are MISSING. The
// damaged index is itself damage: the summary always lists it in
// StoreErrors. Like Run, it returns a non-nil Summary.
//
// The walk remembers, per regular file, a hash of its path with its size
// and content hash (about 60 bytes) to resolve later hard links to it.
func RunSalvage(ctx context.Context, path string, indexErr error, o Options, emit func(*Result) error) (*Summary, error) {
	return runSalvage(ctx, indexErr, o, emit, func(fn func(e *compress.SalvagedEntry, data io.Reader) error) (*compress.SalvageReport, error) {
		return compress.Salvage(ctx, path, fn)
	})
}

// RunSalvageReaderAt is RunSalvage of an archive read through r (an
// object in a bucket), name being how it is called in messages.
func RunSalvageReaderAt(ctx context.Context, r io.ReaderAt, size int64, name string, indexErr error, o Options, emit func(*Result) error) (*Summary, error) {
	return runSalvage(ctx, indexErr, o, emit, func(fn func(e *compress.SalvagedEntry, data io.Reader) error) (*compress.SalvageReport, error) {
		return compress.SalvageReaderAt(ctx, r, size, name, fn)
	})
}

func runSalvage(ctx context.Context, indexErr error, o Options, emit func(*Result) error,
	walk func(fn func(e *compress.SalvagedEntry, data io.Reader) error) (*compress.SalvageReport, error)) (*Summary, error) {
	start := time.Now()
	sum := newSummary(&o)
	defer func() { sum.Elapsed = time.Since(start) }()
	sum.Archive = ArchiveSalvage
	sum.Salvage = &SalvageInfo{IndexError: indexErr.Error()}
	sum.StoreErrors = append(sum.StoreErrors, SalvageNotice+" ("+indexErr.Error()+")")

	v := newRun(o, sum, emit, store.KindPlain)
	v.bad = map[string]*damage{}
	v.missingDetail = "listed in the manifest, not found by the salvage walk (its header frame is damaged, or the archive is cut short)"
	sv := &salvageRun{v: v, links: map[uint64]linkRec{}, hash: o.Level == LevelData, damagedAt: map[int64]bool{}}
	if o.Manifest != nil {
		if k := store.Kind(o.Manifest.Header.Store.Kind); k.IsDirectory() {
			v.kind, sv.kindSet = k, true
		}
		if err := v.nextRec(); err != nil {
			return v.finish(err)
		}
	}
	// The store root is no tar entry; it is in every walk and manifest.
	if err := v.item(&manifest.Item{Entry: store.Entry{Type: store.TypeDir, Nlink: 1}}); err != nil {
		return v.finish(err)
	}
	rep, err := walk(sv.entry)
	if rep != nil {
		sum.Salvage.Intact, sum.Salvage.Damaged, sum.Salvage.Lost = rep.Intact, rep.DamagedCount, rep.LostCount
		sum.Salvage.TOCFound, sum.Salvage.EndOfArchive = rep.TOCFound, rep.EndOfArchive
	}
	if err != nil {
		return v.finish(err)
	}
	if err := sv.after(rep); err != nil {
		return v.finish(err)
	}
	return v.finish(nil)
}

type linkRec struct {
	size   int64
	hash   uint64
	ok     bool // the content came back intact
	hashed bool
}

type salvageRun struct {
	v         *run
	kindSet   bool
	hash      bool
	links     map[uint64]linkRec // regular files seen, by xxhash of the path
	buf       []byte
	damagedAt map[int64]bool // header offsets of the damaged entries reported
}

// guessKind picks the source kind from the first entry's path when no
// manifest tells it: it decides Windows paths, control files and whether
// a catalog.mig is required.
func (sv *salvageRun) guessKind(p string) {
	sv.kindSet = true
	top, _, _ := strings.Cut(p, "/")
	switch {
	case strings.EqualFold(top, "USMT"):
		sv.v.kind = store.KindUSMTDir
	case strings.EqualFold(top, "USMT3"):
		sv.v.kind = store.KindUSMT3Dir
	}
}

// entry is compress.Salvage's callback: one entry whose header frame was
// found, in archive (= walk) order.
func (sv *salvageRun) entry(se *compress.SalvagedEntry, data io.Reader) error {
	v := sv.v
	if !sv.kindSet {
		sv.guessKind(se.Path)
	}
	e := store.Entry{StorePath: se.Path, Type: se.Type, Size: se.Size, Mode: se.Mode, MtimeNs: se.MtimeNs,
		AtimeNs: se.AtimeNs, Nlink: 1, BtimeNs: se.BtimeNs, HasBtime: se.HasBtime, WinAttrs: se.WinAttrs, HasWinAttr: se.HasAttrs}
	e.WinPath, e.Control = store.MapPath(v.kind, se.Path)
	if e.Type != store.TypeFile {
		e.Control = false
	}
	it := &manifest.Item{Entry: e}
	var bad string // the entry's damage, if any
	switch {
	case se.Type == store.TypeSymlink:
		it.Entry.LinkTarget = se.Link
	case se.Hardlink:
		l, seen := sv.links[xxhash.Sum64String(se.Link)]
		switch {
		case !seen:
			bad = "a hard link to " + se.Link + ", which the salvage walk did not find (its header frame is damaged): its data is lost"
		case !l.ok:
			bad = "a hard link to " + se.Link + ", whose data is damaged"
			it.Entry.Size = l.size
		default:
			it.Entry.Size = l.size
			it.Hash, it.Hashed = l.hash, l.hashed
		}
	case se.Type == store.TypeFile:
		h := xxhash.New()
		var w io.Writer = io.Discard
		if sv.hash {
			w = h
		}
		if sv.buf == nil {
			sv.buf = make([]byte, manifest.BlockSize)
		}
		n, err := io.CopyBuffer(w, &countReader{r: data, add: v.readBytes}, sv.buf)
		if err != nil && !errors.Is(err, store.ErrCorrupt) {
			return err // cancelled, or the archive cannot be read
		}
		if err != nil {
			bad = fmt.Sprintf("damaged after %d good bytes: %v", n, err)
		} else {
			it.Hash, it.Hashed = h.Sum64(), sv.hash
		}
		sv.links[xxhash.Sum64String(se.Path)] = linkRec{size: se.Size, hash: it.Hash, ok: err == nil, hashed: it.Hashed}
	}
	if bad != "" {
		v.damageOf(se.Path).salv = bad
		sv.damagedAt[se.HeaderOffset] = true
	}
	if err := v.item(it); err != nil {
		return err
	}
	delete(v.bad, se.Path) // reported: keep only what is pending
	if bad != "" && se.Hardlink {
		// Salvage counts the entry damaged too (its own data was fine).
		return fmt.Errorf("%w: %s", store.ErrCorrupt, bad)
	}
	return nil
}

// after reports what the walk could not attribute in order: lost entries
// named by a surviving TOC, a cut-short archive, orphaned data.
func (sv *salvageRun) after(rep *compress.SalvageReport) error {
	v := sv.v
	if v.o.Manifest != nil {
		// Entries the walk never met are MISSING against the manifest.
		for v.rec != nil {
			if err := v.missing(); err != nil {
				return err
			}
		}
	} else {
		for _, l := range rep.Lost {
			win, control := store.MapPath(v.kind, l.Path)
			r := &Result{StorePath: l.Path, WinPath: win, Type: l.Type.String(), Control: control && l.Type == store.TypeFile,
				Status: Missing, Detail: "lost: its header frame is damaged, so its data cannot be placed (named by the TOC copy the salvage walk found)"}
			if err := v.report(r); err != nil {
				return err
			}
		}
		if more := rep.LostCount - int64(len(rep.Lost)); more > 0 {
			v.sum.StoreErrors = append(v.sum.StoreErrors, fmt.Sprintf("%d more lost entries are not listed", more))
		}
	}
	for _, d := range rep.Damaged {
		if !sv.damagedAt[d.HeaderOffset] {
			// Entries Salvage judged without showing them (a tar entry
			// type this format does not write, a negative size).
			v.sum.StoreErrors = append(v.sum.StoreErrors, fmt.Sprintf("damaged tar entry %q at archive offset %d: %v", d.Path, d.HeaderOffset, d.Err))
		}
	}
	if !rep.EndOfArchive {
		v.sum.StoreErrors = append(v.sum.StoreErrors, "the archive has no end-of-archive marker: it is cut short (truncated) or its end is damaged; entries after that point are lost")
	}
	var n, bytes int64
	var first int64 = -1
	for _, l := range rep.LostRanges {
		if l.Reason == "data without a header" {
			if first < 0 {
				first = l.Offset
			}
			n++
			bytes += l.Length
		}
	}
	if n > 0 {
		what := "1 stretch of file data"
		if n > 1 {
			what = fmt.Sprintf("%d stretches of file data", n)
		}
		v.sum.StoreErrors = append(v.sum.StoreErrors, fmt.Sprintf(
			"%s (%d bytes, the first at archive offset %d) with no header frame: the entries it belongs to are lost", what, bytes, first))
	}
	if rep.Intact+rep.DamagedCount+rep.LostCount == 0 {
		v.sum.StoreErrors = append(v.sum.StoreErrors, "the salvage walk found no archive entry at all: this may not be a usmtkit archive")
	}
	if v.o.Manifest == nil && !rep.TOCFound && (n > 0 || !rep.EndOfArchive) {
		v.sum.Notes = append(v.sum.Notes, "no intact copy of the TOC was found, so the lost entries cannot be named: verify with --manifest to name them")
	}
	return nil
}

// countReader reports the bytes read through it.
type countReader struct {
	r   io.Reader
	add func(int64)
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}
