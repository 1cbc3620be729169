// Package extract copies selected files out of any store usmtkit reads into
// a destination folder, safely: it owns the selection rules (include,
// exclude, user, drive), the two layouts, the safe writer (no write outside
// the destination, no symlink followed, nothing overwritten unless asked,
// no partial file under a real name), Windows name escaping for FAT, exFAT,
// NTFS and SMB targets, and the metadata written back (ns times, hard
// links, creation time and Windows attributes). docs/extract.md is the
// user's view of the same rules.
package extract

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// Layouts.
const (
	LayoutWindows = "windows" // DEST/C/Users/jdoe/...
	LayoutStore   = "store"   // DEST/USMT/File/C$/Users/jdoe/... plus the control files
)

// Options configure Run.
type Options struct {
	Dest    string
	Layout  string // LayoutWindows (default) or LayoutStore
	Names   string // "auto" (default), "windows" or "posix"
	Include []string
	Exclude []string
	User    string
	Drive   string

	// MapUsers and MapDrives send files to a new profile folder or drive
	// in the windows layout (mapping.go; LoadState's /mu and /md).
	MapUsers  []UserMap
	MapDrives []DriveMap

	DryRun       bool // decide and report, write nothing
	Overwrite    bool // replace existing files
	SkipExisting bool // keep an existing file of the same size and last write time
	HardlinkCopy bool // write hard-linked files as separate copies
	Continue     bool // go on past damaged files and other per-file problems

	// Decision is called for every file (and every folder whose whole
	// subtree is left out) with what happens to it and why. path is the
	// Windows path (or the store path when there is none); folders end in `\`.
	// dest is where an included file goes: its slash path below DEST
	// before any name escaping ("" when it is not written).
	Decision func(a Action, path, dest, reason string)
	// Notice is called for per-file events worth telling the user:
	// kind is "escaped", "collision", "damaged", "failed", "conflict",
	// "refused" or "skipped".
	Notice func(kind, path, msg string)
	// Progress is called with finished files and bytes as they are written.
	Progress func(files, bytes int64)
}

// MaxEFSListed bounds Result.EFSFiles; EFSCount keeps counting.
const MaxEFSListed = 1000

// Problem is a file that was not extracted because of damage or a
// conflict.
type Problem struct {
	Path  string `json:"path"`
	Error string `json:"error"`
	Kept  string `json:"kept,omitempty"` // DEST-relative NAME.usmtkit-damaged holding the readable part
}

// Rename is a name written differently from the store (escaped, or
// renamed after a case collision).
type Rename struct {
	Path    string `json:"path"`    // the Windows (or store) path
	Written string `json:"written"` // slash path below DEST
}

// Result is what a run did. Its JSON form is the --json summary.
type Result struct {
	Dest   string `json:"dest"`
	Layout string `json:"layout"`
	Names  string `json:"names"` // "windows" or "posix": the rule applied
	Target string `json:"target_fs,omitempty"`
	DryRun bool   `json:"dry_run"`
	// Mapping describes --map-user/--map-drive ("" when none).
	Mapping string `json:"mapping,omitempty"`

	Files           int64 `json:"extracted"` // files written (or that would be, in a dry run), hard links included
	Bytes           int64 `json:"bytes"`
	Dirs            int64 `json:"dirs_created"`
	HardLinks       int64 `json:"hardlinks"`    // files written as hard links to an earlier one
	LinksCopied     int64 `json:"links_copied"` // hard links written as copies because the target has none
	SkippedExisting int64 `json:"skipped_existing"`
	NotSelected     int64 `json:"not_selected"` // files left out by --include/--exclude/--user/--drive or the layout
	Special         int64 `json:"special"`      // symlinks, FIFOs, sockets, devices: never extracted

	DamagedCount      int64  `json:"damaged"`
	FailedCount       int64  `json:"failed"`
	ConflictCount     int64  `json:"conflicts"`
	RefusedCount      int64  `json:"refused"`
	EscapedCount      int64  `json:"escaped"`
	CollisionCount    int64  `json:"collisions"`
	MetaUnsupported   int64  `json:"metadata_unsupported"` // files whose creation time/attributes the target cannot keep
	MetaFailures      int64  `json:"metadata_failures"`
	MetaError         string `json:"metadata_error,omitempty"`
	StaleTempsRemoved int64  `json:"stale_temps_removed"`
	// EFSCount counts the selected files carrying the NTFS encrypted
	// attribute (store.IsEFS): what is written for them is raw EFS data,
	// not the user's content. EFSFiles names the first MaxEFSListed.
	EFSCount int64    `json:"efs"`
	EFSFiles []string `json:"efs_files"`

	Damaged    []Problem `json:"damaged_files"`
	Failed     []Problem `json:"failed_files"`
	Conflicts  []Problem `json:"conflict_files"`
	Refused    []Problem `json:"refused_files"`
	Escaped    []Rename  `json:"escaped_names"`
	Collisions []Rename  `json:"collision_names"`
}

// Problems is the number of files not extracted because of a problem.
func (r *Result) Problems() int64 {
	return r.DamagedCount + r.FailedCount + r.ConflictCount + r.RefusedCount
}

// UsageError is a wrong option or destination: the command line must change.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// StopError ends a run without --continue at the first per-file problem.
type StopError struct {
	Kind string // "damaged", "failed", "conflict", "refused"
	Err  error
}

func (e *StopError) Error() string {
	hint := "rerun with --continue to extract every other file"
	if e.Kind == "damaged" {
		hint = "rerun with --continue to extract every intact file (the damaged ones are listed, exit status 3)"
	}
	return fmt.Sprintf("%v; stopped there: files after it were not extracted; %s", e.Err, hint)
}
func (e *StopError) Unwrap() error { return e.Err }

// Run extracts the selected files of s into o.Dest.
func Run(ctx context.Context, s store.Store, o Options) (*Result, error) {
	r, err := start(ctx, s.Info().Roots, o, true)
	if err != nil {
		return r.res, err // nil when the options were wrong
	}
	r.open = s.Open
	return r.finish(s.Walk(ctx, r.visit))
}

// start checks the options and DEST (never inside a store root), opens
// DEST and takes its lock (unless a dry run): what Run and Salvage share
// before their walks. selecting is false for Salvage, which writes every
// entry. The run is never nil; its res is nil when the options are wrong.
func start(ctx context.Context, roots []string, o Options, selecting bool) (*run, error) {
	if o.Layout == "" {
		o.Layout = LayoutWindows
	}
	r := &run{ctx: ctx, o: &o}
	if o.Layout != LayoutWindows && o.Layout != LayoutStore {
		return r, usagef("--layout takes windows or store (got %q)", o.Layout)
	}
	if o.Names == "" {
		o.Names = "auto"
	}
	if o.Names != "auto" && o.Names != "windows" && o.Names != "posix" {
		return r, usagef("--names takes auto, windows or posix (got %q)", o.Names)
	}
	if o.Dest == "" {
		return r, usagef("extract needs a DEST folder")
	}
	if len(o.MapUsers)+len(o.MapDrives) > 0 && o.Layout != LayoutWindows {
		return r, usagef("--map-user and --map-drive apply to the windows layout only")
	}
	if err := checkMappings(o.MapUsers, o.MapDrives); err != nil {
		return r, err
	}
	if selecting {
		sel, err := NewSelector(o.Include, o.Exclude, o.User, o.Drive)
		if err != nil {
			return r, usagef("%v", err)
		}
		r.sel = sel
	}
	dest, err := filepath.Abs(o.Dest)
	if err != nil {
		return r, err
	}
	forbid, err := checkDest(dest, roots)
	if err != nil {
		return r, err
	}
	res := &Result{Dest: dest, Layout: o.Layout, Names: "posix", DryRun: o.DryRun, Mapping: mappingNote(o.MapUsers, o.MapDrives)}
	r.res = res
	progress := o.Progress
	if progress == nil {
		progress = func(int64, int64) {}
	}
	if !o.DryRun {
		fd, err := openDest(dest)
		if err != nil {
			return r, err
		}
		tgt, err := DetectTarget(dest, o.Names)
		if err != nil {
			unix.Close(fd)
			return r, usagef("%v", err)
		}
		res.Target = tgt.FSType
		if tgt.WindowsNames {
			tgt.probeNames(fd)
			res.Names = "windows"
		}
		r.w = &writer{ctx: ctx, dest: dest, tgt: tgt, opts: r.o, res: res, links: map[uint64]linkRec{},
			forbid: forbid, lockFd: -1, progress: progress, pendingLinks: map[uint64]bool{}, inflightLinks: map[uint64]bool{},
			perFileSync: strings.HasPrefix(tgt.FSType, "fuse") || tgt.NTFS3G}
		r.w.problemFn = func(err error, e *store.Entry, winPath string) error { return r.problemAt(err, e, winPath) }
		r.w.stack = []*wdir{{fd: fd}}
		if err := r.w.lock(); err != nil {
			r.w.close()
			r.w = nil
			return r, err
		}
		r.w.cleanStale(fd, "")
	} else if o.Names == "windows" {
		res.Names = "windows"
	}
	return r, nil
}

