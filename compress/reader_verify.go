package compress

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/usmtkit/usmtkit/store"
)

// VerifyAll checks every header frame (it decodes, its checksum holds and it
// describes the entry the TOC lists) and every chunk (decode, zstd checksum,
// xxhash64), bypassing the cache. fn is called once per header (chunk -1)
// and once per chunk, in Walk order, with err nil when it is good; errors
// about damage wrap store.ErrCorrupt. Last, the end-of-archive frame is
// checked; its damage is reported as fn("", -1, err). VerifyAll keeps going after damage and
// returns an error only when it cannot go on (ctx cancelled, read error).
//
// The checks run on every CPU (verifyWorkers), each worker reading its
// next chunk while the others decode, which keeps the archive read ahead
// of the decoders; fn still sees the results one at a time, in order.
// Each worker decodes into one buffer it reuses: a new 4 MiB buffer per
// chunk cost as much in zeroing and page faults as the decode itself
// (docs/mount.md, archive verify).
func (a *Archive) VerifyAll(ctx context.Context, fn func(path string, chunk int, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := verifyWorkers()
	// Results wait in order; the window bounds the chunks checked ahead
	// of fn (and so the memory: one frame and one decode buffer per
	// worker, a few words per job).
	order := make(chan *verifyJob, 4*workers)
	jobs := make(chan *verifyJob, 4*workers)
	var walkErr error
	go func() {
		defer close(order)
		defer close(jobs)
		walkErr = a.Walk(ctx, func(e *store.Entry, _ error) error {
			if e.StorePath == "" {
				return nil
			}
			i, err := a.lookup("verifying", e.StorePath)
			if err != nil {
				return err
			}
			send := func(j *verifyJob) error {
				j.res = make(chan error, 1)
				select {
				case order <- j:
				case <-ctx.Done():
					return ctx.Err()
				}
				select {
				case jobs <- j:
				case <-ctx.Done():
					j.res <- ctx.Err() // queued in order: its result is this
					return ctx.Err()
				}
				return nil
			}
			if err := send(&verifyJob{path: e.StorePath, i: i, e: e, chunk: -1}); err != nil {
				return err
			}
			if a.t.typ(i) != tocFile {
				return nil
			}
			_, n := a.t.chunkRange(i)
			for k := uint32(0); k < n; k++ {
				if err := send(&verifyJob{path: e.StorePath, i: i, chunk: int(k)}); err != nil {
					return err
				}
			}
			return nil
		})
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var w verifyWorker
			for j := range jobs {
				j.res <- a.verifyJobRun(&w, j)
			}
		}()
	}
	defer wg.Wait()
	for j := range order {
		err := <-j.res
		if err != nil && j.chunk >= 0 && !errors.Is(err, store.ErrCorrupt) {
			cancel()
			drain(order)
			return fmt.Errorf("verifying %s: %w", j.path, err)
		}
		if err := ctx.Err(); err != nil {
			drain(order)
			return err
		}
		fn(j.path, j.chunk, err)
	}
	if walkErr != nil {
		return walkErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.verifyEndOfArchive(); err != nil {
		if !errors.Is(err, store.ErrCorrupt) {
			return fmt.Errorf("verifying the end-of-archive frame: %w", err)
		}
		fn("", -1, err)
	}
	return nil
}

// eoaSize is what the end-of-archive frame decodes to: tar's two zero blocks.
const eoaSize = 1024

// verifyEndOfArchive checks the frame between the last entry's frames and
// the TOC: it must be one zstd frame that ends exactly at the TOC and
// decodes (checksum included) to tar's two 512-byte zero blocks. GNU tar
// and zstd -t read it like every other frame, so a damaged one must not
// pass verify. Damage wraps store.ErrCorrupt.
func (a *Archive) verifyEndOfArchive() error {
	start, err := a.endOfEntries()
	if err != nil {
		return err
	}
	limit := a.ft.tocOffset
	n, fcs, err := zstdFrameLen(a.f, start, limit)
	if err != nil {
		return fmt.Errorf("end-of-archive frame at archive offset %d: %w: %v", start, store.ErrCorrupt, err)
	}
	if fcs != eoaSize || uint64(start+n) != limit {
		return fmt.Errorf("end-of-archive frame at archive offset %d: %w: %d bytes long, content size %d, the TOC starts at %d", start, store.ErrCorrupt, n, fcs, limit)
	}
	frame := make([]byte, n)
	if _, err := a.f.ReadAt(frame, start); err != nil {
		return fmt.Errorf("reading the archive: %w", err)
	}
	dec, err := chunkDecoder()
	if err != nil {
		return err
	}
	data, err := dec.DecodeAll(frame, make([]byte, 0, eoaSize))
	if err != nil {
		return fmt.Errorf("end-of-archive frame at archive offset %d: %w: %v", start, store.ErrCorrupt, err)
	}
	if len(data) != eoaSize || bytes.IndexFunc(data, func(r rune) bool { return r != 0 }) >= 0 {
		return fmt.Errorf("end-of-archive frame at archive offset %d: %w: it does not decode to tar's two zero blocks", start, store.ErrCorrupt)
	}
	return nil
}

// endOfEntries is the offset right after the last entry's frames in stream
// order (the entry with the largest header offset): its last chunk's end,
// or its header frame's end when it has no data. 0 for an archive of the
// root alone.
func (a *Archive) endOfEntries() (int64, error) {
	last, lastOff := uint32(0), int64(-1)
	for i := uint32(1); i < uint32(a.t.n); i++ {
		if off := int64(binary.LittleEndian.Uint64(a.t.rec(i)[eHdrOff:])); off > lastOff {
			last, lastOff = i, off
		}
	}
	if lastOff < 0 {
		return 0, nil
	}
	if a.t.typ(last) == tocFile {
		if first, n := a.t.chunkRange(last); n > 0 {
			ch := a.t.chunk(first + n - 1)
			return int64(ch.off) + int64(ch.cSize), nil
		}
	}
	n, _, err := zstdFrameLen(a.f, lastOff, a.ft.tocOffset)
	if err != nil {
		return 0, fmt.Errorf("header frame at archive offset %d: %w: %v", lastOff, store.ErrCorrupt, err)
	}
	return lastOff + n, nil
}

// verifyWorkers is how many chunks VerifyAll checks at once: one per CPU.
func verifyWorkers() int { return max(1, runtime.GOMAXPROCS(0)) }

// drain waits out the jobs already queued (their workers finish them)
// so that nothing is left blocked on a channel.
func drain(order chan *verifyJob) {
	for j := range order {
		<-j.res
	}
}

// verifyJob is one check of VerifyAll: entry i's header (chunk -1) or its
// chunk number chunk.
type verifyJob struct {
	path  string
	i     uint32
	e     *store.Entry // the header's entry
	chunk int
	res   chan error
}

// verifyWorker holds the buffers one VerifyAll worker reuses.
type verifyWorker struct {
	frame, data []byte
}

func (a *Archive) verifyJobRun(w *verifyWorker, j *verifyJob) error {
	if j.chunk < 0 {
		return a.verifyHeader(j.i, j.e)
	}
	first, n := a.t.chunkRange(j.i)
	k := uint32(j.chunk)
	c := first + k
	ch := a.t.chunk(c)
	if cap(w.frame) < int(ch.cSize) {
		w.frame = make([]byte, ch.cSize)
	}
	frame := w.frame[:ch.cSize]
	var err error
	if _, rerr := a.f.ReadAt(frame, int64(ch.off)); rerr != nil {
		err = fmt.Errorf("reading the archive: %w", rerr)
	} else if len(frame) < 4 || binary.LittleEndian.Uint32(frame) != zstdMagic {
		err = fmt.Errorf("%w: no zstd frame at the recorded offset", store.ErrCorrupt)
	} else {
		want := int(ch.uSize) + int(tarPad(a.t.size(j.i)))
		if cap(w.data) < want {
			w.data = make([]byte, want)
		}
		_, err = a.checkChunk(c, k == n-1, a.t.size(j.i), frame, w.data)
	}
	if err != nil && !errors.Is(err, store.ErrCorrupt) {
		return err
	}
	if err == nil && a.t.flags(j.i)&entIncomplete != 0 {
		err = fmt.Errorf("%w: the source could not be read completely when the archive was written", store.ErrCorrupt)
	}
	if err != nil {
		err = fmt.Errorf("chunk %d of %d (archive offset %d): %w", k, n, ch.off, err)
	}
	return err
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
