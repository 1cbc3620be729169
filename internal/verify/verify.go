// Package verify checks a store: against a manifest written by `usmtkit
// index` (every entry MISSING, EXTRA, CHANGED, CORRUPTED, UNREADABLE or OK),
// or, without one, structurally (every file readable end to end, hard-link
// groups consistent, control files present). It streams: the manifest and
// a fresh walk are merge-joined in store.ComparePaths order, so memory does
// not grow with the store. docs/verify.md is its contract.
package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/store"
)

// Level is how deep verify looks.
type Level string

const (
	// LevelStructure checks metadata only: presence, type, size, mtime,
	// hard-link groups, control files. No file content is read.
	LevelStructure Level = "structure"
	// LevelData also reads every file end to end and compares its hash.
	LevelData Level = "data"
)

// ParseLevel checks a --level value.
func ParseLevel(s string) (Level, error) {
	switch Level(s) {
	case LevelStructure, LevelData:
		return Level(s), nil
	}
	return "", fmt.Errorf("unknown level %q: use structure or data", s)
}

// Status is the verdict on one entry. The strings are part of the
// report and --json contract (docs/verify.md).
type Status string

const (
	OK         Status = "OK"
	Corrupted  Status = "CORRUPTED"  // content differs from the manifest with the same size and mtime, or failed a checksum
	Missing    Status = "MISSING"    // in the manifest (or required), not in the store
	Changed    Status = "CHANGED"    // size, mtime, type or symlink target differ; or it changed while read
	Unreadable Status = "UNREADABLE" // could not be listed, opened or read
	Extra      Status = "EXTRA"      // in the store, not in the manifest
	Skipped    Status = "SKIPPED"    // not checked: no reference (unreadable when indexed)
)

// severity orders statuses for the catalog's combined verdict.
func severity(s Status) int {
	switch s {
	case OK:
		return 0
	case Extra:
		return 1
	case Skipped:
		return 2
	case Changed:
		return 3
	case Unreadable:
		return 4
	case Missing:
		return 5
	case Corrupted:
		return 6
	}
	return 7
}

// Result is the verdict on one entry.
type Result struct {
	StorePath string
	WinPath   string
	Type      string // file, dir, symlink, other
	Control   bool
	Status    Status
	Detail    string // why, for anything not OK
	// EFS: the file carries the NTFS encrypted attribute (store.IsEFS):
	// what was read, if anything, is raw EFS data, not the user's content.
	EFS bool
}

// Name is the path to show: the Windows path when the entry has one.
func (r *Result) Name() string {
	if r.WinPath != "" {
		return r.WinPath
	}
	return r.StorePath
}

// ChunkVerifier is implemented by stores that can check their own stored
// data (the usmtkit archive, compress.Archive: every chunk's xxhash64 and
// zstd checksum, and every tar header frame; the TOC and footer were
// checked when it was opened). fn is called once per entry header (chunk
// -1) and once per chunk, in walk order, with err nil when it is good;
// VerifyAll returns an error only when it cannot go on (cancelled, a read
// error).
type ChunkVerifier interface {
	VerifyAll(ctx context.Context, fn func(path string, chunk int, err error)) error
}

// HeaderVerifier is implemented by archives that can check their header
// frames alone, without decoding the file data (the structure level).
// fn is called once per entry, in walk order, with err nil when good.
type HeaderVerifier interface {
	VerifyHeaders(ctx context.Context, fn func(path string, err error)) error
}

// sourceKinder is implemented by archives: the kind of the store they were
// made from, which decides the control files and the catalog verdict.
type sourceKinder interface {
	SourceKind() store.Kind
}

// Options configure Run.
type Options struct {
	Level Level
	// Manifest, when set, is the reference; nil runs the structural check.
	Manifest *manifest.Reader
	Threads  int
	// ReadBytes is called by the readers after every block (concurrently).
	ReadBytes func(int64)
}

// Summary is what a run found. It is filled even when Run stops early.
type Summary struct {
	Level   Level  `json:"level"`
	Check   string `json:"check"` // "manifest" or "structure"
	Hashes  bool   `json:"content_hashes"`
	Files   int64  `json:"files"` // entries given a verdict, OK directories excepted
	Dirs    int64  `json:"dirs"`
	Bytes   int64  `json:"bytes_read"`
	OKCount int64  `json:"ok"`
	Corrupt int64  `json:"corrupted"`
	Changed int64  `json:"changed"`
	Missing int64  `json:"missing"`
	Extra   int64  `json:"extra"`
	Unread  int64  `json:"unreadable"`
	Skipped int64  `json:"skipped"`
	// EFS counts files carrying the NTFS encrypted attribute, whatever
	// their verdict (docs/verify.md): an OK one was read as raw EFS data.
	EFS      int64  `json:"efs_files"`
	Catalog  Status `json:"catalog"`
	CatalogD string `json:"catalog_detail,omitempty"`
	// StoreErrors is damage that belongs to no single entry (an archive
	// whose TOC failed its checks).
	StoreErrors []string `json:"store_errors,omitempty"`
	// MissingData is data the store's layout requires but the store lacks
	// (store.Info.MissingData): a missing or empty File folder, entries of
	// File that are not drive folders. Each one is a problem.
	MissingData []string `json:"missing_data,omitempty"`
	// Archive says how an archive was checked: ArchiveIndex (through its
	// TOC) or ArchiveSalvage (its index is damaged: the salvage walk).
	// Empty for directory stores.
	Archive string `json:"archive_check,omitempty"`
	// HeadersChecked: every tar header frame of the archive was checked.
	HeadersChecked bool `json:"headers_checked,omitempty"`
	// ChunksChecked: every chunk's zstd and xxhash64 checksums were checked.
	ChunksChecked bool `json:"chunks_checked,omitempty"`
	// Salvage is what the salvage walk found (ArchiveSalvage only).
	Salvage  *SalvageInfo  `json:"salvage,omitempty"`
	Complete bool          `json:"complete"` // every entry was checked
	Notes    []string      `json:"notes,omitempty"`
	Elapsed  time.Duration `json:"-"`
}

// Damaged counts every entry that is not OK, plus store-level damage and
// a catalog that is not OK.
func (s *Summary) Damaged() int64 {
	return s.Corrupt + s.Changed + s.Missing
}

// Problems is every count that makes the run not clean.
func (s *Summary) Problems() int64 {
	n := s.Corrupt + s.Changed + s.Missing + s.Extra + s.Unread + s.Skipped + int64(len(s.StoreErrors)) + int64(len(s.MissingData))
	if s.Catalog != OK && s.Catalog != "" && s.Catalog != CatalogNone {
		n++
	}
	return n
}

// CatalogNone is the catalog status of a store kind without control files.
const CatalogNone Status = "NONE"

func (s *Summary) count(r *Result) {
	if r.Type == "dir" {
		s.Dirs++
		if r.Status == OK {
			return
		}
	}
	// Files counts every verdict but OK directories, so that
	// Files = OK + damaged + unreadable + extra + skipped.
	s.Files++
	if r.EFS {
		s.EFS++
	}
	switch r.Status {
	case OK:
		s.OKCount++
	case Corrupted:
		s.Corrupt++
	case Changed:
		s.Changed++
	case Missing:
		s.Missing++
	case Extra:
		s.Extra++
	case Unreadable:
		s.Unread++
	case Skipped:
		s.Skipped++
	}
}