// finish puts the files written before the walk ended (err) in place,
// releases DEST and counts the lists.
func (r *run) finish(err error) (*Result, error) {
	res := r.res
	if r.w != nil {
		// A batch still in flight comes before whatever ended the walk:
		// its stop error wins, as it would have stopped the walk first.
		if serr := r.w.settle(); serr != nil {
			err = serr
		}
		// Files written before a stop or a cancel are still put in place.
		if cerr := r.w.close(); err == nil {
			err = cerr
		}
	}
	res.DamagedCount, res.FailedCount = int64(len(res.Damaged)), int64(len(res.Failed))
	res.ConflictCount, res.RefusedCount = int64(len(res.Conflicts)), int64(len(res.Refused))
	res.EscapedCount, res.CollisionCount = int64(len(res.Escaped)), int64(len(res.Collisions))
	var fe *fatalError
	if errors.As(err, &fe) {
		err = fmt.Errorf("%w; the destination %s failed (full, read-only or broken?): fix it and rerun with --skip-existing to resume", fe.err, res.Dest)
	}
	return res, err
}

// checkDest refuses a destination inside (or equal to) a source store
// root, and returns the roots that lie inside the destination as slash
// paths relative to it: nothing may be written at or below them. Both
// are safeio's one rule (device and inode, symlinks resolved).
func checkDest(dest string, roots []string) ([]string, error) {
	var in *safeio.InsideError
	if err := safeio.CheckOutside(dest, roots); errors.As(err, &in) {
		return nil, usagef("the destination %s is inside the source store %s: usmtkit never writes into a store; choose a folder outside it", dest, in.Root)
	} else if err != nil {
		return nil, fmt.Errorf("resolving the destination %s: %w", dest, err)
	}
	below, err := safeio.RootsBelow(dest, roots)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("resolving the destination %s: %w", dest, err)
	}
	var forbid []string
	for _, b := range below {
		forbid = append(forbid, b.Rel)
	}
	return forbid, nil
}

// run is the state of one Run.
type run struct {
	ctx  context.Context
	open func(*store.Entry) (store.File, error) // the entry's content
	o    *Options
	sel  *Selector
	res  *Result
	w    *writer
	anc  []*store.Entry // the folders above the current entry, by depth
	// ancWin[i] is displayPath(anc[i]), made once per folder: building
	// every ancestor's path for every entry cost time quadratic in depth
	// (14 s for one 4,096-deep chain).
	ancWin []string

	salv       *salvageState // a Salvage run; nil for Run
	linkTarget string        // Salvage: the entry is a hard link to this store path
}

func depthOf(sp string) int {
	if sp == "" {
		return 0
	}
	return strings.Count(sp, "/") + 1
}

