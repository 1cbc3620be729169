// Package hardlinkscan tells, for every file of a hard-link migration store
// (or any directory of hard links), whether its data also lives outside
// the store: linked with the live file, a separate copy, a stale old
// version, moved elsewhere on the volume, or only in the store. It counts
// the bytes deleting the store would free, and it owns the safe removal of
// a store (`usmtkit rd`).
//
// Everything is decided from (device, inode) identities and the paths
// actually found, never from st_nlink alone: ntfs-3g counts a DOS 8.3
// name as an extra link, so a file only in the store can show nlink 2.
// Link counts are only used to describe stores when no live volume is
// given, and the words used then say "probably".
//
// Nothing here writes except Remove. See docs/hardlinks.md.
package hardlinkscan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// Class is what a store file is with respect to the live volume. The
// strings are part of the --json contract (docs/hardlinks.md).
type Class string

const (
	// Linked: the live file at the original path is the same inode.
	Linked Class = "linked"
	// OnlyInStore: no path outside the store holds this data.
	OnlyInStore Class = "only-in-store"
	// Copy: the live path holds a separate file (another inode) that is
	// not newer; Compare says whether its content is the same.
	Copy Class = "copy"
	// Stale: the live path holds a different, newer file: the link broke
	// (a temp-file-and-rename save) and the store has the old version.
	Stale Class = "stale"
	// Moved: the live path is gone but the inode is linked elsewhere on
	// the volume (OtherPath).
	Moved Class = "moved"
	// Control: store metadata (catalog.mig, migstate.dat): exists only
	// for the store, never user data.
	Control Class = "control"
	// ProbablyLinked (no live root): the link count is higher than the
	// number of the inode's paths in the store, so another path probably
	// exists — or ntfs-3g counted a DOS 8.3 name.
	ProbablyLinked Class = "probably-linked"
	// ProbablyOnlyInStore (no live root): every counted link is inside
	// the store.
	ProbablyOnlyInStore Class = "probably-only-in-store"
	// Unknown: the live path could not be examined (permission, I/O).
	Unknown Class = "unknown"
)

// Classes lists every class in report order.
var Classes = []Class{Linked, Copy, Stale, Moved, OnlyInStore, Control, ProbablyLinked, ProbablyOnlyInStore, Unknown}

// CompareMode says how a COPY is compared with its live file.
type CompareMode int

const (
	// CompareAuto hashes the content, except on a volume where reading
	// would update access times (AccessTimeHazard): there size and mtime.
	CompareAuto CompareMode = iota
	// CompareContent always hashes both files (xxhash64).
	CompareContent
	// CompareMetadata compares size and mtime only; nothing is read.
	CompareMetadata
)

// Options configure a Scan.
type Options struct {
	// Live maps drives onto mounted live volumes. Empty: no live volume,
	// only link groups and link counts are reported.
	Live    []LiveRoot
	Compare CompareMode
	// Progress, when set, is called after every store file.
	Progress func(files, bytes int64)
}

// File is the verdict on one store file (one path; hard links inside the
// store are one File each).
type File struct {
	StorePath string
	WinPath   string
	Volume    int
	User      string
	Size      int64
	MtimeNs   int64
	Dev, Ino  uint64
	Nlink     uint32 // as reported; never trusted alone
	// StoreLinks counts this inode's store paths seen up to this one in
	// walk order (files decided during the walk) or in the whole store
	// (files decided after the live scan): the last path of an in-store
	// group always carries the group's size.
	StoreLinks int
	Class      Class
	// LivePath is the path the file had on the live volume (set with a
	// live root); LiveExists tells whether something was there.
	LivePath    string
	LiveExists  bool
	LiveSize    int64
	LiveMtimeNs int64
	// Compare is "same" or "different" for a Copy; CompareBy says how it
	// was decided: "content" (xxhash64), "size", or "metadata" (size and
	// mtime, nothing read).
	Compare   string
	CompareBy string
	// OtherPath is a path outside the store that holds this inode (the
	// live path for Linked, the new place for Moved).
	OtherPath string
	// Freed: deleting the store frees this inode (no path outside the
	// store). With no live root it is a link-count estimate.
	Freed bool
	// Lost: deleting the store loses this content: it is freed and not
	// a same-content copy, and not store metadata.
	Lost bool
	Note string
	Err  error
}