// Run verifies s and calls emit for every entry in walk order (directories
// too; a caller may print only files). It always returns a non-nil
// Summary, complete or not; the error is non-nil only when the run could
// not finish (cancelled: wraps context.Canceled; a manifest found damaged
// while streaming; a store that cannot be walked; emit's error).
func Run(ctx context.Context, s store.Store, o Options, emit func(*Result) error) (*Summary, error) {
	start := time.Now()
	sum := newSummary(&o)
	defer func() { sum.Elapsed = time.Since(start) }()
	info := s.Info()
	sum.MissingData = append(sum.MissingData, info.MissingData...)
	kind := info.Kind
	if sk, ok := s.(sourceKinder); ok {
		kind = sk.SourceKind()
	}
	v := newRun(o, sum, emit, kind)
	hash := o.Level == LevelData
	cv, isArchive := s.(ChunkVerifier)
	if isArchive {
		sum.Archive = ArchiveIndex
		switch hv, headers := s.(HeaderVerifier); {
		case o.Level == LevelData && headers && sum.Hashes:
			// Every file is read back to compare its hash with the
			// manifest, and every read checks its chunks: check the
			// headers alone, do not decode the data twice.
			sum.ChunksChecked = true
			if err := v.headers(ctx, hv); err != nil {
				return v.finish(err)
			}
		case o.Level == LevelData:
			stopped, err := v.chunks(ctx, s, cv)
			if err != nil {
				return v.finish(err)
			}
			// The archive checked its own data; read it again only to
			// compare content hashes with a manifest, or when the check
			// could not finish.
			hash = sum.Hashes || stopped
		case headers:
			if err := v.headers(ctx, hv); err != nil {
				return v.finish(err)
			}
		}
	}
	if o.Manifest != nil {
		if err := v.nextRec(); err != nil {
			return v.finish(err)
		}
	}
	err := manifest.HashWalk(ctx, s, manifest.HashOptions{Threads: o.Threads, Hash: hash, ReadBytes: v.readBytes}, v.item)
	if err == nil && o.Manifest != nil {
		for v.rec != nil && err == nil {
			err = v.missing()
		}
	}
	return v.finish(err)
}

// newSummary starts the summary of a run and settles o.Level.
func newSummary(o *Options) *Summary {
	if o.Level == "" {
		o.Level = LevelData
	}
	sum := &Summary{Level: o.Level, Check: "structure"}
	if o.Manifest != nil {
		sum.Check = "manifest"
		sum.Hashes = o.Manifest.Header.Hashed
		if o.Level == LevelData && !sum.Hashes {
			sum.Notes = append(sum.Notes, "the manifest has no content hashes (indexed with --no-hash): every file was read end to end, but contents could only be compared by size and time")
		}
	}
	return sum
}

func newRun(o Options, sum *Summary, emit func(*Result) error, kind store.Kind) *run {
	return &run{o: o, sum: sum, emit: emit, kind: kind, linkSeen: map[uint64]linkMeta{},
		missingDetail: "listed in the manifest, not in the store"}
}

func (v *run) readBytes(n int64) {
	v.bytes.Add(n)
	if v.o.ReadBytes != nil {
		v.o.ReadBytes(n)
	}
}

type linkMeta struct {
	size, mtime int64
}

type run struct {
	o    Options
	sum  *Summary
	emit func(*Result) error
	kind store.Kind

	rec     *manifest.Record // the manifest's next record, nil at its end
	recPath string

	linkSeen map[uint64]linkMeta // multi-link files seen (structure check)
	bytes    counter

	// Archives: entries found damaged by the archive's own checks (only
	// damaged ones are kept), and the hard-link groups whose data is
	// damaged, by link id, with the path that holds the data.
	bad     map[string]*damage
	badLink map[uint64]string
	// missingDetail explains MISSING against a manifest.
	missingDetail string

	control     []*Result // verdicts on control files, for the catalog line
	catalogSeen bool      // a catalog.mig exists in the store
	wantCatalog bool      // the manifest listed a catalog.mig
}

type counter struct {
	mu sync.Mutex
	n  int64
}

