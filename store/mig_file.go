package store

import (
	"bufio"
	"fmt"
	"io"
	"sync"
)

// migFile is an open file of a MIGStore: its record's zlib stream,
// inflated on demand. zlib cannot be entered in the middle, so a read at
// an offset inflates from where the previous read stopped — or from the
// start when the offset lies behind the last migFileWindow bytes
// inflated, which stay in memory so that the slightly out-of-order reads
// of a kernel's readahead do not restart the stream. Sequential reading
// is linear; random reading of a large file is slow, and says so nowhere
// else: docs/stores.md.
type migFile struct {
	s            *MIGStore
	start, end   int64 // the zlib stream's bytes in the MIG (from 8 bytes after the name to the record's end)
	size         int64
	mu           sync.Mutex
	zr           migInflater
	br           *bufio.Reader
	pos          int64  // bytes inflated from the stream so far
	win          []byte // ring of the last inflated bytes: byte p is win[p%len(win)]
	filled       int64  // valid bytes in win, ending at pos
	started, bad bool
	err          error
}

// migFileWindow is how far behind the last read a read can be without
// inflating the stream again from its start.
const migFileWindow = 512 << 10

func (s *MIGStore) openPayload(n migNode) (File, error) {
	c := newMIGCursor(s.r, s.size)
	rec, ok := readMIGRecord(c, n.rec)
	if !ok || rec.Next > s.size {
		return nil, fmt.Errorf("%w: the record at %#x is no longer there", ErrChanged, n.rec)
	}
	return &migFile{s: s, start: rec.NameEnd() + migZlibOffset, end: rec.Next, size: n.size}, nil
}

func (f *migFile) Size() int64 { return f.size }

func (f *migFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.zr != nil {
		f.zr.Close()
		f.zr = nil
	}
	f.win, f.br = nil, nil
	return nil
}

// restart positions the stream at its start.
func (f *migFile) restart() error {
	if f.zr == nil {
		f.zr = newMIGInflater()
		f.br = bufio.NewReaderSize(nil, 64<<10)
		f.win = make([]byte, migFileWindow)
	}
	f.br.Reset(io.NewSectionReader(f.s.r, f.start, f.end-f.start))
	f.pos, f.filled, f.started = 0, 0, true
	if err := f.zr.Reset(f.br); err != nil {
		return f.fail(err)
	}
	return nil
}

func (f *migFile) fail(err error) error {
	f.bad = true
	f.err = fmt.Errorf("%w: the record at %#x no longer inflates as it did when the file was opened (%v)", ErrCorrupt, f.start, err)
	return f.err
}

// ReadAt implements io.ReaderAt.
func (f *migFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad {
		return 0, f.err
	}
	if off >= f.size {
		return 0, io.EOF
	}
	if !f.started || off < f.pos-f.filled {
		if err := f.restart(); err != nil {
			return 0, err
		}
	}
	want := min(int64(len(p)), f.size-off)
	n := int64(0)
	for n < want {
		at := off + n
		if at < f.pos {
			// In the window: copy out, at most up to the ring's end.
			w := int64(len(f.win))
			i := at % w
			m := min(want-n, f.pos-at, w-i)
			copy(p[n:n+m], f.win[i:i+m])
			n += m
			continue
		}
		// Inflate more into the ring, at most up to its end.
		w := int64(len(f.win))
		i := f.pos % w
		m, err := f.zr.Read(f.win[i:w])
		f.pos += int64(m)
		f.filled = min(f.filled+int64(m), w)
		if f.pos > f.size {
			return int(n), f.fail(fmt.Errorf("it inflates past the %d bytes it had", f.size))
		}
		if err == io.EOF && f.pos < f.size {
			return int(n), f.fail(fmt.Errorf("it ends after %d of its %d bytes", f.pos, f.size))
		}
		if err != nil && err != io.EOF {
			return int(n), f.fail(err)
		}
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// migTextFile is a file held in memory (the marker).
type migTextFile struct{ s string }

func (t *migTextFile) Size() int64  { return int64(len(t.s)) }
func (t *migTextFile) Close() error { return nil }
func (t *migTextFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(t.s)) {
		return 0, io.EOF
	}
	n := copy(p, t.s[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