// Count is files and bytes of one class.
type Count struct {
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
}

// UserBytes is the accounting of one profile folder.
type UserBytes struct {
	User          string `json:"user"` // profile folder name; "" for files outside profiles
	Files         int64  `json:"files"`
	BytesApparent int64  `json:"bytes_apparent"`
	BytesUnique   int64  `json:"bytes_unique"`
	BytesFreed    int64  `json:"bytes_freed"`
	BytesLost     int64  `json:"bytes_lost"`
}

// Problem is something that could not be examined.
type Problem struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// MaxProblems bounds the problems kept in memory; ProblemCount keeps going.
const MaxProblems = 1000

// Summary is the result of a Scan.
type Summary struct {
	Kind      store.Kind `json:"kind"`
	Roots     []string   `json:"roots"`
	Live      bool       `json:"live"`
	LiveRoots []LiveRoot `json:"live_roots"`
	CompareBy string     `json:"compare_by"` // content or metadata

	Files         int64 `json:"files"`
	BytesApparent int64 `json:"bytes_apparent"`
	BytesUnique   int64 `json:"bytes_unique"`
	// BytesFreed: inodes whose every remaining path is inside the store
	// roots, each once. Without a live root: inodes whose link count
	// does not exceed their in-store paths (a lower bound on ntfs-3g).
	BytesFreed int64 `json:"bytes_freed"`
	// BytesLost: freed bytes whose content exists nowhere else.
	BytesLost int64 `json:"bytes_lost"`
	LostFiles int64 `json:"lost_files"`
	// NoOutside counts non-control files with no known path outside the
	// store (every file when no live root is given).
	NoOutside         int64 `json:"files_without_known_outside_path"`
	InStoreLinkGroups int64 `json:"in_store_link_groups"`

	Classes map[Class]*Count `json:"classes"`
	Users   []UserBytes      `json:"users"`
	Scan    *LiveScan        `json:"live_scan,omitempty"`

	Notes        []string  `json:"notes"`
	Problems     []Problem `json:"problems"`
	ProblemCount int64     `json:"problem_count"`
}

// inode is what we remember of a store inode with several links.
type inode struct {
	storeLinks int
	nlink      uint32
	size       int64
	user       string
	outside    string // a path outside the store roots, "" while none is known
	accounted  bool   // unique/freed bytes already counted
	lost       bool   // counted as lost
}

type scanner struct {
	s         store.Store
	kind      store.Kind
	opts      Options
	sum       *Summary
	emit      func(*File) error
	live      map[string]string // drive -> live root ("" for plain)
	liveDevs  map[uint64]string // dev of each live root -> root
	storeAbs  []string          // store roots, resolved, for "is this path inside the store"
	storeKeys map[inodeKey]bool
	inodes    map[inodeKey]*inode
	pending   []*File
	users     map[string]*UserBytes
	compareBy string
}

