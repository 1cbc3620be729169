// Package journal keeps a record of finished work items in a JSON-lines
// file, so a long run over many items (stores of a share copy, uploads) can
// be interrupted and resumed. The format is docs/journal.md, version 1.
//
// Each finished item is one line: a JSON object with the format version,
// the operation, the item's key, its status, its times, its exit code, its
// error and free fields. Lines are only ever appended, each with a single
// write, and synced with fdatasync (group commit: a background goroutine
// writes what has been appended and syncs, one sync covering the lines that
// queued up during the previous one, so the callers never wait for the
// disk). An interruption at any moment (Ctrl-C, SIGKILL, power loss)
// leaves every earlier line whole and at most the last line cut short; the
// items whose lines had not reached the file are simply done again. A
// reader ignores a cut-short last line and says so; a writer cuts it off
// before appending, so it never joins a new record.
//
// The file is locked (flock) while a writer has it open: two runs cannot
// append to one journal at once.
package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Version is the format version written in every record ("v").
const Version = 1

// Statuses every user of the package shares. An operation may add its own.
const (
	StatusOK          = "ok"          // done, nothing wrong
	StatusProblems    = "problems"    // done, and the item had problems (exit 3)
	StatusFailed      = "failed"      // the item could not be done (not found, unreadable, unsupported)
	StatusInterrupted = "interrupted" // stopped before it was done
	// StatusStarted is written when an item begins, by operations whose
	// item leaves something behind that a re-run must recognise as its
	// own (compress's archive): a key whose last record is "started" was
	// cut off by an interruption before its outcome was written.
	StatusStarted = "started"
)

// Done reports whether a status means the item needs no redoing: the work
// ran to its end, whatever it found.
func Done(status string) bool { return status == StatusOK || status == StatusProblems }

