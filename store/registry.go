package store

import (
	"sync"
)

// FileKind is a store kind held in a single file that another package
// reads (the archive of package compress registers itself here), so that
// Detect and Open know it without this package importing the reader.
type FileKind struct {
	Kind Kind
	// Sniff reports whether a file is of this kind, from its first bytes
	// (up to 4 KiB, fewer for a short file) and its size.
	Sniff func(head []byte, size int64) bool
	// Open opens the file as a store.
	Open func(path string) (Store, error)
	// Describe fills what is cheap to know about the file without opening
	// it fully (used for SMP share members); may be nil.
	Describe func(path string) (*Info, error)
}

var (
	fileKindsMu sync.RWMutex
	fileKinds   []FileKind
)

// RegisterFileKind adds a file-based store kind. It is meant to be called
// from an init function.
func RegisterFileKind(k FileKind) {
	fileKindsMu.Lock()
	defer fileKindsMu.Unlock()
	fileKinds = append(fileKinds, k)
}

func registeredFileKinds() []FileKind {
	fileKindsMu.RLock()
	defer fileKindsMu.RUnlock()
	return append([]FileKind(nil), fileKinds...)
}

// OpenerDetection is the Detection of a single-file store that is not a
// local file (an archive in a bucket, opened by package objstore through
// the command line): input is the name as given, open opens it.
func OpenerDetection(kind Kind, input string, open func(name string) (Store, error)) *Detection {
	return &Detection{Kind: kind, Level: LevelArchive, Input: input, Root: input,
		fileKind: &FileKind{Kind: kind, Open: open}}
}