func displayPath(e *store.Entry) string {
	p := e.WinPath
	if p == "" || e.Control {
		p = e.StorePath
	}
	if e.Type == store.TypeDir && !strings.HasSuffix(p, `\`) && !strings.HasSuffix(p, "/") {
		if e.WinPath != "" && !e.Control {
			p += `\`
		} else {
			p += "/"
		}
	}
	return p
}

// comps maps an entry to its DEST path components (store names, before
// escaping) and the depth offset of its folders: component i comes from
// the store folder at depth off+i+1.
func (r *run) comps(e *store.Entry) (comps []string, off int, ok bool) {
	sp := strings.Split(e.StorePath, "/")
	if r.o.Layout == LayoutStore {
		return sp, 0, true
	}
	if len(sp) >= 3 && (strings.EqualFold(sp[0], "USMT") || strings.EqualFold(sp[0], "USMT3")) &&
		strings.EqualFold(sp[1], "File") && len(sp[2]) == 2 && sp[2][1] == '$' && isLetter(sp[2][0]) {
		c := append([]string{strings.ToUpper(sp[2][:1])}, sp[3:]...)
		mapComps(c, r.o.MapUsers, r.o.MapDrives)
		return c, 2, true
	}
	if e.WinPath != "" && store.DriveOf(e.WinPath) == "" && !e.Control {
		return sp, 0, true // a plain tree: its own names
	}
	return nil, 0, false
}

// decide applies the selection, then the rules about control files and
// entries that are never extracted. special is set for a selected
// symlink, FIFO, socket or device.
func (r *run) decide(e *store.Entry) (d Decision, special bool) {
	d = Decision{Action: Include, Reason: "salvaged"}
	if r.sel != nil {
		d = r.sel.Decide(e) // always, so the selector follows the walk
	}
	if e.Control {
		if r.o.Layout == LayoutStore {
			return Decision{Action: Include, Reason: "store control file (kept with --layout store)"}, false
		}
		return Decision{Action: Skip, Reason: "store control file (only kept with --layout store)"}, false
	}
	if d.Action == Include {
		switch e.Type {
		case store.TypeSymlink:
			return Decision{Action: Skip, Reason: "symlink to " + e.LinkTarget + " (usmtkit never creates symlinks)"}, true
		case store.TypeOther:
			return Decision{Action: Skip, Reason: "FIFO, socket or device (not Windows data)"}, true
		}
	}
	return d, false
}

func (r *run) visit(e *store.Entry, werr error) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	depth := depthOf(e.StorePath)
	if e.Type == store.TypeDir && depth > 0 {
		if len(r.anc) >= depth {
			r.anc, r.ancWin = r.anc[:depth-1], r.ancWin[:depth-1]
		}
		for len(r.anc) < depth-1 {
			r.anc, r.ancWin = append(r.anc, nil), append(r.ancWin, "")
		}
		r.anc, r.ancWin = append(r.anc, e), append(r.ancWin, displayPath(e))
	}
	if depth == 0 {
		if werr != nil {
			return r.problem(&problemError{kind: "damaged", err: fmt.Errorf("the store root could not be listed completely: %w", werr)}, e)
		}
		return nil
	}
	if err := cleanStorePath(e.StorePath); err != nil {
		return r.problem(&problemError{kind: "refused", err: fmt.Errorf("%s: %v: not extracted", displayPath(e), err)}, e)
	}
	d, special := r.decide(e)
	comps, off, mapped := r.comps(e)
	if e.Type == store.TypeDir {
		if werr != nil {
			// Some of the folder could not be listed: its missing children are lost.
			if err := r.problem(&problemError{kind: "damaged", err: fmt.Errorf("%s: the folder could not be read completely: %w", displayPath(e), werr)}, e); err != nil {
				return err
			}
		}
		if d.Prune {
			r.decision(d, e)
			return store.SkipDir
		}
		if d.Action == Include && mapped && r.w != nil && !mappedAway(comps, r.o.MapUsers) {
			if _, err := r.enterFor(comps, off, len(comps)); err != nil {
				return r.problem(err, e)
			}
		}
		return nil
	}
	if d.Action == Include && mapped {
		r.decisionTo(d, e, strings.Join(comps, "/"))
	} else {
		r.decision(d, e)
	}
	if d.Action != Include {
		if special {
			r.res.Special++
		} else {
			r.res.NotSelected++
		}
		return nil
	}
	if !mapped {
		r.res.NotSelected++
		return nil
	}
	if werr != nil {
		return r.problem(&problemError{kind: "damaged", err: fmt.Errorf("%s: %w", displayPath(e), werr)}, e)
	}
	if store.IsEFS(e) {
		r.res.EFSCount++
		if len(r.res.EFSFiles) < MaxEFSListed {
			r.res.EFSFiles = append(r.res.EFSFiles, displayPath(e))
		}
		if r.o.Notice != nil {
			r.o.Notice("efs", displayPath(e), store.EFSNote)
		}
	}
	if r.w == nil { // dry run
		r.res.Files++
		r.res.Bytes += e.Size
		return nil
	}
	dir, err := r.enterFor(comps, off, len(comps)-1)
	if err != nil {
		return r.problem(err, e)
	}
	if r.linkTarget != "" {
		err = r.w.writeHardlink(dir, comps[len(comps)-1], e, displayPath(e), r.linkTarget)
	} else {
		err = r.w.writeFile(dir, comps[len(comps)-1], e, displayPath(e), func() (store.File, error) { return r.open(e) })
	}
	if err != nil {
		return r.problem(err, e)
	}
	return nil
}

// cleanStorePath rejects store paths no real store yields but a crafted
// archive or a broken reader could: absolute, with empty, "." or ".."
// components, or a NUL.
func cleanStorePath(sp string) error {
	for _, c := range strings.Split(sp, "/") {
		if err := validName(c); err != nil {
			return fmt.Errorf("unsafe store path %q (%v)", sp, err)
		}
	}
	return nil
}

// enterFor enters the DEST folder of comps[:n], with the store folders'
// metadata.
func (r *run) enterFor(comps []string, off, n int) (*wdir, error) {
	metas := make([]*store.Entry, n)
	wins := make([]string, n)
	for i := 0; i < n; i++ {
		depth := off + i + 1
		// visit puts a folder only at index depth-1, so a non-nil anc
		// there is the folder at this depth.
		if depth-1 < len(r.anc) && r.anc[depth-1] != nil {
			metas[i] = r.anc[depth-1]
			wins[i] = r.ancWin[depth-1]
		} else {
			wins[i] = strings.Join(comps[:i+1], "/")
		}
	}
	return r.w.enter(comps[:n], metas, wins)
}

func (r *run) decision(d Decision, e *store.Entry) { r.decisionTo(d, e, "") }

func (r *run) decisionTo(d Decision, e *store.Entry, dest string) {
	if r.o.Decision != nil {
		r.o.Decision(d.Action, displayPath(e), dest, d.Reason)
	}
}

// problem records a per-file problem; it returns nil to go on (with
// --continue) or the error that stops the walk.
func (r *run) problem(err error, e *store.Entry) error {
	if r.w != nil {
		// Problems are recorded in file order: those of the batch in
		// flight first. Its stop error wins: it came before this file.
		if serr := r.w.settle(); serr != nil {
			return serr
		}
	}
	return r.problemAt(err, e, displayPath(e))
}

func (r *run) problemAt(err error, e *store.Entry, path string) error {
	var se *StopError
	if errors.As(err, &se) {
		return err // already recorded (a batch stopped the run)
	}
	var pe *problemError
	if !errors.As(err, &pe) {
		return err // fatal, or cancelled
	}
	if r.salv != nil && r.salvageProblem(pe, e) {
		if r.o.Notice != nil {
			r.o.Notice(pe.kind, path, pe.err.Error())
		}
		return nil
	}
	p := Problem{Path: path, Error: pe.err.Error(), Kept: pe.kept}
	switch pe.kind {
	case "damaged":
		r.res.Damaged = append(r.res.Damaged, p)
	case "conflict":
		r.res.Conflicts = append(r.res.Conflicts, p)
	case "refused":
		r.res.Refused = append(r.res.Refused, p)
	default:
		r.res.Failed = append(r.res.Failed, p)
	}
	if r.o.Notice != nil {
		msg := pe.err.Error()
		if pe.kept != "" {
			msg += "; the readable part is kept as " + pe.kept
		}
		r.o.Notice(pe.kind, p.Path, msg)
	}
	if !r.o.Continue {
		return &StopError{Kind: pe.kind, Err: pe}
	}
	if e.Type == store.TypeDir && pe.kind != "damaged" {
		return store.SkipDir // the folder could not be created: nothing below can be written
	}
	return nil
}
