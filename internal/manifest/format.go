package manifest

import "errors"

// The manifest format (docs/manifest.md): NDJSON, one header line, one
// Record line per entry in store.Walk order, one trailer line.
const (
	// FormatName is the header's "format" value.
	FormatName = "usmtkit-manifest"
	// TrailerName is the trailer's "trailer" value.
	TrailerName = "usmtkit-manifest-end"
	// Version is the format version this package writes and reads.
	Version = 1
	// HashAlgorithm names the content hash of Record.XXH64.
	HashAlgorithm = "xxh64"
	// MaxLine bounds one line of a manifest a reader accepts (a record
	// with a path past PATH_MAX is well under it).
	MaxLine = 1 << 20
)

// Header is the first line of a manifest.
type Header struct {
	Format  string      `json:"format"`  // FormatName
	Version int         `json:"version"` // Version
	Created string      `json:"created"` // RFC 3339 with nanoseconds, UTC
	Tool    string      `json:"tool"`    // "usmtkit 0.1.0"
	Store   StoreHeader `json:"store"`
	Hashed  bool        `json:"hashed"`         // records of readable files carry xxh64
	Hash    string      `json:"hash,omitempty"` // HashAlgorithm when Hashed
}

// StoreHeader describes the store the manifest was made from.
type StoreHeader struct {
	Kind    string   `json:"kind"`
	Version string   `json:"version,omitempty"`
	Level   string   `json:"level"`
	Input   []string `json:"input"`
	Roots   []string `json:"roots"`
}

// Counts are the trailer's totals.
type Counts struct {
	Entries int64 `json:"entries"` // record lines
	Files   int64 `json:"files"`   // regular files (control files included)
	Dirs    int64 `json:"dirs"`    // directories (the root included)
	Bytes   int64 `json:"bytes"`   // sum of file sizes (hard links counted per path)
	Errors  int64 `json:"errors"`  // records carrying "error"
}

// Trailer is the last line of a manifest.
type Trailer struct {
	Trailer string `json:"trailer"` // TrailerName
	Counts
	// XXH64 is the hex xxhash64 of every byte before the trailer line
	// (header and record lines with their newlines).
	XXH64 string `json:"xxh64"`
}

// ErrDamaged marks a manifest that is truncated, edited or not a manifest.
var ErrDamaged = errors.New("the manifest is damaged or was edited")

// ErrNewerVersion marks a manifest written by a newer format version.
var ErrNewerVersion = errors.New("the manifest format version is not supported")
