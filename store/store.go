// Package store owns the model of a USMT migration store and the readers
// for every store kind usmtkit understands: USMT 4+ uncompressed and
// hard-link directory stores (one or several volumes), the USMT 3 layout, plain
// directories, copies of a ConfigMgr state migration point share, compressed
// USMT.MIG files (identified, structurally walked and verified; the File records
// of an unencrypted one read by an experimental reader, mig_store.go),
// and — through the Opener registry — usmtkit's own archive format.
//
// # Paths
//
// Every entry has two names:
//
//   - StorePath: the slash-separated path inside the store, relative to the
//     store root (the ScanState StorePath), e.g.
//     "USMT/File/C$/Users/jdoe/Documents/a.docx". Bytes are kept as found:
//     a name that is not valid UTF-8 stays byte for byte.
//   - WinPath: the logical Windows path the file had on the captured
//     machine, e.g. `C:\Users\jdoe\Documents\a.docx`. Control files
//     (catalog.mig, migstate.dat, status.~lg) and the store's own folders have
//     no WinPath.
//
// # Order
//
// Walk yields entries in depth-first pre-order with the children of each
// directory sorted bytewise by name; ComparePaths is that order. Parents
// come before children, so consumers (the manifest, verify, the archive
// writer) can merge-join two walks without holding either in memory.
//
// # Read-only
//
// Nothing in this package opens a source for writing or changes its
// times or attributes: files and directories are opened O_RDONLY with
// O_NOATIME where the kernel allows it, never followed through symlinks,
// and FIFOs, sockets and devices are never opened at all. Hard-link stores
// share inodes with the live user files, so this is a data-safety rule,
// not a nicety.
package store

import (
	"context"
	"errors"
	"io"
	"strings"
)

// Kind names a store kind. The strings are part of the --json contract
// (docs/cli.md): never change one, only add.
type Kind string

const (
	// KindUSMTDir is a USMT 4+ uncompressed store: <StorePath>/USMT/File/<X>$/...
	// A hard-link store has the same layout; Summary.HardLinked tells them apart.
	KindUSMTDir Kind = "usmt-dir"
	// KindUSMT3Dir is the USMT 3 uncompressed layout: <StorePath>/USMT3/...
	KindUSMT3Dir Kind = "usmt3-dir"
	// KindPlain is any directory without a USMT layout, opened as one tree.
	KindPlain Kind = "plain"
	// KindSMP is a copy of a state migration point share: a folder of stores.
	// It is not itself a Store; see Detection.Members.
	KindSMP Kind = "smp-share"
	// KindMIG is a compressed USMT.MIG / USMT3.MIG file.
	KindMIG Kind = "usmt-mig"
	// KindArchive is usmtkit's own tar+zstd archive (package compress).
	KindArchive Kind = "usmtkit-archive"
)

// IsDirectory reports whether stores of kind k are folders on a file
// system (USMT 4+, USMT 3, plain): their files have descriptors, hard links
// and a live tree, unlike archives, USMT.MIG files and share copies.
func (k Kind) IsDirectory() bool {
	return k == KindUSMTDir || k == KindUSMT3Dir || k == KindPlain
}

// EntryType is the type of an entry.
type EntryType uint8

const (
	TypeFile EntryType = iota
	TypeDir
	TypeSymlink
	// TypeOther is a FIFO, socket or device node. Such entries are listed
	// and counted but never opened: they are not Windows data.
	TypeOther
)

func (t EntryType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	default:
		return "other"
	}
}

// Entry is one file, directory or other node of a store.
//
// If you add a field, update the manifest record (internal/manifest/record.go), the archive
// TOC (compress/toc.go) and docs/manifest.md and docs/format.md.
type Entry struct {
	StorePath string // slash-separated, relative to the store root; "" is the root itself
	WinPath   string // logical Windows path; "" when the entry has none
	Volume    int    // index into Info.Roots of the volume the entry came from

	Type       EntryType
	Mode       uint32 // POSIX permission bits as found (0 when the source has none)
	Size       int64  // bytes of content (0 for directories)
	MtimeNs    int64  // last write time, ns since the Unix epoch
	AtimeNs    int64
	CtimeNs    int64 // inode change time (POSIX ctime), not creation time
	BtimeNs    int64 // creation time; valid only when HasBtime
	HasBtime   bool
	WinAttrs   uint32 // FILE_ATTRIBUTE_* bits; valid only when HasWinAttrs
	HasWinAttr bool

	Dev   uint64
	Ino   uint64
	Nlink uint32 // as reported by the source; never trust it alone (ntfs-3g counts 8.3 names)
	// LinkID identifies the content: entries with equal non-zero LinkID are
	// hard links to the same data. For directory stores it is derived from
	// (Dev, Ino); for archives from the TOC's link group. 0 for non-files.
	LinkID uint64

	LinkTarget string // symlink target, as stored
	Control    bool   // store metadata (catalog.mig, migstate.dat, status.~lg), not a user file
}

// Name is the last component of the store path.
func (e *Entry) Name() string {
	if i := strings.LastIndexByte(e.StorePath, '/'); i >= 0 {
		return e.StorePath[i+1:]
	}
	return e.StorePath
}

