package fusefs

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// Inode number kinds (the first byte hashed); see the package comment.
const (
	inoLink    = "f" // file with a LinkID
	inoPath    = "p" // file without LinkID, symlink, other
	inoDir     = "d" // directory, by store path
	inoFolded  = "D" // directory reached through a case-insensitive match, by mount path
	inoVirtual = "v" // nodes of our own: share members, README.txt, view roots
)

// rootIno is the inode number of the mount's root.
const rootIno = 1

// inoOf hashes (kind, member, key) into an inode number, avoiding the
// numbers FUSE and go-fuse reserve (0: "pick one for me", 1: the root,
// 2^64-1: invalid).
func inoOf(kind, member, key string) uint64 {
	d := xxhash.New()
	d.WriteString(kind)
	d.Write([]byte{0})
	d.WriteString(member)
	d.Write([]byte{0})
	d.WriteString(key)
	return remapIno(d.Sum64())
}

// inoOfLink is inoOf for a numeric LinkID.
func inoOfLink(member string, linkID uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], linkID)
	return inoOf(inoLink, member, string(b[:]))
}

func remapIno(h uint64) uint64 {
	switch h {
	case 0, 1:
		return h + 2
	case ^uint64(0):
		return h - 1
	}
	return h
}
