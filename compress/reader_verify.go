package compress

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/usmtkit/usmtkit/store"
)

// VerifyAll checks every header frame (it decodes, its checksum holds and it
// describes the entry the TOC lists) and every chunk (decode, zstd checksum,
// xxhash64), bypassing the cache. fn is called once per header (chunk -1)
// and once per chunk, in Walk order, with err nil when it is good; errors
// about damage wrap store.ErrCorrupt. VerifyAll keeps going after damage and
// returns an error only when it cannot go on (ctx cancelled, read error).
func (a *Archive) VerifyAll(ctx context.Context, fn func(path string, chunk int, err error)) error {
	return a.Walk(ctx, func(e *store.Entry, _ error) error {
		if e.StorePath == "" {
			return nil
		}
		i, err := a.lookup("verifying", e.StorePath)
		if err != nil {
			return err
		}
		fn(e.StorePath, -1, a.verifyHeader(i, e))
		if a.t.typ(i) != tocFile {
			return nil
		}
		first, n := a.t.chunkRange(i)
		for k := uint32(0); k < n; k++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			_, err := a.decodeChunk(first+k, k == n-1, a.t.size(i))
			if err != nil && !errors.Is(err, store.ErrCorrupt) {
				return fmt.Errorf("verifying %s: %w", e.StorePath, err)
			}
			if err == nil && a.t.flags(i)&entIncomplete != 0 {
				err = fmt.Errorf("%w: the source could not be read completely when the archive was written", store.ErrCorrupt)
			}
			if err != nil {
				ch := a.t.chunk(first + k)
				err = fmt.Errorf("chunk %d of %d (archive offset %d): %w", k, n, ch.off, err)
			}
			fn(e.StorePath, int(k), err)
		}
		return nil
	})
}

// maxHeaderFrame bounds a header frame: PAX records of a few long names.
const maxHeaderFrame = 1 << 20

func (a *Archive) verifyHeader(i uint32, e *store.Entry) error {
	off := int64(binary.LittleEndian.Uint64(a.t.rec(i)[eHdrOff:]))
	n, fcs, err := zstdFrameLen(a.f, off, a.ft.tocOffset)
	if err != nil {
		return fmt.Errorf("header frame at archive offset %d: %w: %v", off, store.ErrCorrupt, err)
	}
	if n > maxHeaderFrame || fcs < 0 || fcs > maxHeaderFrame {
		return fmt.Errorf("header frame at archive offset %d: %w: %d bytes long, content size %d", off, store.ErrCorrupt, n, fcs)
	}
	frame := make([]byte, n)
	if _, err := a.f.ReadAt(frame, off); err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	dec, err := chunkDecoder()
	if err != nil {
		return err
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, fcs))
	if err != nil {
		return fmt.Errorf("header frame at archive offset %d: %w: %v", off, store.ErrCorrupt, err)
	}
	h, ok := parseHeaderFrame(data)
	if !ok {
		return fmt.Errorf("header frame at archive offset %d: %w: not a tar header", off, store.ErrCorrupt)
	}
	name := strings.TrimSuffix(h.Name, "/")
	wantType := map[uint8]byte{tocFile: tar.TypeReg, tocDir: tar.TypeDir, tocSymlink: tar.TypeSymlink, tocHardlink: tar.TypeLink}[a.t.typ(i)]
	wantSize := e.Size
	if a.t.typ(i) != tocFile {
		wantSize = 0
	}
	if name != e.StorePath || h.Typeflag != wantType || h.Size != wantSize {
		return fmt.Errorf("header frame at archive offset %d: %w: it describes %q (type %c, %d bytes), the TOC lists %q", off, store.ErrCorrupt, h.Name, h.Typeflag, h.Size, e.StorePath)
	}
	return nil
}

// parseHeaderFrame reports whether data is exactly the tar header blocks of
// one entry (PAX extended header + ustar header, or a ustar header alone)
// with valid checksums, and returns the header.
func parseHeaderFrame(data []byte) (*tar.Header, bool) {
	if len(data) < 512 || len(data)%512 != 0 || len(data) > maxHeaderFrame {
		return nil, false
	}
	last := data[len(data)-512:]
	if string(last[257:263]) != "ustar\x00" {
		return nil, false
	}
	cr := &countingReader{r: bytes.NewReader(data)}
	h, err := tar.NewReader(cr).Next()
	if err != nil || cr.n != int64(len(data)) {
		return nil, false
	}
	return h, true
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
