// Package manifest owns the manifest format `usmtkit index` writes and
// `usmtkit verify` checks against (docs/manifest.md), and the JSON shape
// of one store entry shared by every --json listing.
package manifest

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/usmtkit/usmtkit/store"
)

// Record is one entry as JSON: a manifest line, and a line of `ls --json`.
// Field names are part of the documented contract (docs/manifest.md):
// never rename one, only add.
type Record struct {
	StorePath    string  `json:"store_path"`
	StorePathB64 string  `json:"store_path_b64,omitempty"` // set when StorePath is not valid UTF-8: the exact bytes
	WinPath      string  `json:"win_path,omitempty"`
	Type         string  `json:"type"` // file, dir, symlink, other
	Control      bool    `json:"control,omitempty"`
	Volume       int     `json:"volume"`
	Size         int64   `json:"size"`
	MtimeNs      int64   `json:"mtime_ns"`
	AtimeNs      int64   `json:"atime_ns"`
	CtimeNs      int64   `json:"ctime_ns"`
	BtimeNs      *int64  `json:"btime_ns,omitempty"`
	WinAttrs     *uint32 `json:"win_attrs,omitempty"`
	Mode         uint32  `json:"mode"`
	Dev          uint64  `json:"dev"`
	Ino          uint64  `json:"ino"`
	Nlink        uint32  `json:"nlink"`
	LinkID       string  `json:"link_id,omitempty"` // hex; equal ids are hard links to one content
	LinkTarget   string  `json:"symlink_target,omitempty"`
	XXH64        string  `json:"xxh64,omitempty"` // hex content hash (manifest with hashing)
	Error        string  `json:"error,omitempty"` // why the entry could not be read completely
}

// FromEntry converts a store entry.
func FromEntry(e *store.Entry) Record {
	r := Record{
		StorePath: e.StorePath, WinPath: e.WinPath, Type: e.Type.String(), Control: e.Control,
		Volume: e.Volume, Size: e.Size, MtimeNs: e.MtimeNs, AtimeNs: e.AtimeNs, CtimeNs: e.CtimeNs,
		Mode: e.Mode, Dev: e.Dev, Ino: e.Ino, Nlink: e.Nlink, LinkTarget: e.LinkTarget,
	}
	if !utf8.ValidString(e.StorePath) {
		r.StorePathB64 = base64.StdEncoding.EncodeToString([]byte(e.StorePath))
	}
	if e.HasBtime {
		b := e.BtimeNs
		r.BtimeNs = &b
	}
	if e.HasWinAttr {
		a := e.WinAttrs
		r.WinAttrs = &a
	}
	if e.LinkID != 0 {
		r.LinkID = strconv.FormatUint(e.LinkID, 16)
	}
	return r
}

// Path returns the exact store path bytes, decoding StorePathB64 when set.
func (r *Record) Path() (string, error) {
	if r.StorePathB64 == "" {
		return r.StorePath, nil
	}
	b, err := base64.StdEncoding.DecodeString(r.StorePathB64)
	if err != nil {
		return "", fmt.Errorf("bad store_path_b64 for %q: %w", r.StorePath, err)
	}
	return string(b), nil
}

// HashHex formats an xxhash64 the way records carry it.
func HashHex(h uint64) string { return fmt.Sprintf("%016x", h) }