// Scan walks the store once, examines each file's live path, scans the live
// volumes once for the inodes still unaccounted for, and calls emit for
// every store file: in walk order for files decided during the walk, then
// the files that needed the live scan. It returns the totals. A walk or
// live-path problem is counted (Summary.ProblemCount) and the scan goes on.
func Scan(ctx context.Context, s store.Store, opts Options, emit func(*File) error) (*Summary, error) {
	info := s.Info()
	sc := &scanner{
		s: s, kind: info.Kind, opts: opts, emit: emit,
		sum: &Summary{Kind: info.Kind, Roots: info.Roots, LiveRoots: opts.Live, Live: len(opts.Live) > 0,
			Classes: map[Class]*Count{}, Notes: []string{}, Problems: []Problem{}},
		live: map[string]string{}, liveDevs: map[uint64]string{}, storeKeys: map[inodeKey]bool{},
		inodes: map[inodeKey]*inode{}, users: map[string]*UserBytes{},
	}
	if sc.sum.LiveRoots == nil {
		sc.sum.LiveRoots = []LiveRoot{}
	}
	if !info.Kind.IsDirectory() {
		return nil, fmt.Errorf("%s is a %s store: hard links exist only in directory stores; run usmtkit info on it", strings.Join(info.Input, ", "), info.Kind)
	}
	for _, r := range info.Roots {
		real, err := filepath.EvalSymlinks(r)
		if err != nil {
			real = r
		}
		sc.storeAbs = append(sc.storeAbs, real)
		var st unix.Stat_t
		if err := unix.Stat(r, &st); err == nil {
			sc.storeKeys[inodeKey{st.Dev, st.Ino}] = true
		}
	}
	for _, l := range opts.Live {
		real, err := filepath.EvalSymlinks(l.Path)
		if err != nil {
			return nil, fmt.Errorf("--live %s: %w", l.Path, err)
		}
		var inside *safeio.InsideError
		if err := safeio.CheckOutside(real, info.Roots); errors.As(err, &inside) {
			return nil, fmt.Errorf("--live %s is inside the store %s; give the volume the store's drive stood for, like /mnt/c", l.Path, inside.Root)
		}
		var st unix.Stat_t
		if err := unix.Stat(real, &st); err != nil {
			return nil, fmt.Errorf("--live %s: %w", l.Path, err)
		}
		sc.live[l.Drive] = real
		if _, dup := sc.liveDevs[st.Dev]; !dup {
			sc.liveDevs[st.Dev] = real
		}
	}
	sc.compareBy = "content"
	switch opts.Compare {
	case CompareMetadata:
		sc.compareBy = "metadata"
	}
	// A hazard mount is reported whatever the mode: listing it is a write.
	for _, p := range sc.hazardPaths() {
		if m, bad := AccessTimeHazard(p); bad {
			if opts.Compare == CompareAuto && len(opts.Live) > 0 {
				sc.compareBy = "metadata"
				sc.note(HazardNote(m) + "; copies are compared by size and mtime only (--compare content to read them anyway)")
			} else {
				sc.note(HazardNote(m))
			}
		}
	}
	if len(opts.Live) > 0 {
		sc.sum.CompareBy = sc.compareBy
	}
	if len(opts.Live) > 0 && info.Kind != store.KindPlain {
		for _, d := range StoreDrives(s) {
			if _, ok := sc.live[d]; !ok {
				sc.note(fmt.Sprintf("no --live for drive %s: its files are described from link counts only (give --live %s=/mnt/%s)", d, d, strings.ToLower(d)))
			}
		}
	}

	walkErr := s.Walk(ctx, sc.visit)
	if walkErr != nil {
		return sc.sum, walkErr
	}
	if len(opts.Live) > 0 {
		if err := sc.scanLive(ctx); err != nil {
			return sc.sum, err
		}
	}
	if err := sc.finish(); err != nil {
		return sc.sum, err
	}
	return sc.sum, nil
}

// hazardPaths are the folders whose mounts decide CompareAuto.
func (sc *scanner) hazardPaths() []string {
	var ps []string
	ps = append(ps, sc.storeAbs...)
	for _, l := range sc.opts.Live {
		ps = append(ps, l.Path)
	}
	return ps
}

func (sc *scanner) note(n string) {
	for _, x := range sc.sum.Notes {
		if x == n {
			return
		}
	}
	sc.sum.Notes = append(sc.sum.Notes, n)
}

func (sc *scanner) problem(path string, err error) {
	sc.sum.ProblemCount++
	if len(sc.sum.Problems) < MaxProblems {
		sc.sum.Problems = append(sc.sum.Problems, Problem{Path: path, Error: err.Error()})
	}
}

// insideStore tells whether a live path found by lstatLive (symlinks
// resolved in the root, none followed below it) lies in a store root. It
// runs once per linked file, so it compares names, not a stat per folder
// above p as safeio.CheckOutside does for outputs.
func (sc *scanner) insideStore(p string) bool {
	for _, r := range sc.storeAbs {
		if within(p, r) {
			return true
		}
	}
	return false
}

