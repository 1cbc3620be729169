package manifest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/store"
)

// BlockSize is the read size of the hashing workers.
const BlockSize = 1 << 20

// DefaultThreads is the default number of hashing workers.
const DefaultThreads = 4

// HashOptions configure HashWalk.
type HashOptions struct {
	// Threads is the number of parallel readers (DefaultThreads when < 1).
	Threads int
	// Hash makes HashWalk read every regular file end to end and hash it.
	Hash bool
	// ReadBytes, when set, is called by the readers after every block
	// (concurrently: it must be safe for that, as progress.Meter.Add is).
	ReadBytes func(n int64)
}

// Item is one walked entry with the result of reading it.
type Item struct {
	Entry   store.Entry
	WalkErr error // the walk could not read the entry completely
	// Hashed is true when Hash holds the xxhash64 of the whole content.
	Hashed  bool
	Hash    uint64
	ReadErr error // opening or reading the content failed
	// Shared is true when the hash was taken from an earlier path of the
	// same hard-link group inside the store (the data was read once).
	Shared bool
}

// Err returns the walk or read error, if any.
func (it *Item) Err() error {
	if it.WalkErr != nil {
		return it.WalkErr
	}
	return it.ReadErr
}

// linkSlot carries the hash of a hard-link group from the path that read
// it to the later paths of the group. Only files with Nlink > 1 get one.
type linkSlot struct {
	hash uint64
	ok   bool
}

type job struct {
	it    Item
	slot  *linkSlot
	first bool          // this job reads the data for slot
	done  chan struct{} // closed when a reader finished; nil when nothing is read
}

// HashWalk walks s and calls fn for every entry in store.Walk order, from
// one goroutine. With o.Hash, regular files are read in parallel by
// o.Threads readers in 1 MiB blocks while at most a window of entries is
// in flight, so memory stays bounded whatever the store's size; each
// hard-link group inside the store is read once. A non-nil error from fn
// stops the walk and is returned.
func HashWalk(ctx context.Context, s store.Store, o HashOptions, fn func(*Item) error) error {
	threads := o.Threads
	if threads < 1 {
		threads = DefaultThreads
	}
	window := threads * 16
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	order := make(chan *job, window)
	work := make(chan *job, window)
	var wg sync.WaitGroup
	if o.Hash {
		for i := 0; i < threads; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, BlockSize)
				for j := range work {
					if err := ctx.Err(); err != nil {
						j.it.ReadErr = err
					} else {
						j.it.Hash, j.it.ReadErr = readHash(ctx, s, &j.it.Entry, buf, o.ReadBytes)
						j.it.Hashed = j.it.ReadErr == nil
					}
					if j.first {
						j.slot.hash, j.slot.ok = j.it.Hash, j.it.Hashed
					}
					close(j.done)
				}
			}()
		}
	}

	walkErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(work)
		slots := map[uint64]*linkSlot{}
		walkErr <- s.Walk(ctx, func(e *store.Entry, err error) error {
			j := &job{it: Item{Entry: *e, WalkErr: err}}
			read := o.Hash && err == nil && e.Type == store.TypeFile
			if read && e.LinkID != 0 && e.Nlink > 1 {
				if sl, seen := slots[e.LinkID]; seen {
					j.slot, read = sl, false // resolved in order, from the first path's result
				} else {
					sl = &linkSlot{}
					slots[e.LinkID] = sl
					j.slot, j.first = sl, true
				}
			}
			if read {
				j.done = make(chan struct{})
			}
			select {
			case order <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			if read {
				select {
				case work <- j:
				case <-ctx.Done():
					// Still handed to no reader: nobody else will close it.
					j.it.ReadErr = ctx.Err()
					close(j.done)
					return ctx.Err()
				}
			}
			return nil
		})
	}()

	var fnErr error
	var inline []byte
	for j := range order {
		if fnErr != nil {
			continue // drain so the walker and readers can finish
		}
		if j.done != nil {
			select {
			case <-j.done:
			case <-ctx.Done():
			}
		}
		// Once stopped, report nothing more: an entry whose read was cut
		// short by the stop is not unreadable.
		if err := ctx.Err(); err != nil {
			fnErr = err
			continue
		}
		if j.done == nil && j.slot != nil && !j.first {
			// A later path of a hard-link group: the first path was
			// earlier in walk order, so its reader is done.
			if j.slot.ok {
				j.it.Hash, j.it.Hashed, j.it.Shared = j.slot.hash, true, true
			} else {
				// The first path could not be read; this one may be fine.
				if inline == nil {
					inline = make([]byte, BlockSize)
				}
				j.it.Hash, j.it.ReadErr = readHash(ctx, s, &j.it.Entry, inline, o.ReadBytes)
				j.it.Hashed = j.it.ReadErr == nil
				if j.it.Hashed {
					j.slot.hash, j.slot.ok = j.it.Hash, true
				}
			}
		}
		if err := fn(&j.it); err != nil {
			fnErr = err
			cancel()
		}
	}
	wg.Wait()
	werr := <-walkErr
	if fnErr != nil {
		return fnErr
	}
	if werr != nil {
		return werr
	}
	return ctx.Err()
}

