package fusefs

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/usmtkit/usmtkit/store"
)

// View selects how a store is laid out in the mount.
type View string

const (
	// ViewWindows shows one folder per drive and the control files under
	// ControlDir (the default).
	ViewWindows View = "windows"
	// ViewStore shows the store's own layout (store paths).
	ViewStore View = "store"
)

// ControlDir is the folder of the windows view that holds the USMT
// folder's entries other than File (the store's control files).
const ControlDir = "_usmt_store_control"

// ReadmeName is the file inside a share member folder that cannot be shown.
const ReadmeName = "README.txt"

// ParseView checks a --view value.
func ParseView(s string) (View, error) {
	switch View(strings.ToLower(s)) {
	case ViewWindows, "":
		return ViewWindows, nil
	case ViewStore:
		return ViewStore, nil
	}
	return "", fmt.Errorf("unknown view %q: use windows (drive folders, the default) or store (the raw store layout)", s)
}

// Options shape what the file system shows. The zero value shows the
// windows view, owned by root, modes 0444/0555.
type Options struct {
	View            View
	UID, GID        uint32
	Umask           uint32 // bits removed from 0444 (files) and 0555 (directories)
	CaseInsensitive bool
	// NoPassthrough serves every read through this process even when the
	// kernel could read a directory store's files itself.
	NoPassthrough bool
	// Logger receives the cause of every EIO; nil means standard error.
	Logger *log.Logger
	// Stats, when set, records how long requests take (stats.go).
	Stats *Stats
	// MaxInodes is about how many inodes the kernel may keep looked up
	// before the oldest are handed back to it (inodecap.go): 0 means
	// DefaultMaxInodes, a negative value no limit.
	MaxInodes int
}

// FS is a store (or a share of stores) adapted for go-fuse. Root gives the
// node to mount; nothing is read from the store before the kernel asks.
type FS struct {
	opts     Options
	trees    []*tree
	rootKids []kid // share mounts: the member folders
	share    bool
	born     time.Time // times of the nodes that have no source entry
	eio      atomic.Int64
	reads    atomic.Int64  // READ requests served by this process
	mounted  atomic.Bool   // served by a kernel mount: nodes can write to its page cache
	feeding  chan struct{} // tokens of the goroutines writing to the page cache
	fed      atomic.Int64  // bytes given to the page cache
	feedOff  atomic.Bool   // the kernel refused a store: stop trying
	noOpen   atomic.Bool   // Open answers ENOSYS: the kernel opens files without asking (openless.go)
	kept     openFiles     // store files of handle-less reads
	handles  atomic.Int64  // OPEN requests answered with a file handle (tests)
	open     openHandles   // file handles not released yet
	flushes  atomic.Int64  // FLUSH requests (tests)
	inodes   *inodeCap     // the inodes the kernel holds, oldest first
	backings *backings     // passthrough ids kept across opens (backing.go); nil unless mounted with passthrough
}

// tree is one store as shown in the mount.
type tree struct {
	fsys   *FS
	st     store.Store
	member string // share mounts: the folder name (store id); "" otherwise
	rootE  *store.Entry
	// Windows view of a USMT layout: the store paths of the File folder and
	// of the USMT folder around it; both "" when the store has no USMT layout.
	fileDir, usmtDir string
	winKids          []kid // the windows root's children (drive folders, ControlDir)
	passthrough      bool  // the store's files have descriptors (directory stores)
}

// StoreRoots are the roots of every store shown (with --all-volumes, the
// store's other volumes too): nothing may be mounted or written in them.
func (f *FS) StoreRoots() []string {
	var out []string
	for _, t := range f.trees {
		out = append(out, t.st.Info().Roots...)
	}
	return out
}

// totals sums store.Totaler over the mount's stores; ok is false when a
// store does not know its size without a walk.
func (f *FS) totals() (entries, bytes int64, ok bool) {
	for _, t := range f.trees {
		tt, isT := t.st.(store.Totaler)
		if !isT {
			return 0, 0, false
		}
		e, b := tt.Totals()
		entries, bytes = entries+e, bytes+b
	}
	return entries, bytes, len(f.trees) > 0
}