func (sc *scanner) user(name string) *UserBytes {
	u := sc.users[name]
	if u == nil {
		u = &UserBytes{User: name}
		sc.users[name] = u
	}
	return u
}

// visit is the store walk callback: it examines the live path at once and
// decides every file it can; the rest wait for the live scan.
func (sc *scanner) visit(e *store.Entry, werr error) error {
	if werr != nil {
		sc.problem(e.StorePath, werr)
	}
	if e.Type != store.TypeFile {
		return nil
	}
	if werr != nil && e.Ino == 0 {
		return sc.emitFile(&File{StorePath: e.StorePath, WinPath: e.WinPath, Volume: e.Volume, Class: Unknown, Err: werr})
	}
	f := &File{StorePath: e.StorePath, WinPath: e.WinPath, Volume: e.Volume, User: store.UserOf(e.WinPath),
		Size: e.Size, MtimeNs: e.MtimeNs, Dev: e.Dev, Ino: e.Ino, Nlink: e.Nlink, StoreLinks: 1}
	sc.sum.Files++
	sc.sum.BytesApparent += e.Size
	u := sc.user(f.User)
	u.Files++
	u.BytesApparent += e.Size
	if sc.opts.Progress != nil {
		sc.opts.Progress(sc.sum.Files, sc.sum.BytesApparent)
	}

	key := inodeKey{e.Dev, e.Ino}
	var in *inode
	if e.Nlink > 1 {
		if in = sc.inodes[key]; in != nil {
			in.storeLinks++
			if in.storeLinks == 2 {
				sc.sum.InStoreLinkGroups++
			}
		}
	}

	drive, rel, hasRel := liveRel(sc.kind, e.StorePath)
	root, haveLive := sc.live[drive]
	switch {
	case e.Control:
		f.Class = Control
	case !haveLive:
		// Decided from link counts after the walk, when the in-store
		// path count is final.
		f.Class = ProbablyOnlyInStore
	case !hasRel:
		f.Class = OnlyInStore
		f.Note = "not under a drive folder: it had no place on the live volume"
	default:
		sc.examineLive(f, root, rel)
	}
	if e.Nlink <= 1 {
		// A link count can be inflated (ntfs-3g counts DOS names) but
		// never too low: an inode with one link has no other path.
		return sc.decide(f, nil)
	}
	if f.Class == Linked && in == nil && e.Nlink == 2 {
		// The store path and the live path are the two links: no other
		// store path can follow, so nothing needs remembering.
		return sc.decide(f, nil)
	}
	if in == nil {
		in = sc.remember(key, f)
	}
	if f.Class == Linked && in.outside == "" {
		in.outside = f.OtherPath
	}
	switch {
	case f.Class == ProbablyOnlyInStore:
		sc.pending = append(sc.pending, f)
		return nil
	case f.Class == Linked || f.Class == Unknown || in.outside != "":
		return sc.decide(f, in)
	}
	// Live path missing, or a copy/stale file whose store inode has more
	// links: only the live scan can tell where they are.
	sc.pending = append(sc.pending, f)
	return nil
}

func (sc *scanner) remember(key inodeKey, f *File) *inode {
	in := &inode{storeLinks: 1, nlink: f.Nlink, size: f.Size, user: f.User}
	sc.inodes[key] = in
	return in
}

// examineLive looks at the live path of a store file and sets its class
// from what is there: the same inode, another file, or nothing.
func (sc *scanner) examineLive(f *File, root, rel string) {
	p, st, err := lstatLive(root, rel)
	f.LivePath = p
	switch {
	case err == nil && statIs(st, unix.S_IFREG):
		f.LiveExists, f.LiveSize, f.LiveMtimeNs = true, st.Size, st.Mtim.Sec*1e9+st.Mtim.Nsec
		if st.Dev == f.Dev && st.Ino == f.Ino {
			if sc.insideStore(p) {
				f.Note = "the live path lies inside the store"
				f.Class = OnlyInStore
				return
			}
			f.Class, f.OtherPath = Linked, p
			return
		}
		if f.LiveMtimeNs > f.MtimeNs {
			f.Class = Stale
			f.Note = "the live file is newer and is another file: the link broke (saved via a temporary file); the store holds the old version"
			return
		}
		f.Class = Copy
		sc.compare(f, p)
	case err == nil:
		f.LiveExists = true
		f.Class = OnlyInStore // unless the live scan finds the inode
		f.Note = "the live path is not a regular file (" + typeWord(st) + ")"
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		f.Class = OnlyInStore // unless the live scan finds the inode
	default:
		f.Class, f.Err = Unknown, fmt.Errorf("looking at the live file %s: %w", p, err)
		sc.problem(p, err)
	}
}

