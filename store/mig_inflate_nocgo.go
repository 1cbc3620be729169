//go:build !cgo || nozlib

package store

import (
	"errors"
	"io"

	kzlib "github.com/klauspost/compress/zlib"
)

const migInflaterName = "klauspost/compress/zlib (no cgo)"

// goInflater is a migInflater over klauspost/compress/zlib.
type goInflater struct {
	zr io.ReadCloser
}

func newMIGInflater() migInflater { return &goInflater{} }

func (z *goInflater) Reset(src io.Reader) error {
	if z.zr == nil {
		zr, err := kzlib.NewReader(src)
		if err != nil {
			return err
		}
		z.zr = zr
		return nil
	}
	return z.zr.(kzlib.Resetter).Reset(src, nil)
}

func (z *goInflater) Read(p []byte) (int, error) {
	n, err := z.zr.Read(p)
	if errors.Is(err, kzlib.ErrChecksum) {
		err = errMIGChecksum
	}
	return n, err
}

func (z *goInflater) Close() {
	if z.zr != nil {
		z.zr.Close()
	}
}
