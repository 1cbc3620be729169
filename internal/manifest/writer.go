package manifest

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
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

// AtomicFile is a file that appears at its path only when committed:
// it is written as a temporary file in the same folder, synced, renamed
// into place and the folder synced, so a crash or an interrupted run
// never leaves a half-written manifest under the final name.
type AtomicFile struct {
	*os.File
	path    string
	replace bool
	done    bool
}

// ErrExists is returned by CreateAtomic when the path exists and replace is false.
var ErrExists = errors.New("the output file already exists")

// CreateAtomic starts writing path. Unless replace is true, an existing
// path is refused (checked now and again, atomically, at Commit).
func CreateAtomic(path string, replace bool) (*AtomicFile, error) {
	if !replace {
		if _, err := os.Lstat(path); err == nil {
			return nil, fmt.Errorf("%s: %w", path, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary file next to %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil { // CreateTemp makes 0600; a manifest is an ordinary output file
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &AtomicFile{File: f, path: path, replace: replace}, nil
}

// Commit syncs the file, renames it into place and syncs the folder.
func (a *AtomicFile) Commit() error {
	if a.done {
		return errors.New("atomic file already finished")
	}
	a.done = true
	tmp := a.File.Name()
	err := a.File.Sync()
	if cerr := a.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = renameInto(tmp, a.path, a.replace)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(a.path))
}

// Abort closes and removes the temporary file; safe after Commit (no-op).
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
}

func renameInto(tmp, path string, replace bool) error {
	if replace {
		return os.Rename(tmp, path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w (it appeared while the manifest was written)", path, ErrExists)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		// The file system has no RENAME_NOREPLACE (some FUSE and network
		// file systems): a hard link refuses an existing name just as well.
		if lerr := os.Link(tmp, path); lerr != nil {
			if errors.Is(lerr, fs.ErrExist) {
				return fmt.Errorf("%s: %w (it appeared while the manifest was written)", path, ErrExists)
			}
			return os.Rename(tmp, path) // no hard links either: last check was at create time
		}
		return os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("syncing folder %s: %w", dir, err)
	}
	return nil
}