func typeWord(st *unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a folder"
	case unix.S_IFLNK:
		return "a symlink"
	}
	return "a special file"
}

// compare decides SAME or DIFFERENT for a copy.
func (sc *scanner) compare(f *File, live string) {
	if f.LiveSize != f.Size {
		f.Compare, f.CompareBy = "different", "size"
		return
	}
	if sc.compareBy == "metadata" {
		f.CompareBy = "metadata"
		if f.LiveMtimeNs == f.MtimeNs {
			f.Compare = "same"
		} else {
			f.Compare = "different"
		}
		return
	}
	f.CompareBy = "content"
	a, err := sc.hashStore(f)
	if err != nil {
		f.Compare, f.Err = "", fmt.Errorf("reading the store file: %w", err)
		sc.problem(f.StorePath, err)
		return
	}
	b, err := hashLive(live)
	if err != nil {
		f.Compare, f.Err = "", fmt.Errorf("reading the live file %s: %w", live, err)
		sc.problem(live, err)
		return
	}
	if a == b {
		f.Compare = "same"
	} else {
		f.Compare = "different"
	}
}

func (sc *scanner) hashStore(f *File) (uint64, error) {
	e := &store.Entry{StorePath: f.StorePath, Volume: f.Volume, Type: store.TypeFile, Dev: f.Dev, Ino: f.Ino, Size: f.Size, MtimeNs: f.MtimeNs}
	r, err := sc.s.Open(e)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	h := xxhash.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, r.Size())); err != nil {
		return 0, err
	}
	return h.Sum64(), nil
}

func hashLive(p string) (uint64, error) {
	// The live path was found with lstatLive; open it without following
	// a symlink put there since.
	dir, err := safeio.OpenDirPath(filepath.Dir(p))
	if err != nil {
		return 0, err
	}
	fh, err := dir.OpenFile(filepath.Base(p))
	dir.Close()
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	h := xxhash.New()
	if _, err := io.Copy(h, fh); err != nil {
		return 0, err
	}
	return h.Sum64(), nil
}

// scanLive walks each live volume once for the inodes of pending files.
func (sc *scanner) scanLive(ctx context.Context) error {
	wanted := map[inodeKey]*inode{}
	for _, f := range sc.pending {
		key := inodeKey{f.Dev, f.Ino}
		in := sc.inodes[key]
		// An inode with no more links than store paths has no other
		// path: a link count may be too high, never too low.
		if in == nil || in.outside != "" || in.nlink <= uint32(in.storeLinks) {
			continue
		}
		if _, onLive := sc.liveDevs[f.Dev]; onLive {
			wanted[key] = in
		}
	}
	if len(wanted) == 0 {
		return nil
	}
	stats := &LiveScan{Wanted: len(wanted), Skipped: []string{}, Complete: true}
	sc.sum.Scan = stats
	left := len(wanted)
	// One walk per live file system that holds wanted inodes.
	var roots []string
	for _, r := range sc.liveDevs {
		roots = append(roots, r)
	}
	sort.Strings(roots)
	for _, root := range roots {
		var st unix.Stat_t
		if err := unix.Stat(root, &st); err != nil {
			continue
		}
		any := false
		for k := range wanted {
			if k.dev == st.Dev {
				any = true
				break
			}
		}
		if !any || sc.storeKeys[inodeKey{st.Dev, st.Ino}] {
			continue
		}
		stats.Roots = append(stats.Roots, root)
		ls := &liveScanner{ctx: ctx, skip: sc.storeKeys, wanted: wanted, left: &left, stats: stats,
			onErr: func(p string, err error) { sc.problem(p, fmt.Errorf("listing a live folder: %w", err)) }}
		if err := ls.scanRoot(root); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			stats.Errors++
			sc.problem(root, err)
		}
		if left == 0 {
			break
		}
	}
	if stats.Errors > 0 {
		stats.Complete = false
		sc.note(fmt.Sprintf("%d live folders could not be listed: a file linked only from there shows as only-in-store", stats.Errors))
	}
	return nil
}

