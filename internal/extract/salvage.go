package extract

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/store"
)

// Salvage writes what a damaged archive still holds. The archive walk
// (finding the entries whose frames decode, resynchronising after damage)
// is compress.Salvage's; the writing is extract's own writer, in the store
// layout, with every rule of extract: Windows names escaped and long names
// shortened as extract does it, nothing outside DEST, no symlink followed
// or created, nothing in DEST overwritten or deleted, a temporary file
// renamed into place only once complete and durable, the readable part of
// a damaged file kept as NAME.usmtkit-damaged. Every entry that cannot be
// written is listed and the walk goes on; only a DEST that can take
// nothing more (full, read-only, failing: ENOSPC, EDQUOT, EROFS, EIO)
// stops it.

// SalvageOptions configure Salvage.
type SalvageOptions struct {
	Dest string
	// Archive is the archive's path when it is a local file: DEST may not
	// be inside it. "" for an archive in a bucket.
	Archive string
	Names   string // "auto" (default), "windows" or "posix", as extract's --names
	// Notice and Progress are as in Options.
	Notice   func(kind, path, msg string)
	Progress func(files, bytes int64)
}

// SalvageWalk runs the archive walk, calling fn for every entry found in
// archive order: compress.Salvage or compress.SalvageReaderAt bound to
// one archive.
type SalvageWalk func(fn func(e *compress.SalvagedEntry, data io.Reader) error) (*compress.SalvageReport, error)

// SalvageResult is what Salvage did: the walk's findings (Walk) and the
// writer's (Result: escaped names, files not written, metadata).
type SalvageResult struct {
	*Result
	Walk *compress.SalvageReport
	// Intact counts the entries found whole and written (files, folders,
	// hard links).
	Intact int64
	// Skipped lists the symlinks found (never created, as by extract); up
	// to store.MaxProblems. SkippedCount has them all.
	Skipped      []Problem
	SkippedCount int64
	// Kept maps the store path of a damaged file (as listed in
	// Walk.Damaged) to the DEST-relative path of its readable part.
	Kept map[string]string
}

// NotWritten is the number of entries found but not written: refused,
// in conflict with DEST, or rejected by it.
func (r *SalvageResult) NotWritten() int64 {
	return r.RefusedCount + r.ConflictCount + r.FailedCount
}

// salvageState is a Salvage run's own state beside the writer's.
type salvageState struct {
	res        *SalvageResult
	cur        *store.Entry // the entry being written
	curProblem bool         // cur was not written (a problem other than damage)
	curDamage  error        // cur is damaged (a hard link whose first name was not written)
	notWritten int64        // entries the walk found whole but not written
}

// Salvage writes every entry walk finds into o.Dest.
func Salvage(ctx context.Context, walk SalvageWalk, o SalvageOptions) (*SalvageResult, error) {
	var roots []string
	if o.Archive != "" {
		roots = []string{o.Archive}
	}
	sr := &SalvageResult{Kept: map[string]string{}}
	eo := Options{Dest: o.Dest, Layout: LayoutStore, Names: o.Names, Continue: true, Notice: o.Notice, Progress: o.Progress,
		Decision: func(a Action, path, _, reason string) {
			if a == Include {
				return
			}
			sr.SkippedCount++
			if len(sr.Skipped) < store.MaxProblems {
				sr.Skipped = append(sr.Skipped, Problem{Path: path, Error: reason})
			}
		}}
	r, err := start(ctx, roots, eo, false)
	if err != nil {
		return nil, err
	}
	r.salv = &salvageState{res: sr}
	r.w.linkByPath = true
	rep, werr := walk(r.salvaged)
	sr.Result, err = r.finish(werr)
	sr.Walk = rep
	if rep != nil {
		sr.Intact = rep.Intact - r.salv.notWritten - sr.SkippedCount
	}
	return sr, err
}

// salvaged is the walk's callback: it writes one entry as extract would.
func (r *run) salvaged(se *compress.SalvagedEntry, data io.Reader) error {
	e := &store.Entry{StorePath: se.Path, Type: se.Type, Mode: se.Mode, Size: se.Size, MtimeNs: se.MtimeNs, AtimeNs: se.AtimeNs,
		BtimeNs: se.BtimeNs, HasBtime: se.HasBtime, WinAttrs: se.WinAttrs, HasWinAttr: se.HasAttrs, Nlink: 1}
	if e.AtimeNs == 0 {
		e.AtimeNs = e.MtimeNs // a tar header without an access time
	}
	if se.Type == store.TypeSymlink {
		e.LinkTarget = se.Link
	}
	s := r.salv
	s.cur, s.curProblem, s.curDamage = e, false, nil
	r.linkTarget = ""
	if se.Hardlink {
		r.linkTarget = se.Link
	}
	src := &seqFile{r: data, size: se.Size}
	r.open = func(*store.Entry) (store.File, error) { return src, nil }
	err := r.visit(e, nil)
	s.cur = nil
	if errors.Is(err, store.SkipDir) {
		err = nil // a tar stream cannot skip: each entry below meets the folder's problem itself
	}
	if err != nil {
		return err // DEST failed, or cancelled
	}
	// Read what the writer did not (an entry not written): the walk then
	// knows whether the archive holds it whole.
	if _, err := io.Copy(io.Discard, data); err != nil {
		return err // damaged (the walk lists it), or the archive cannot be read
	}
	if s.curDamage != nil {
		return s.curDamage
	}
	if s.curProblem {
		s.notWritten++
	}
	return nil
}

// salvageProblem records a problem of a Salvage run; it reports whether it
// did (else problemAt records it as extract does).
func (r *run) salvageProblem(pe *problemError, e *store.Entry) bool {
	s := r.salv
	if pe.kind != "damaged" {
		if e == s.cur {
			s.curProblem = true
		} else {
			s.notWritten++ // found while renaming: the walk had it whole
		}
		return false
	}
	// Damage is the walk's to list (Walk.Damaged); the part kept is added
	// to its record.
	if pe.kept != "" && len(s.res.Kept) < store.MaxProblems {
		s.res.Kept[e.StorePath] = pe.kept
	}
	if e == s.cur && errors.Is(pe.err, store.ErrCorrupt) {
		s.curDamage = pe.err
	} else if e == s.cur {
		s.curDamage = fmt.Errorf("%w: %v", store.ErrCorrupt, pe.err)
	}
	return true
}

// seqFile serves a salvaged file's content, which the walk yields in
// order, to the writer (which reads it in order).
type seqFile struct {
	r         io.Reader
	off, size int64
}

func (f *seqFile) ReadAt(p []byte, off int64) (int, error) {
	if off != f.off {
		return 0, fmt.Errorf("a salvaged file is read in order (read at %d, next is %d)", off, f.off)
	}
	n, err := io.ReadFull(f.r, p)
	f.off += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (f *seqFile) Size() int64  { return f.size }
func (f *seqFile) Close() error { return nil }