// Member is one store of a state migration point share copy.
type Member struct {
	Name  string      // folder name in the mount (the store id)
	Store store.Store // nil when the member cannot be read
	Why   string      // why Store is nil, in words for the README
}

// New adapts one store.
func New(s store.Store, o Options) (*FS, error) {
	f := newFS(o)
	t, err := f.newTree(s, "")
	if err != nil {
		return nil, err
	}
	f.trees = []*tree{t}
	return f, nil
}

// NewShare adapts the stores of a state migration point share copy: one
// folder per member, in the order given (sorted by name in listings).
func NewShare(members []Member, o Options) (*FS, error) {
	f := newFS(o)
	f.share = true
	seen := map[string]bool{}
	for _, m := range members {
		if m.Name == "" || strings.Contains(m.Name, "/") || seen[m.Name] {
			return nil, fmt.Errorf("share member name %q is empty, has a slash or is repeated", m.Name)
		}
		seen[m.Name] = true
		k := kid{name: m.Name, mode: syscall.S_IFDIR, ino: inoOf(inoVirtual, m.Name, "")}
		if m.Store == nil {
			k.kind, k.note = kindNote, m.Why
		} else {
			t, err := f.newTree(m.Store, m.Name)
			if err != nil {
				k.kind, k.note = kindNote, err.Error()
			} else {
				f.trees = append(f.trees, t)
				k.t = t
				k.kind, k.sp, k.e = t.rootKind(), "", t.rootE
			}
		}
		f.rootKids = append(f.rootKids, k)
	}
	sort.Slice(f.rootKids, func(i, j int) bool { return f.rootKids[i].name < f.rootKids[j].name })
	return f, nil
}

func newFS(o Options) *FS {
	if o.View == "" {
		o.View = ViewWindows
	}
	if o.Logger == nil {
		o.Logger = log.New(os.Stderr, "usmtkit: ", 0)
	}
	o.Umask &= 0o777
	f := &FS{opts: o, born: time.Now(), feeding: make(chan struct{}, maxFeeders)}
	f.kept.max = maxOpenFiles
	limit := o.MaxInodes
	switch {
	case limit == 0:
		limit = DefaultMaxInodes
	case limit < 0:
		limit = 0
	}
	f.inodes = newInodeCap(limit)
	return f
}

func (f *FS) logf(format string, a ...any) { f.opts.Logger.Printf(format, a...) }

// ReadCount is the number of READ requests this process served (reads
// done by the kernel through passthrough are not counted).
func (f *FS) ReadCount() int64 { return f.reads.Load() }

// EIOCount is the number of requests answered with EIO so far.
func (f *FS) EIOCount() int64 { return f.eio.Load() }

// PassthroughCapable reports whether the store's files can be served by
// FUSE passthrough (they are files of a directory store).
func (f *FS) PassthroughCapable() bool {
	for _, t := range f.trees {
		if t.passthrough {
			return true
		}
	}
	return false
}

// Root is the node to give to fs.Mount or fs.NewNodeFS.
func (f *FS) Root() gofs.InodeEmbedder {
	if f.share {
		return &node{fsys: f, kind: kindShareRoot}
	}
	t := f.trees[0]
	return &node{fsys: f, t: t, kind: t.rootKind(), e: t.rootE}
}

func (f *FS) newTree(s store.Store, member string) (*tree, error) {
	root, err := s.Stat("")
	if err != nil {
		return nil, fmt.Errorf("reading the root of the store: %w", err)
	}
	t := &tree{fsys: f, st: s, member: member, rootE: root}
	t.passthrough = s.Info().Kind.IsDirectory() && !f.opts.NoPassthrough
	if f.opts.View == ViewWindows {
		t.findLayout()
		if t.fileDir != "" {
			t.winKids = t.windowsRootKids()
		}
	}
	return t, nil
}

// findLayout finds USMT/File (or USMT3/File), matching names the way
// Windows would, without assuming the store kind: archives of USMT stores
// have the same layout.
func (t *tree) findLayout() {
	kids, _ := t.st.ReadDir("")
	usmt := pickFold(kids, "USMT", "USMT3")
	if usmt == nil {
		return
	}
	inner, _ := t.st.ReadDir(usmt.StorePath)
	file := pickFold(inner, "File")
	if file == nil {
		return
	}
	t.usmtDir, t.fileDir = usmt.StorePath, file.StorePath
}