// finish decides the pending files and fills the per-user totals.
func (sc *scanner) finish() error {
	for _, f := range sc.pending {
		key := inodeKey{f.Dev, f.Ino}
		if err := sc.decide(f, sc.inodes[key]); err != nil {
			return err
		}
	}
	sc.pending = nil
	for _, u := range sc.users {
		sc.sum.Users = append(sc.sum.Users, *u)
	}
	sort.Slice(sc.sum.Users, func(i, j int) bool { return sc.sum.Users[i].User < sc.sum.Users[j].User })
	if sc.sum.Users == nil {
		sc.sum.Users = []UserBytes{}
	}
	return nil
}

// decide sets the final class, freed and lost of a file, counts it, and
// emits it. in is nil for inodes with no other store path.
func (sc *scanner) decide(f *File, in *inode) error {
	if in != nil {
		f.StoreLinks = in.storeLinks
	}
	outside := f.OtherPath
	if in != nil && in.outside != "" {
		outside = in.outside
	}
	haveLive := len(sc.opts.Live) > 0
	switch {
	case f.Class == Unknown:
	case f.Class == ProbablyOnlyInStore || (f.Class == Control && !haveLive):
		// No live volume: the link count against the in-store paths is
		// all there is. ntfs-3g's DOS-name links make this err towards
		// "linked", so freed is a lower bound.
		f.Freed = f.Nlink <= uint32(f.StoreLinks)
		if f.Class != Control {
			if !f.Freed {
				f.Class = ProbablyLinked
			}
			f.Lost = f.Freed
		}
	default:
		if outside != "" && f.Class == OnlyInStore {
			f.Class = Moved
			f.Note = "the live path is gone; the data is still linked at " + outside
		}
		if f.Class != Linked {
			f.OtherPath = outside
		}
		f.Freed = outside == ""
		f.Lost = f.Freed && f.Class != Control && !(f.Class == Copy && f.Compare == "same")
		if f.Class == OnlyInStore && f.Nlink > uint32(f.StoreLinks) && f.Note == "" {
			f.Note = fmt.Sprintf("link count %d but only %d path(s) found, all in the store: the rest is a DOS 8.3 name counted by ntfs-3g, or a link outside the scanned live folders", f.Nlink, f.StoreLinks)
		}
	}
	if f.Class != Control && outside == "" {
		sc.sum.NoOutside++
	}
	c := sc.sum.Classes[f.Class]
	if c == nil {
		c = &Count{}
		sc.sum.Classes[f.Class] = c
	}
	c.Files++
	c.Bytes += f.Size
	if f.Lost {
		sc.sum.LostFiles++
	}
	// Bytes per inode, once: the first path of the inode decides the user.
	if in == nil || !in.accounted {
		user := f.User
		if in != nil {
			in.accounted = true
			user = in.user
		}
		u := sc.user(user)
		sc.sum.BytesUnique += f.Size
		u.BytesUnique += f.Size
		if f.Freed {
			sc.sum.BytesFreed += f.Size
			u.BytesFreed += f.Size
		}
	}
	if f.Lost && (in == nil || !in.lost) {
		if in != nil {
			in.lost = true
		}
		sc.sum.BytesLost += f.Size
		sc.user(f.User).BytesLost += f.Size
	}
	if sc.emit != nil {
		return sc.emit(f)
	}
	return nil
}

func (sc *scanner) emitFile(f *File) error {
	sc.sum.Files++
	sc.sum.NoOutside++
	c := sc.sum.Classes[f.Class]
	if c == nil {
		c = &Count{}
		sc.sum.Classes[f.Class] = c
	}
	c.Files++
	if sc.emit != nil {
		return sc.emit(f)
	}
	return nil
}