func (c *counter) Add(n int64) { c.mu.Lock(); c.n += n; c.mu.Unlock() }
func (c *counter) Load() int64 { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func (v *run) nextRec() error {
	rec, err := v.o.Manifest.Next()
	if err != nil {
		v.rec = nil
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	p, err := rec.Path()
	if err != nil {
		return err
	}
	v.rec, v.recPath = rec, p
	if rec.Control && isCatalog(p) {
		v.wantCatalog = true
	}
	return nil
}

func isCatalog(p string) bool {
	_, name := store.SplitPath(p)
	return strings.EqualFold(name, "catalog.mig")
}

func (v *run) report(r *Result) error {
	v.sum.count(r)
	if r.Control {
		v.control = append(v.control, &Result{StorePath: r.StorePath, Status: r.Status, Detail: r.Detail})
	}
	if v.emit != nil {
		return v.emit(r)
	}
	return nil
}

// missing reports the manifest's current record as MISSING and advances.
func (v *run) missing() error {
	r := &Result{StorePath: v.recPath, WinPath: v.rec.WinPath, Type: v.rec.Type, Control: v.rec.Control,
		Status: Missing, Detail: v.missingDetail}
	if err := v.report(r); err != nil {
		return err
	}
	return v.nextRec()
}

func (v *run) item(it *manifest.Item) error {
	e := &it.Entry
	if e.Control && isCatalog(e.StorePath) {
		v.catalogSeen = true
	}
	if v.o.Manifest == nil {
		return v.report(v.structural(it))
	}
	for v.rec != nil && store.ComparePaths(v.recPath, e.StorePath) < 0 {
		if err := v.missing(); err != nil {
			return err
		}
	}
	if v.rec != nil && v.recPath == e.StorePath {
		r := v.compare(v.rec, it)
		if err := v.report(r); err != nil {
			return err
		}
		return v.nextRec()
	}
	r := v.base(it)
	r.Status, r.Detail = Extra, "in the store, not in the manifest"
	if it.WalkErr != nil {
		r.Detail += " (and it could not be read: " + it.WalkErr.Error() + ")"
	}
	return v.report(r)
}

func (v *run) base(it *manifest.Item) *Result {
	e := &it.Entry
	return &Result{StorePath: e.StorePath, WinPath: e.WinPath, Type: e.Type.String(), Control: e.Control, Status: OK, EFS: store.IsEFS(e)}
}

// readVerdict turns a read error into a status.
func readVerdict(err error) (Status, string) {
	switch {
	case errors.Is(err, store.ErrCorrupt):
		return Corrupted, err.Error()
	case errors.Is(err, store.ErrChanged):
		return Changed, err.Error()
	}
	return Unreadable, err.Error()
}

// structural is the verdict without a manifest.
func (v *run) structural(it *manifest.Item) *Result {
	r := v.base(it)
	e := &it.Entry
	if it.WalkErr != nil {
		r.Status, r.Detail = Unreadable, it.WalkErr.Error()
		return r
	}
	if d, bad := v.archiveDamage(e); bad {
		r.Status, r.Detail = Corrupted, d
		return r
	}
	if it.ReadErr != nil {
		r.Status, r.Detail = readVerdict(it.ReadErr)
		return r
	}
	if e.Type == store.TypeFile && e.LinkID != 0 && e.Nlink > 1 {
		m := linkMeta{e.Size, e.MtimeNs}
		if first, seen := v.linkSeen[e.LinkID]; seen {
			if first != m {
				r.Status = Changed
				r.Detail = fmt.Sprintf("hard-link group disagrees: %d bytes, mtime %s; an earlier path of the group has %d bytes, mtime %s",
					m.size, fmtNs(m.mtime), first.size, fmtNs(first.mtime))
			}
		} else {
			v.linkSeen[e.LinkID] = m
		}
	}
	return r
}

func fmtNs(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// compare is the verdict on an entry present in both the manifest and the store.
func (v *run) compare(m *manifest.Record, it *manifest.Item) *Result {
	r := v.base(it)
	e := &it.Entry
	if r.WinPath == "" {
		r.WinPath = m.WinPath
	}
	if it.WalkErr != nil {
		r.Status, r.Detail = Unreadable, it.WalkErr.Error()
		return r
	}
	if got := e.Type.String(); got != m.Type {
		r.Status, r.Detail = Changed, fmt.Sprintf("was a %s, now a %s", typeWord(m.Type), typeWord(got))
		return r
	}
	switch e.Type {
	case store.TypeDir, store.TypeSymlink, store.TypeOther:
		if e.Type == store.TypeSymlink && e.LinkTarget != m.LinkTarget {
			r.Status, r.Detail = Changed, fmt.Sprintf("symlink target was %q, now %q", m.LinkTarget, e.LinkTarget)
		} else if d, bad := v.archiveDamage(e); bad {
			// A directory's own mtime follows its children, which are
			// checked one by one; its archive header can still be damaged.
			r.Status, r.Detail = Corrupted, d
		}
		return r
	}
	// The archive's own checks first: a damaged entry's metadata may be
	// wrong too (and a hard link whose data is lost has no size).
	if d, bad := v.archiveDamage(e); bad {
		r.Status, r.Detail = Corrupted, d
		return r
	}
	var diffs []string
	if e.Size != m.Size {
		diffs = append(diffs, fmt.Sprintf("size was %d bytes, now %d", m.Size, e.Size))
	}
	if e.MtimeNs != m.MtimeNs {
		diffs = append(diffs, fmt.Sprintf("modified time was %s, now %s", fmtNs(m.MtimeNs), fmtNs(e.MtimeNs)))
	}
	if len(diffs) > 0 {
		r.Status, r.Detail = Changed, strings.Join(diffs, "; ")
		return r
	}
	if v.o.Level != LevelData {
		return r
	}
	if it.ReadErr != nil {
		r.Status, r.Detail = readVerdict(it.ReadErr)
		return r
	}
	switch {
	case m.XXH64 != "" && it.Hashed:
		if got := manifest.HashHex(it.Hash); got != m.XXH64 {
			r.Status = Corrupted
			r.Detail = fmt.Sprintf("content hash %s, manifest %s (same size and modified time)", got, m.XXH64)
		}
	case m.Error != "" && v.o.Manifest.Header.Hashed:
		r.Status, r.Detail = Skipped, "no reference hash: it was unreadable when the manifest was made ("+m.Error+")"
	}
	return r
}

func typeWord(t string) string {
	switch t {
	case "dir":
		return "directory"
	case "other":
		return "FIFO, socket or device"
	}
	return t
}

// finish settles the catalog's status and completeness.
func (v *run) finish(err error) (*Summary, error) {
	v.sum.Bytes = v.bytes.Load()
	v.sum.Complete = err == nil
	v.sum.Catalog, v.sum.CatalogD = v.catalog(err == nil)
	return v.sum, err
}

func (v *run) catalog(complete bool) (Status, string) {
	worst := OK
	var details []string
	for _, c := range v.control {
		if severity(c.Status) > severity(worst) {
			worst = c.Status
		}
		if c.Status != OK {
			details = append(details, c.StorePath+": "+strings.ToLower(string(c.Status))+" ("+c.Detail+")")
		}
	}
	usmt := v.kind == store.KindUSMTDir || v.kind == store.KindUSMT3Dir
	if !complete && !v.catalogSeen && worst == OK {
		return Skipped, "the run stopped before the catalog was checked"
	}
	if !v.catalogSeen && (usmt || v.wantCatalog) && (v.o.Manifest == nil || !v.wantCatalog) && worst == OK {
		// Required by the layout but absent (and not already reported
		// MISSING against the manifest).
		return Missing, "catalog.mig is not in the store: LoadState cannot restore it (the files can still be copied out)"
	}
	if len(v.control) == 0 && !usmt {
		return CatalogNone, "this store kind has no catalog"
	}
	if worst == OK {
		// Only presence and a full read were checked: whether LoadState
		// can open the store is not known here.
		return OK, "present and readable"
	}
	return worst, strings.Join(details, "; ")
}
