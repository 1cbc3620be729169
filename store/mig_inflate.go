package store

import (
	"errors"
	"io"
)

// A migInflater inflates one zlib stream (RFC 1950: header, deflate data,
// Adler-32) at a time and can be reset onto the next, so that walking a
// million records does not allocate a million decompressors. With cgo it
// is the system zlib (mig_inflate_cgo.go): Go's compress/flate inflates
// at a third to a quarter of zlib's speed on this machine, and verify is
// measured against zlib tools (scripts/bench/mig.sh). Without cgo, or
// built with -tags nozlib (a machine with gcc but without zlib's headers,
// Debian's zlib1g-dev), it is klauspost/compress/zlib: about 1.3x the CPU
// time of the system zlib on the 1 GiB bench MIG (9.8 s against 7.3 s).
//
// Read returns io.EOF only after the stream's end and a matching Adler-32;
// a mismatch is errMIGChecksum, anything else that is not zlib is an error
// that says what zlib said.
type migInflater interface {
	Reset(src io.Reader) error
	Read(p []byte) (int, error)
	Close()
}

// errMIGChecksum: the stream inflated but its Adler-32 does not match.
var errMIGChecksum = errors.New("the payload's Adler-32 checksum does not match its data")
