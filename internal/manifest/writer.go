package manifest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// Writer writes a manifest stream: the header when created, one line per
// Write, the trailer on Close. It keeps no records in memory.
type Writer struct {
	bw     *bufio.Writer
	digest *xxhash.Digest
	buf    bytes.Buffer
	enc    *json.Encoder
	counts Counts
	closed bool
}

// NewWriter writes h to w and returns a Writer for the records.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	mw := &Writer{bw: bufio.NewWriterSize(w, 256<<10), digest: xxhash.New()}
	mw.enc = json.NewEncoder(&mw.buf)
	mw.enc.SetEscapeHTML(false)
	h.Format, h.Version = FormatName, Version
	if h.Hashed {
		h.Hash = HashAlgorithm
	}
	if h.Store.Input == nil {
		h.Store.Input = []string{}
	}
	if h.Store.Roots == nil {
		h.Store.Roots = []string{}
	}
	if err := mw.line(h, true); err != nil {
		return nil, err
	}
	return mw, nil
}

// line encodes v as one line (the encoder adds the newline).
func (w *Writer) line(v any, hashed bool) error {
	w.buf.Reset()
	if err := w.enc.Encode(v); err != nil {
		return err
	}
	if hashed {
		w.digest.Write(w.buf.Bytes())
	}
	_, err := w.bw.Write(w.buf.Bytes())
	return err
}

// Write appends one record. Records must come in store.Walk order.
func (w *Writer) Write(r *Record) error {
	if w.closed {
		return errors.New("manifest writer is closed")
	}
	w.counts.Entries++
	switch r.Type {
	case "file":
		w.counts.Files++
		w.counts.Bytes += r.Size
	case "dir":
		w.counts.Dirs++
	}
	if r.Error != "" {
		w.counts.Errors++
	}
	if r.StorePathB64 == "" && !utf8.ValidString(r.StorePath) {
		r.StorePathB64 = base64.StdEncoding.EncodeToString([]byte(r.StorePath))
	}
	return w.line(r, true)
}

// Counts returns the totals so far.
func (w *Writer) Counts() Counts { return w.counts }

// Close writes the trailer and flushes. It does not close the underlying writer.
func (w *Writer) Close() (Trailer, error) {
	if w.closed {
		return Trailer{}, errors.New("manifest writer is closed")
	}
	w.closed = true
	t := Trailer{Trailer: TrailerName, Counts: w.counts, XXH64: HashHex(w.digest.Sum64())}
	if err := w.line(t, false); err != nil {
		return t, err
	}
	return t, w.bw.Flush()
}

// AtomicFile is a manifest being written: it appears under its name only
// when committed (safeio.AtomicFile).
type AtomicFile = safeio.AtomicFile

// ErrExists is returned by CreateAtomic when the path exists and replace is false.
var ErrExists = safeio.ErrExists

// CreateAtomic starts writing a manifest at path (mode 0644, an ordinary
// output file). Unless replace is true, an existing path is refused
// (checked now and again, atomically, at Commit).
func CreateAtomic(path string, replace bool) (*AtomicFile, error) {
	return safeio.CreateAtomic(path, 0o644, replace)
}