// pickFold returns the first directory whose name equals one of names,
// exactly first, then ignoring case.
func pickFold(es []store.Entry, names ...string) *store.Entry {
	for _, fold := range []bool{false, true} {
		for _, n := range names {
			for i := range es {
				if es[i].Type != store.TypeDir {
					continue
				}
				if es[i].Name() == n || (fold && strings.EqualFold(es[i].Name(), n)) {
					return &es[i]
				}
			}
		}
	}
	return nil
}

// rootKind is the kind of the node showing this tree's top.
func (t *tree) rootKind() nodeKind {
	if t.fileDir != "" {
		return kindWinRoot
	}
	return kindEntry
}

// windowsRootKids lists the drive folders and the control folder.
func (t *tree) windowsRootKids() []kid {
	drives, err := t.st.ReadDir(t.fileDir)
	if err != nil && len(drives) == 0 {
		t.fsys.logf("listing %s: %v", t.fileDir, err)
	}
	var out []kid
	used := map[string]bool{}
	for i := range drives {
		used[drives[i].Name()] = true
	}
	for i := range drives {
		e := &drives[i]
		name := e.Name()
		if len(name) == 2 && name[1] == '$' && isLetter(name[0]) {
			if d := strings.ToUpper(name[:1]); !used[d] {
				used[d] = true
				name = d
			}
		}
		out = append(out, t.entryKid(name, e, ""))
	}
	usmtKids, _ := t.st.ReadDir(t.usmtDir)
	for i := range usmtKids {
		if usmtKids[i].StorePath != t.fileDir {
			// The USMT folder holds more than File: show it as ControlDir.
			ue, err := t.st.Stat(t.usmtDir)
			if err == nil {
				k := t.entryKid(ControlDir, ue, "")
				k.kind = kindControl
				out = append(out, k)
			}
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }

// nodeKind says what a node shows.
type nodeKind uint8

const (
	kindEntry     nodeKind = iota // a store entry (file, directory, symlink, other)
	kindControl                   // the USMT folder minus File, named ControlDir
	kindWinRoot                   // the windows view's top: drive folders and ControlDir
	kindShareRoot                 // a share mount's root: one folder per member
	kindNote                      // a member that cannot be shown: holds README.txt
	kindText                      // README.txt
)

// kid is a child found by a listing or a lookup, before it has an Inode.
type kid struct {
	name   string
	kind   nodeKind
	t      *tree
	sp     string       // store path (kindEntry, kindControl)
	e      *store.Entry // kindEntry, kindControl
	mp     string       // path in the mount below the tree's top (for folded directories)
	folded bool         // reached through a case-insensitive match on the way
	note   string       // kindNote, kindText
	mode   uint32       // S_IFMT bits
	ino    uint64
}

// entryKid makes the kid of a store entry shown under name; parentMP is
// the parent's mount path, parentFolded whether it was reached by folding.
func (t *tree) entryKid(name string, e *store.Entry, parentMP string) kid {
	k := kid{name: name, kind: kindEntry, t: t, sp: e.StorePath, e: e, mp: joinMP(parentMP, name)}
	k.mode = typeBits(e.Type)
	k.ino = t.entryIno(e, k.mp, false)
	return k
}

// entryIno numbers a store entry (see the package comment).
func (t *tree) entryIno(e *store.Entry, mp string, folded bool) uint64 {
	switch {
	case e.Type == store.TypeDir && folded:
		return inoOf(inoFolded, t.member, mp)
	case e.Type == store.TypeDir:
		return inoOf(inoDir, t.member, e.StorePath)
	case e.Type == store.TypeFile && e.LinkID != 0:
		return inoOfLink(t.member, e.LinkID)
	}
	return inoOf(inoPath, t.member, e.StorePath)
}

func joinMP(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func typeBits(t store.EntryType) uint32 {
	switch t {
	case store.TypeDir:
		return syscall.S_IFDIR
	case store.TypeSymlink:
		return syscall.S_IFLNK
	}
	// TypeOther (FIFO, socket, device) is shown as an empty, unreadable
	// file: it is not Windows data and is never opened.
	return syscall.S_IFREG
}

// isNotExist reports a store "no such entry" error.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT)
}
