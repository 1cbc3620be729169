//go:build cgo && !nozlib

package store

/*
#cgo LDFLAGS: -lz
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static z_stream *mig_new(void) {
	z_stream *s = calloc(1, sizeof(z_stream));
	if (s == NULL) return NULL;
	if (inflateInit(s) != Z_OK) { free(s); return NULL; }
	return s;
}

static void mig_free(z_stream *s) { inflateEnd(s); free(s); }

static int mig_reset(z_stream *s) { return inflateReset(s); }

// mig_inflate runs inflate over in and out, which stay owned by the
// caller: the stream keeps no pointer to them once it returns.
static int mig_inflate(z_stream *s, unsigned char *in, unsigned int inlen,
		unsigned char *out, unsigned int outlen, unsigned int *used, unsigned int *made) {
	s->next_in = in; s->avail_in = inlen;
	s->next_out = out; s->avail_out = outlen;
	int r = inflate(s, Z_NO_FLUSH);
	*used = inlen - s->avail_in;
	*made = outlen - s->avail_out;
	s->next_in = Z_NULL; s->avail_in = 0;
	s->next_out = Z_NULL; s->avail_out = 0;
	return r;
}

static const char *mig_msg(z_stream *s) { return s->msg ? s->msg : ""; }
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"unsafe"
)

const migInflaterName = "zlib (cgo)"

// cInflater is a migInflater over the system zlib.
type cInflater struct {
	s       *C.z_stream
	src     io.Reader
	in      []byte
	ip, end int
	srcErr  error
	done    bool
}

func newMIGInflater() migInflater {
	s := C.mig_new()
	if s == nil {
		panic("zlib: inflateInit failed (out of memory)")
	}
	return &cInflater{s: s, in: make([]byte, 128<<10)}
}

func (z *cInflater) Reset(src io.Reader) error {
	if C.mig_reset(z.s) != C.Z_OK {
		return errors.New("zlib: inflateReset failed")
	}
	z.src, z.ip, z.end, z.srcErr, z.done = src, 0, 0, nil, false
	return nil
}

func (z *cInflater) Read(p []byte) (int, error) {
	if z.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > 1<<30 {
		p = p[:1<<30]
	}
	for {
		if z.ip == z.end {
			if z.srcErr != nil {
				if z.srcErr == io.EOF {
					return 0, io.ErrUnexpectedEOF
				}
				return 0, z.srcErr
			}
			n, err := z.src.Read(z.in)
			z.ip, z.end, z.srcErr = 0, n, err
			if n == 0 {
				continue
			}
		}
		var used, made C.uint
		r := C.mig_inflate(z.s, (*C.uchar)(unsafe.Pointer(&z.in[z.ip])), C.uint(z.end-z.ip),
			(*C.uchar)(unsafe.Pointer(&p[0])), C.uint(len(p)), &used, &made)
		z.ip += int(used)
		switch r {
		case C.Z_STREAM_END:
			z.done = true
			if made == 0 {
				return 0, io.EOF
			}
			return int(made), nil
		case C.Z_OK, C.Z_BUF_ERROR:
			if made > 0 {
				return int(made), nil
			}
			if used == 0 && z.ip < z.end {
				// No progress with input and room for output: cannot happen
				// with a sane zlib; refuse to spin.
				return 0, errors.New("zlib: inflate made no progress")
			}
		case C.Z_NEED_DICT:
			return 0, errors.New("zlib: the stream needs a preset dictionary")
		case C.Z_DATA_ERROR:
			msg := C.GoString(C.mig_msg(z.s))
			if msg == "incorrect data check" {
				return int(made), errMIGChecksum
			}
			return int(made), fmt.Errorf("zlib: %s", msg)
		case C.Z_MEM_ERROR:
			return 0, errors.New("zlib: out of memory")
		default:
			return 0, fmt.Errorf("zlib: inflate error %d (%s)", int(r), C.GoString(C.mig_msg(z.s)))
		}
	}
}

func (z *cInflater) Close() {
	if z.s != nil {
		C.mig_free(z.s)
		z.s = nil
	}
}
