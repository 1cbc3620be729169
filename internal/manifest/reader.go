package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// Reader streams the records of a manifest in order with bounded memory.
// Open has already checked the header, the version and the trailer's
// checksum over the whole file; Next checks the checksum again while it
// streams (the file could change in between) and that the records come
// in store.ComparePaths order, so a merge-join over them is sound.
type Reader struct {
	Header  Header
	Trailer Trailer
	path    string
	f       *os.File
	br      *bufio.Reader
	digest  *xxhash.Digest
	read    int64 // records returned so far
	counts  Counts
	prev    string
	err     error
}

// Open opens and validates a manifest. Errors wrap ErrDamaged (truncated,
// edited, not a manifest) or ErrNewerVersion.
func Open(path string) (*Reader, error) {
	// A manifest may sit in the store it describes: read it like a source.
	f, err := safeio.OpenFilePath(path)
	if err != nil {
		return nil, fmt.Errorf("opening manifest: %w", err)
	}
	r := &Reader{path: path, f: f}
	if err := r.validate(); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	r.br = bufio.NewReaderSize(f, 256<<10)
	r.digest = xxhash.New()
	// Skip (and hash) the header line again.
	line, err := readLine(r.br)
	if err != nil {
		f.Close()
		return nil, r.damaged("cannot re-read the header: %v", err)
	}
	r.digest.Write(line)
	return r, nil
}

func (r *Reader) damaged(format string, a ...any) error {
	return fmt.Errorf("manifest %s: %s: %w; re-create it with usmtkit index", r.path, fmt.Sprintf(format, a...), ErrDamaged)
}

// validate reads the whole file once: header, version, trailer, checksum.
func (r *Reader) validate() error {
	br := bufio.NewReaderSize(r.f, 256<<10)
	first, err := readLine(br)
	if err != nil {
		if err == io.EOF {
			return r.damaged("the file is empty")
		}
		return r.damaged("%v", err)
	}
	if err := parseHeader(first, &r.Header); err != nil {
		return fmt.Errorf("manifest %s: %w", r.path, err)
	}
	d := xxhash.New()
	d.Write(first)
	var prev []byte // the line read last, not yet hashed: the trailer if it is the last
	var records int64 = -1
	for {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.damaged("%v", err)
		}
		if prev != nil {
			d.Write(prev)
		}
		records++
		prev = append(prev[:0], line...)
	}
	if prev == nil {
		return r.damaged("no records and no trailer: the file is truncated")
	}
	if prev[len(prev)-1] != '\n' {
		return r.damaged("the last line is cut short: the file is truncated")
	}
	if err := json.Unmarshal(prev, &r.Trailer); err != nil || r.Trailer.Trailer != TrailerName {
		return r.damaged("the trailer line is missing: the file is truncated or was edited")
	}
	if got := HashHex(d.Sum64()); got != r.Trailer.XXH64 {
		return r.damaged("checksum %s does not match the trailer's %s: the file was edited or damaged", got, r.Trailer.XXH64)
	}
	if records != r.Trailer.Entries {
		return r.damaged("%d record lines but the trailer counts %d", records, r.Trailer.Entries)
	}
	return nil
}

func parseHeader(line []byte, h *Header) error {
	if err := json.Unmarshal(line, h); err != nil || h.Format != FormatName {
		return fmt.Errorf("not a usmtkit manifest (the first line has no \"format\": %q): %w", FormatName, ErrDamaged)
	}
	if h.Version != Version {
		return fmt.Errorf("format version %d, but this usmtkit reads version %d; use the usmtkit that wrote it or re-create it: %w", h.Version, Version, ErrNewerVersion)
	}
	if h.Hashed && h.Hash != HashAlgorithm {
		return fmt.Errorf("hash algorithm %q is not supported (only %s): %w", h.Hash, HashAlgorithm, ErrNewerVersion)
	}
	return nil
}

// readLine returns one line including its newline (the last may lack
// it). Lines longer than MaxLine are an error, so a hostile file cannot
// make the reader allocate without bound.
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(out)+len(chunk) > MaxLine {
			return nil, fmt.Errorf("a line is longer than %d bytes", MaxLine)
		}
		switch err {
		case nil:
			if out == nil {
				return chunk, nil // valid until the next read
			}
			return append(out, chunk...), nil
		case bufio.ErrBufferFull:
			out = append(out, chunk...)
			continue
		case io.EOF:
			out = append(out, chunk...)
			if len(out) == 0 {
				return nil, io.EOF
			}
			return out, nil
		default:
			return nil, err
		}
	}
}

// Records is the number of records the trailer announces.
func (r *Reader) Records() int64 { return r.Trailer.Entries }

// Next returns the next record, or io.EOF after the last one.
func (r *Reader) Next() (*Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.read == r.Trailer.Entries {
		if got := HashHex(r.digest.Sum64()); got != r.Trailer.XXH64 {
			r.err = r.damaged("the file changed while it was read (checksum %s, trailer %s)", got, r.Trailer.XXH64)
			return nil, r.err
		}
		if r.counts != r.Trailer.Counts {
			r.err = r.damaged("the trailer's counts %+v do not match the records' %+v: the trailer was edited", r.Trailer.Counts, r.counts)
			return nil, r.err
		}
		r.err = io.EOF
		return nil, io.EOF
	}
	line, err := readLine(r.br)
	if err != nil {
		if err == io.EOF {
			err = errors.New("the file ended early (it changed while it was read)")
		}
		r.err = r.damaged("%v", err)
		return nil, r.err
	}
	r.digest.Write(line)
	rec := &Record{}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(rec); err != nil {
		r.err = r.damaged("record %d is not valid JSON: %v", r.read+1, err)
		return nil, r.err
	}
	p, err := rec.Path()
	if err != nil {
		r.err = r.damaged("record %d: %v", r.read+1, err)
		return nil, r.err
	}
	if r.read > 0 && store.ComparePaths(r.prev, p) >= 0 {
		r.err = r.damaged("record %d (%q) is out of order after %q", r.read+1, p, r.prev)
		return nil, r.err
	}
	r.prev = p
	r.read++
	r.counts.Entries++
	switch rec.Type {
	case "file":
		r.counts.Files++
		r.counts.Bytes += rec.Size
	case "dir":
		r.counts.Dirs++
	}
	if rec.Error != "" {
		r.counts.Errors++
	}
	return rec, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }
