package extract

import (
	"io"

	"github.com/usmtkit/usmtkit/store"
)

// readAheader reads a file's pieces in order on its own goroutine.
type readAheader struct {
	ch   chan piece  // pieces read, in order; closed after the last
	free chan []byte // buffers written out, for the reader to fill again
	quit chan struct{}
	done chan struct{}
	held []byte // the piece the writer holds, freed at the next call
}

type piece struct {
	b   []byte
	err error
}

// startReadAhead starts reading src from off to size in readBuf pieces.
// The buffers (w.raBufs) are reused from file to file: stop waits for the
// reader, so no buffer is in use after it.
func (w *writer) startReadAhead(src store.File, off, size int64) *readAheader {
	if w.raBufs == nil {
		for i := 0; i < readAhead+1; i++ {
			w.raBufs = append(w.raBufs, make([]byte, readBuf))
		}
	}
	r := &readAheader{ch: make(chan piece, readAhead), free: make(chan []byte, len(w.raBufs)),
		quit: make(chan struct{}), done: make(chan struct{})}
	for _, b := range w.raBufs {
		r.free <- b
	}
	go func() {
		defer close(r.done)
		defer close(r.ch)
		for off < size {
			var b []byte
			select {
			case b = <-r.free:
			case <-r.quit:
				return
			}
			want := int(min(readBuf, size-off))
			n, err := src.ReadAt(b[:want], off)
			select {
			case r.ch <- piece{b: b[:n], err: err}:
			case <-r.quit:
				return
			}
			if n < want {
				return // the writer stops at a short read
			}
			off += int64(n)
		}
	}()
	return r
}

// next returns the next piece (want bytes unless the file is short) and
// hands the previous one back to the reader.
func (r *readAheader) next(want int) ([]byte, error) {
	if r.held != nil {
		r.free <- r.held[:cap(r.held)]
		r.held = nil
	}
	p, ok := <-r.ch
	if !ok {
		return nil, io.ErrUnexpectedEOF
	}
	r.held = p.b
	return p.b, p.err
}

// stop ends the reader and waits for it.
func (r *readAheader) stop() {
	close(r.quit)
	<-r.done
}