// Record is one line of the journal.
type Record struct {
	Version  int            `json:"v"`
	Op       string         `json:"op"`  // the operation: "verify", "index", ...
	Key      string         `json:"key"` // what the item is (a store's absolute path)
	Status   string         `json:"status"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	ExitCode int            `json:"exit_code"`
	Error    string         `json:"error,omitempty"`
	Fields   map[string]any `json:"fields,omitempty"` // the operation's own facts (counts, ids)
}

// ErrLocked is returned by Open when another process holds the journal.
var ErrLocked = errors.New("the journal is in use by another run")

// Read returns the records of the journal at path, in file order, and
// notes about lines it ignored (a line cut short at the end, a line that
// is not a record). A missing file is an empty journal. Records of a newer
// format version are ignored with a note.
func Read(path string) ([]Record, []string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if err := regular(f, path); err != nil {
		return nil, nil, err
	}
	return read(f, path)
}

// regular refuses anything but a regular file (a device such as /dev/zero
// would be read for ever).
func regular(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	return nil
}

// ErrNotRegular is returned for a journal path that is not a regular file.
var ErrNotRegular = errors.New("a journal must be a regular file")

// maxLine bounds a record line; a longer line is not a record.
const maxLine = 1 << 20

func read(r io.Reader, path string) ([]Record, []string, error) {
	var recs []Record
	var notes []string
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		line, long, err := readLine(br, buf[:0])
		buf = line
		if long {
			notes = append(notes, fmt.Sprintf("%s: line %d is longer than %d bytes, not a journal record: ignored", path, n, maxLine))
			line = line[:0]
		}
		if len(line) > 0 && line[len(line)-1] != '\n' {
			// No newline at the end of the file: the write was cut short.
			notes = append(notes, fmt.Sprintf("%s: the last line (%d) was cut short, as an interrupted run leaves it: ignored (its item is done again)", path, n))
			return recs, notes, nil
		}
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			if len(bytes.TrimSpace(line)) > 0 {
				var rec Record
				switch uerr := json.Unmarshal(line, &rec); {
				case uerr != nil || rec.Key == "" || rec.Version < 1:
					notes = append(notes, fmt.Sprintf("%s: line %d is not a journal record: ignored", path, n))
				case rec.Version > Version:
					notes = append(notes, fmt.Sprintf("%s: line %d has format version %d, newer than this usmtkit's %d: ignored", path, n, rec.Version, Version))
				default:
					recs = append(recs, rec)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return recs, notes, nil
		}
		if err != nil {
			return recs, notes, err
		}
	}
}

// readLine reads up to and with the next newline. A line longer than
// maxLine is consumed but not kept (long is true).
func readLine(br *bufio.Reader, buf []byte) (line []byte, long bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !long {
			buf = append(buf, frag...)
			if len(buf) > maxLine {
				long, buf = true, buf[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if long && err == nil {
			return []byte{'\n'}, true, nil
		}
		return buf, long, err
	}
}

// Latest returns, for one operation, the last record of each key (a later
// record of a key replaces an earlier one: a store redone).
func Latest(recs []Record, op string) map[string]Record {
	m := map[string]Record{}
	for _, r := range recs {
		if r.Op == op {
			m[r.Key] = r
		}
	}
	return m
}

// Writer appends records to a journal. It is safe for concurrent use.
type Writer struct {
	path string
	f    *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	pending [][]byte // lines appended, not yet written
	queued  uint64   // lines appended so far
	synced  uint64   // lines written and synced so far
	err     error    // the first write or sync error; every later call returns it
	closing bool
	done    chan struct{}
}

// Open opens the journal at path for appending, creating it if needed, and
// locks it. A last line cut short by an earlier interruption is cut off
// (note says so); the caller has already read it with Read.
func Open(path string) (w *Writer, note string, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, "", err
	}
	if err := regular(f, path); err != nil {
		f.Close()
		return nil, "", err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, "", fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, "", fmt.Errorf("locking %s: %w", path, err)
	}
	cut, err := cutTornTail(f)
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("repairing %s: %w", path, err)
	}
	if cut > 0 {
		note = fmt.Sprintf("%s: removed a last line cut short by an interrupted run (%d bytes)", path, cut)
	}
	w = &Writer{f: f, path: path, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.loop()
	return w, note, nil
}

// cutTornTail truncates the file after its last newline and returns how
// many bytes went.
func cutTornTail(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	buf := make([]byte, 64<<10)
	end := size
	for end > 0 {
		n := int64(len(buf))
		if n > end {
			n = end
		}
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep := end - n + int64(i) + 1
			if keep == size {
				return 0, nil
			}
			return size - keep, truncSync(f, keep)
		}
		end -= n
	}
	return size, truncSync(f, 0)
}

func truncSync(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return unix.Fdatasync(int(f.Fd()))
}

// Append queues one record as one line (Version is filled in) and returns
// without waiting for the disk; Sync waits. It returns the error of an
// earlier write or sync, if any: the journal no longer records the run.
func (w *Writer) Append(rec Record) error {
	rec.Version = Version
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.closing {
		return fmt.Errorf("the journal %s is closed", w.path)
	}
	w.pending = append(w.pending, b)
	w.queued++
	w.cond.Broadcast()
	return nil
}

// loop writes the queued lines, one write each, then syncs them with one
// fdatasync.
func (w *Writer) loop() {
	defer close(w.done)
	w.mu.Lock()
	for {
		for len(w.pending) == 0 && !w.closing {
			w.cond.Wait()
		}
		if len(w.pending) == 0 {
			w.mu.Unlock()
			return
		}
		batch := w.pending
		w.pending = nil
		failed := w.err != nil
		w.mu.Unlock()
		var err error
		if !failed {
			for _, b := range batch {
				if _, err = w.f.Write(b); err != nil {
					err = fmt.Errorf("writing the journal %s: %w", w.path, err)
					break
				}
			}
			if err == nil {
				if serr := unix.Fdatasync(int(w.f.Fd())); serr != nil {
					err = fmt.Errorf("syncing the journal %s: %w", w.path, serr)
				}
			}
		}
		w.mu.Lock()
		if err != nil && w.err == nil {
			w.err = err
		}
		if w.err == nil {
			w.synced += uint64(len(batch))
		}
		w.cond.Broadcast()
	}
}

// Sync waits until every record appended so far is on disk, and returns
// the first write or sync error.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.queued
	for w.synced < target && w.err == nil {
		w.cond.Wait()
	}
	return w.err
}

// Close syncs what was appended, releases the lock and closes the file. It
// returns the first write or sync error of the journal's life. A second
// Close does nothing.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		<-w.done
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.err
	}
	w.closing = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
	cerr := w.f.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && cerr != nil {
		w.err = fmt.Errorf("closing the journal %s: %w", w.path, cerr)
	}
	return w.err
}