// IsDir reports whether the entry is a directory.
func (e *Entry) IsDir() bool { return e.Type == TypeDir }

// File is an open regular file of a store.
type File interface {
	io.ReaderAt
	io.Closer
	// Size is the file size the reader will serve.
	Size() int64
}

// WalkFunc is called for every entry in Walk order. When err is non-nil the
// entry could not be read completely (e is still filled as far as known,
// at least StorePath): the caller must count it; Walk keeps going.
// Returning SkipDir from a directory skips its children; any other error
// stops the walk and is returned by Walk.
type WalkFunc func(e *Entry, err error) error

// SkipDir is returned by a WalkFunc to skip a directory's children.
var SkipDir = errors.New("skip this directory")

// Store is an opened, readable store of any kind.
type Store interface {
	// Info describes the store as detected at open time (cheap, no walk).
	Info() *Info
	// Walk streams every entry under the store root (the root itself
	// first) in ComparePaths order with memory bounded by the tree's depth
	// and its widest directory, never by its size.
	Walk(ctx context.Context, fn WalkFunc) error
	// Stat returns the entry at a store path ("" is the root).
	// A missing path gives an error wrapping fs.ErrNotExist.
	Stat(storePath string) (*Entry, error)
	// ReadDir lists a directory's children sorted by name.
	ReadDir(storePath string) ([]Entry, error)
	// Open opens a regular file for reading. The file is re-checked on
	// open: when it is no longer the regular file e describes (replaced by
	// a directory, a FIFO, another inode) an error wrapping ErrChanged is
	// returned.
	Open(e *Entry) (File, error)
	Close() error
}

// Totaler is a store that knows its size without a walk (an archive's
// index does): its entries, the root included, and the bytes of its
// files' data, each hard-link group once. A mount reports them to df.
type Totaler interface {
	Totals() (entries, bytes int64)
}

// Info describes an opened store.
type Info struct {
	Kind    Kind
	Version string   // "USMT 4+", "USMT 3", or "" when not a USMT layout
	Level   string   // which level of the store the user's path pointed at (see Levels)
	Input   []string // the paths as the user gave them
	Roots   []string // one StorePath per volume; several for a multi-volume store
	// Encrypted is true when the store is known to be encrypted; directory
	// stores never are (ScanState refuses /encrypt with /nocompress).
	Encrypted bool
	Control   []ControlFile
	// Clashes lists store paths found on more than one volume of a
	// multi-volume store as files: the first volume's copy is used.
	Clashes []string
	Notes   []string // facts worth telling the user ("opened at the drive folder level", ...)
	// Warnings are risks to the store or the live data every command must
	// show (a volume where reads update access times, ...).
	Warnings []string
	// MissingData names data a USMT layout requires but the store lacks:
	// a File folder that is missing or empty, entries in File that are not
	// drive folders (left out of every listing). Each makes info and verify
	// partial (exit 3).
	MissingData []string
	// OtherVolumes are the store's folders on other mounted volumes
	// (OpenVolumes): opened with the others, or named in a warning.
	OtherVolumes []OtherVolume
	// MIG is set for KindMIG: what the structural walk found.
	MIG *MIGInfo
}

// ControlFile is a store metadata file: present, its size and where it is.
// The JSON keys are part of info --json (docs/cli.md).
type ControlFile struct {
	Name      string `json:"name"` // "catalog.mig", "migstate.dat", "status.~lg"
	StorePath string `json:"store_path"`
	Size      int64  `json:"size"`
	Volume    int    `json:"volume"`
}

// Levels a user path may be found at.
const (
	LevelStorePath   = "store-path"   // the ScanState StorePath (holds USMT/)
	LevelUSMTFolder  = "usmt-folder"  // <StorePath>/USMT or USMT3
	LevelFileFolder  = "file-folder"  // <StorePath>/USMT/File
	LevelDriveFolder = "drive-folder" // <StorePath>/USMT/File/C$
	LevelMIGFile     = "mig-file"     // the USMT.MIG file itself
	LevelDirectory   = "directory"    // a plain directory
	LevelArchive     = "archive"      // a usmtkit archive file
	LevelShare       = "share"        // an SMP share copy
)

// Errors a caller maps to exit codes (cmd/usmtkit does, in one place).
var (
	// ErrNoStore: nothing usmtkit can read was found at the path.
	ErrNoStore = errors.New("no migration store found")
	// ErrEncrypted: the store is encrypted and cannot be read here.
	ErrEncrypted = errors.New("the store is encrypted")
	// ErrUnsupported: the store kind is recognised but its contents cannot
	// be read by this version (USMT.MIG).
	ErrUnsupported = errors.New("store contents cannot be read by this version")
	// ErrChanged: a file changed between the walk and the read.
	ErrChanged = errors.New("file changed while the store was read")
	// ErrCorrupt: stored data failed a checksum or could not be decoded.
	ErrCorrupt = errors.New("stored data is damaged")
)

// PathError carries the store path (and volume root) an error is about.
type PathError struct {
	Op   string // "reading", "listing", "opening", ...
	Path string // the store path, or an OS path when no store path applies
	Err  error
}

func (e *PathError) Error() string { return e.Op + " " + e.Path + ": " + e.Err.Error() }
func (e *PathError) Unwrap() error { return e.Err }
