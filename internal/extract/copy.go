package extract

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/store"
)

// fdFile is a source file that exposes its descriptor (directory stores):
// copy_file_range then moves the data inside the kernel.
type fdFile interface{ Fd() uintptr }

// Writeback is started on a file's data as it is written (see kick):
// every writebackChunk bytes, and at its end when it has writebackMin
// bytes or more. Smaller files are left to the batch's syncfs, which
// writes many of them together.
const (
	writebackChunk = 8 << 20
	writebackMin   = 1 << 20
	// readBuf is one read of the source. A file larger than that is read
	// (for an archive: decoded and verified) by a goroutine up to
	// readAhead reads ahead of the writes.
	readBuf   = 1 << 20
	readAhead = 6
)

// kick asks the kernel to start writing [off, off+n) of fd to disk now,
// without waiting for it (SYNC_FILE_RANGE_WRITE): the disk then works
// while the next data is decoded and written, and the batch's syncfs
// later finds little left to write. It is only a hint: durability still
// comes from the syncfs before the rename, so errors are ignored (a
// failing disk fails the syncfs). FUSE targets fsync each file anyway.
func (w *writer) kick(fd int, off, n int64) {
	if w.perFileSync || n <= 0 {
		return
	}
	unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// copyData copies size bytes of src to out, checking the context and
// reporting progress between chunks.
func (w *writer) copyData(out *os.File, src store.File, size int64) (int64, error) {
	var off, kicked int64
	dfd := int(out.Fd())
	// wrote accounts for n bytes written at off: progress, and writeback
	// started every writebackChunk bytes.
	wrote := func(n int) {
		off += int64(n)
		w.progress(0, int64(n))
		if off-kicked >= writebackChunk {
			w.kick(dfd, kicked, off-kicked)
			kicked = off
		}
	}
	if ff, ok := src.(fdFile); ok && size > 0 && !hasHoles(int(ff.Fd()), size) {
		sfd := int(ff.Fd())
		for off < size {
			if err := w.ctx.Err(); err != nil {
				return off, err
			}
			soff := off
			n, err := unix.CopyFileRange(sfd, &soff, dfd, nil, int(min(copyChunk, size-off)), 0)
			if err != nil {
				if off == 0 && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) ||
					errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EBADF)) {
					break // not possible between these file systems: copy through memory
				}
				if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
					continue
				}
				if isFatalWriteErr(err) && !errors.Is(err, unix.EIO) {
					return off, &fatalError{err}
				}
				if errors.Is(err, unix.EFBIG) {
					return off, problem("failed", "the file is too large for the target file system: %v", err)
				}
				return off, fmt.Errorf("reading the store: %w", err)
			}
			if n == 0 {
				return off, fmt.Errorf("the file ended at %d bytes, shorter than listed: %w", off, store.ErrChanged)
			}
			wrote(n)
		}
	}
	// Through memory: one read for a small file, else a read-ahead
	// goroutine, so that decoding the next piece and writing this one use
	// both CPUs, as zstd and tar do in a pipeline.
	var next func(want int) ([]byte, error)
	if size-off <= readBuf {
		if w.buf == nil {
			w.buf = make([]byte, readBuf)
		}
		next = func(want int) ([]byte, error) {
			n, err := src.ReadAt(w.buf[:want], off)
			return w.buf[:n], err
		}
	} else {
		ra := w.startReadAhead(src, off, size)
		defer ra.stop()
		next = ra.next
	}
	holes := false // a block of zeros was skipped, not written
	for off < size {
		if err := w.ctx.Err(); err != nil {
			return off, err
		}
		want := int(min(readBuf, size-off))
		b, err := next(want)
		if len(b) == want && compress.AllZero(b) {
			// Left as a hole: a sparse file stays sparse (an archive
			// stores holes as zeros), and the file is cut to its size
			// at the end.
			if _, serr := out.Seek(int64(len(b)), io.SeekCurrent); serr != nil {
				return off, fmt.Errorf("writing to the target: %w", serr)
			}
			holes = true
			wrote(len(b))
			continue
		}
		if len(b) > 0 {
			if _, werr := out.Write(b); werr != nil {
				if isFatalWriteErr(werr) {
					return off, &fatalError{werr}
				}
				// The destination refused this file (EFBIG on FAT, ...).
				return off, problem("failed", "writing to the target failed: %v", werr)
			}
			wrote(len(b))
		}
		if len(b) < want {
			if err == nil || err == io.EOF {
				return off, fmt.Errorf("the file ended at %d bytes, shorter than listed: %w", off, store.ErrChanged)
			}
			return off, err
		}
	}
	if holes {
		if err := out.Truncate(off); err != nil {
			if isFatalWriteErr(err) {
				return off, &fatalError{err}
			}
			return off, problem("failed", "writing to the target failed: %v", err)
		}
	}
	if size >= writebackMin {
		w.kick(dfd, kicked, off-kicked)
	}
	return off, nil
}

// hasHoles reports whether the source file fd of size bytes has a hole
// (SEEK_HOLE before its end). copy_file_range between two file systems
// writes holes out as zeros, so such a file is copied through memory,
// where blocks of zeros are skipped.
func hasHoles(fd int, size int64) bool {
	h, err := unix.Seek(fd, 0, unix.SEEK_HOLE)
	return err == nil && h < size
}