// ReadHash reads a regular file of s end to end through store.Open and
// ReadAt in len(buf) blocks and returns its xxhash64. A file that is no
// longer the size the walk listed gives an error wrapping store.ErrChanged.
func ReadHash(s store.Store, e *store.Entry, buf []byte, readBytes func(int64)) (uint64, error) {
	return readHash(context.Background(), s, e, buf, readBytes)
}

// readHash is ReadHash that stops between blocks when ctx is done.
func readHash(ctx context.Context, s store.Store, e *store.Entry, buf []byte, readBytes func(int64)) (uint64, error) {
	f, err := s.Open(e)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if sz := f.Size(); sz != e.Size {
		return 0, &store.PathError{Op: "reading", Path: e.StorePath,
			Err: fmt.Errorf("size changed from %d to %d bytes since it was listed: %w", e.Size, sz, store.ErrChanged)}
	}
	h := xxhash.New()
	var off int64
	for off < e.Size {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n := int64(len(buf))
		if rest := e.Size - off; rest < n {
			n = rest
		}
		m, err := f.ReadAt(buf[:n], off)
		h.Write(buf[:m])
		off += int64(m)
		if readBytes != nil && m > 0 {
			readBytes(int64(m))
		}
		if int64(m) < n {
			if err == nil || errors.Is(err, io.EOF) {
				return 0, &store.PathError{Op: "reading", Path: e.StorePath,
					Err: fmt.Errorf("the file ended after %d of %d bytes: %w", off, e.Size, store.ErrChanged)}
			}
			return 0, &store.PathError{Op: "reading", Path: e.StorePath, Err: err}
		}
	}
	// A file that grew after the walk would hash differently from what
	// was listed; say so instead of hashing a prefix.
	if m, _ := f.ReadAt(buf[:1], off); m > 0 {
		return 0, &store.PathError{Op: "reading", Path: e.StorePath,
			Err: fmt.Errorf("the file grew past the %d bytes listed: %w", e.Size, store.ErrChanged)}
	}
	if err := unchangedSince(s, e); err != nil {
		return 0, err
	}
	return h.Sum64(), nil
}

// unchangedSince looks at the file again after it was read: a write that
// kept the size (an overwrite in place) shows only in the modification or
// change time, a replaced file in the inode. Without this check a
// manifest would pair the listed modification time with the new
// content's hash. Times and the inode are compared only where the store
// gives them (an archive's never change).
func unchangedSince(s store.Store, e *store.Entry) error {
	st, err := s.Stat(e.StorePath)
	if err != nil {
		return &store.PathError{Op: "reading", Path: e.StorePath,
			Err: fmt.Errorf("it could not be looked at again after reading (%v): %w", err, store.ErrChanged)}
	}
	var what []string
	if st.Size != e.Size {
		what = append(what, fmt.Sprintf("size %d -> %d", e.Size, st.Size))
	}
	if st.MtimeNs != e.MtimeNs {
		what = append(what, "modification time")
	}
	if st.CtimeNs != e.CtimeNs {
		what = append(what, "change time")
	}
	if st.Ino != e.Ino || st.Dev != e.Dev {
		what = append(what, "inode (the file was replaced)")
	}
	if len(what) == 0 {
		return nil
	}
	return &store.PathError{Op: "reading", Path: e.StorePath,
		Err: fmt.Errorf("it changed while it was read (%s): %w", strings.Join(what, ", "), store.ErrChanged)}
}
