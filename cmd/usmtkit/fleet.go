package main

// Many stores at once (docs/cli.md, "Many stores at once"): verify and
// index over a share copy, several stores (--each) or a list (--from),
// --jobs at a time in this process, each store's output grouped, one line
// per store and a total, and a journal (internal/journal) a re-run resumes
// from. fleet_verify.go and fleet_index.go plug the commands in.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/objstore"
	"github.com/usmtkit/usmtkit/store"
)

// fleetFlags are the options of a run over many stores.
type fleetFlags struct {
	Jobs    int    // stores at once; 0 = the number of CPUs
	Journal string // JSON-lines journal of finished stores
	Redo    bool   // do stores again that the journal says are done
	From    string // a file of store paths, one a line
	Each    bool   // several STOREs are separate stores, not volumes of one
}

func fleetCLIFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Usage: "over many stores: how many at once (default: the number of CPUs)"},
		&cli.StringFlag{Name: "journal", Usage: "over many stores: record each finished store in `FILE` (JSON lines, docs/journal.md); a re-run skips those done"},
		&cli.BoolFlag{Name: "redo", Usage: "with --journal: do again the stores the journal says are done"},
		&cli.StringFlag{Name: "from", Usage: "over many stores: read store paths from `FILE`, one a line (blank lines and lines starting with # are skipped)"},
		&cli.BoolFlag{Name: "each", Usage: "several STOREs are separate stores (default: the volumes of one multi-volume store)"},
	}
}

func fleetFlagsOf(c *cli.Context) fleetFlags {
	return fleetFlags{Jobs: c.Int("jobs"), Journal: c.String("journal"), Redo: c.Bool("redo"), From: c.String("from"), Each: c.Bool("each")}
}

// explicit reports whether a flag asks for a run over many stores.
func (f *fleetFlags) explicit() bool { return f.From != "" || f.Journal != "" || f.Each }

// fleetWanted tells whether args (with the flags) are many stores, and
// returns what detection found when they are one store. Many: --from,
// --journal or --each; a share copy among the STOREs; or several STOREs of
// which one is no folder store (folder stores alone are the volumes of one
// store).
func fleetWanted(f *fleetFlags, args []string, plain bool) ([]*store.Detection, bool, error) {
	if f.Jobs < 0 || f.Jobs > 256 {
		return nil, false, exitcodes.Usagef(fmt.Sprintf("--jobs must be between 1 and 256, not %d", f.Jobs))
	}
	if f.explicit() {
		return nil, true, nil
	}
	for _, a := range args {
		if objstore.IsPrefix(a) {
			return nil, true, nil // every archive under it
		}
	}
	ds, err := detectAllWith(args, store.DetectOptions{Plain: plain, NoSizes: true})
	if err != nil {
		if f.Redo || f.Jobs != 0 {
			return nil, false, exitcodes.Usagef("--jobs and --redo are for runs over many stores (a share copy, --from, --each, --journal): " + err.Error())
		}
		return nil, false, nil // the single-store path reports it
	}
	many := false
	for _, d := range ds {
		if d.Kind == store.KindSMP || len(ds) > 1 && !d.Kind.IsDirectory() {
			many = true
		}
	}
	if !many && (f.Redo || f.Jobs != 0) {
		return nil, false, exitcodes.Usagef("--jobs and --redo are for runs over many stores: give a share copy, --from FILE, or several stores with --each")
	}
	if many {
		return nil, true, nil
	}
	return ds, false, nil
}

// fleetItem is one store of a run over many.
type fleetItem struct {
	Key     string // the absolute path opened: the journal's key
	Name    string // as shown: the path given, or share-relative for a share member
	StoreID string // the store's folder name (the file's for an archive)
	Share   string // the SMPSTORE folder of a share member, else ""
	Err     error  // known before running: no store here
	// Unfinished is the journal's last record of this store when it says
	// an earlier run began or wrote the store's output without finishing
	// it: status "started" (cut off before its outcome was recorded), or
	// "written": true on a record that is not done (interrupted or failed
	// after the output was made, e.g. while reading it back).
	Unfinished *journal.Record
}

// fleetResult is what one store's run gave.
type fleetResult struct {
	Status   string // journal.Status*, or "skipped" (done in the journal)
	ExitCode int
	Err      string
	Kind     string
	Words    string // the rest of the store's one line
	Fields   map[string]any
	Started  time.Time
	Finished time.Time
	Recorded string // for a skipped store: the status the journal has
}

const statusSkipped = "skipped"

// fleetRun is one command plugged into the runner.
type fleetRun struct {
	Op   string // "verify", "index"
	JSON bool
	g    *globalOptions
	// run does one store, writing its report to stdout and its notes to
	// stderr (each the store's own, grouped).
	run func(ctx context.Context, it *fleetItem, stdout, stderr io.Writer) fleetResult
	// outputs are files the run writes (outside every store).
	outputs []string
	// startFields, when set, makes the runner journal a "started" record
	// with these fields before it runs a store, so that a re-run after an
	// interruption knows the store's output as its own (it.Unfinished).
	startFields func(it *fleetItem) map[string]any
}

// collectFleet expands the STOREs and --from lines into stores: a share
// copy gives its members, an s3:// prefix the archives under it
// (prefix.go). Paths that are no store are items with Err (they are
// reported and counted like the others). warnings are problems of a share
// copy as a whole (an SMPSTORE folder holding no store).
func collectFleet(ctx context.Context, args []string, from string, plain bool) (items []*fleetItem, warnings, notes []string, err error) {
	paths := append([]string{}, args...)
	if from != "" {
		lf, err := openListFile(from) // the same decoding as --listfiles: lists are often written on Windows
		if err != nil {
			return nil, nil, nil, exitcodes.Usagef(fmt.Sprintf("--from %s: %v", from, err))
		}
		err = lf.lines(func(_ int64, line string, _ bool) error {
			if !strings.HasPrefix(line, "#") {
				paths = append(paths, line)
			}
			return nil
		})
		lf.Close()
		if err != nil {
			return nil, nil, nil, err
		}
		if len(paths) == 0 {
			return nil, nil, nil, exitcodes.Usagef(fmt.Sprintf("--from %s lists no store path", from))
		}
	}
	seen := map[string]bool{}
	add := func(it *fleetItem) {
		if seen[it.Key] {
			notes = append(notes, fmt.Sprintf("%s was given more than once: done once", it.Name))
			return
		}
		seen[it.Key] = true
		items = append(items, it)
	}
	for _, p := range paths {
		if objstore.IsPrefix(p) {
			l, err := listPrefix(ctx, p)
			if err != nil {
				return nil, nil, nil, err
			}
			if n := l.othersNote(); n != "" {
				notes = append(notes, n)
			}
			for _, o := range l.Archives {
				u := o.Location.String()
				add(&fleetItem{Key: u, Name: u, StoreID: prefixStoreID(l.Prefix, o)})
			}
			continue
		}
		if objstore.IsURL(p) {
			add(&fleetItem{Key: p, Name: p, StoreID: pathBase(p)})
			continue
		}
		abs, aerr := filepath.Abs(p)
		if aerr != nil {
			abs = p
		}
		d, derr := store.DetectWith(p, store.DetectOptions{Plain: plain, NoSizes: true})
		if derr != nil {
			add(&fleetItem{Key: abs, Name: p, StoreID: filepath.Base(abs), Err: derr})
			continue
		}
		if d.Kind != store.KindSMP {
			add(&fleetItem{Key: d.Root, Name: p, StoreID: storeIDOf(d)})
			continue
		}
		warnings = append(warnings, d.Warnings...)
		notes = append(notes, d.Notes...)
		for _, m := range d.Members {
			rel, rerr := filepath.Rel(d.Root, m.Path)
			if rerr != nil {
				rel = m.Path
			}
			it := &fleetItem{Key: m.Input, Name: filepath.Join(p, rel), StoreID: m.ID, Share: m.Share}
			if m.Err != "" {
				it.Err = fmt.Errorf("%w at %s: %s", store.ErrNoStore, m.Path, m.Err)
			}
			add(it)
		}
	}
	return items, warnings, notes, nil
}

// storeIDOf names a store by its folder: the StorePath's name, the name of
// the folder holding USMT\USMT.MIG, or an archive's file name.
func storeIDOf(d *store.Detection) string {
	switch {
	case d.Kind == store.KindMIG:
		dir := filepath.Dir(d.Root)
		if isUSMTFolderName(filepath.Base(dir)) {
			dir = filepath.Dir(dir)
		}
		return filepath.Base(dir)
	}
	return filepath.Base(d.Root)
}

func isUSMTFolderName(s string) bool {
	return strings.EqualFold(s, "USMT") || strings.EqualFold(s, "USMT3")
}

// detectAllWith detects every STORE (an s3:// name is an archive in a
// bucket, opened later).
func detectAllWith(args []string, opt store.DetectOptions) ([]*store.Detection, error) {
	var ds []*store.Detection
	for _, a := range args {
		if objstore.IsPrefix(a) {
			return nil, prefixDetectError(a)
		}
		if objstore.IsURL(a) {
			ds = append(ds, objectDetection(a))
			continue
		}
		d, err := store.DetectWith(a, opt)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return ds, nil
}

func pathBase(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// runFleet runs fr over items, jobs at a time, and prints each store's
// grouped output, its line, and the total. The returned error gives the
// exit status (docs/cli.md, "Many stores at once"): interrupted 130; the
// journal failing 1; any store not OK, or a share warning, 3; else 0.
func runFleet(ctx context.Context, fr *fleetRun, ff *fleetFlags, items []*fleetItem, warnings, notes []string) error {
	g := fr.g
	jobs := ff.Jobs
	if jobs == 0 {
		jobs = runtime.NumCPU()
	}
	if ff.Redo && ff.Journal == "" {
		return exitcodes.Usagef("--redo needs --journal FILE: it redoes what the journal says is done")
	}
	roots := fleetRoots(items)
	for _, out := range append(append([]string{}, fr.outputs...), ff.Journal) {
		if out == "" {
			continue
		}
		if err := manifest.CheckOutside(out, roots); err != nil {
			if errors.Is(err, manifest.ErrInsideStore) {
				return exitcodes.Usagef("refusing to write " + out + ": " + err.Error())
			}
			return err
		}
	}
	done := map[string]journal.Record{}
	var jw *journal.Writer
	if ff.Journal != "" {
		recs, jnotes, err := journal.Read(ff.Journal)
		if errors.Is(err, journal.ErrNotRegular) {
			return exitcodes.Usagef(err.Error())
		}
		if err != nil {
			return fmt.Errorf("reading the journal %s: %w", ff.Journal, err)
		}
		notes = append(notes, jnotes...)
		unfinished := map[string]*journal.Record{}
		for k, r := range journal.Latest(recs, fr.Op) {
			if journal.Done(r.Status) && !ff.Redo {
				done[k] = r
			}
			if r.Status == journal.StatusStarted || !journal.Done(r.Status) && r.Fields["written"] == true {
				unfinished[k] = &r
			}
		}
		for _, it := range items {
			it.Unfinished = unfinished[it.Key]
		}
		w, note, err := journal.Open(ff.Journal)
		if errors.Is(err, journal.ErrLocked) {
			return exitcodes.Usagef(err.Error() + ": wait for it to end, or give another --journal")
		}
		if err != nil {
			return fmt.Errorf("opening the journal %s: %w", ff.Journal, err)
		}
		defer w.Close() // after the Close below, a no-op
		if note != "" {
			notes = append(notes, note)
		}
		jw = w
	}
	for _, n := range notes {
		g.notef("usmtkit: note: %s", n)
	}
	for _, w := range warnings {
		fmt.Fprintf(g.Stderr, "usmtkit: warning: %s\n", w)
	}

	start := time.Now()
	var (
		outMu sync.Mutex // one store's block at a time
		tot   fleetTotals
		jerr  error
	)
	tot.Warnings = warnings
	finish := func(it *fleetItem, res fleetResult, out, errOut *groupBuf) {
		if jw != nil && res.Status != statusSkipped {
			rec := journal.Record{Op: fr.Op, Key: it.Key, Status: res.Status, Started: res.Started.UTC(),
				Finished: res.Finished.UTC(), ExitCode: res.ExitCode, Error: res.Err, Fields: res.Fields}
			if err := jw.Append(rec); err != nil {
				outMu.Lock()
				if jerr == nil {
					jerr = err
				}
				outMu.Unlock()
			}
		}
		outMu.Lock()
		defer outMu.Unlock()
		if errOut != nil {
			errOut.WriteTo(g.Stderr)
		}
		if out != nil {
			out.WriteTo(g.Stdout)
		}
		tot.add(res)
		fr.printLine(it, res)
	}

	work := make(chan *fleetItem)
	var wg sync.WaitGroup
	for i := 0; i < jobs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if r, ok := done[it.Key]; ok {
					finish(it, skippedResult(r), nil, nil)
					continue
				}
				res := fleetResult{Started: time.Now()}
				if it.Err != nil {
					res.ExitCode = exitcodes.FromError(it.Err)
					res.Status, res.Err, res.Words = journal.StatusFailed, it.Err.Error(), it.Err.Error()
					res.Fields = map[string]any{"store_id": it.StoreID, "share": it.Share}
					res.Finished = time.Now()
					finish(it, res, nil, nil)
					continue
				}
				if jw != nil && fr.startFields != nil {
					if err := jw.Append(journal.Record{Op: fr.Op, Key: it.Key, Status: journal.StatusStarted,
						Started: res.Started.UTC(), Finished: res.Started.UTC(), Fields: fr.startFields(it)}); err != nil {
						outMu.Lock()
						if jerr == nil {
							jerr = err
						}
						outMu.Unlock()
					}
				}
				// Alone, a store writes straight through; with others its
				// output waits in its own buffer until it is done.
				var out, errOut *groupBuf
				var ow, ew io.Writer = g.Stdout, g.Stderr
				if jobs > 1 {
					out, errOut = newGroupBuf(), newGroupBuf()
					ow, ew = out, errOut
				}
				res = fr.run(ctx, it, ow, ew)
				if res.Fields == nil {
					res.Fields = map[string]any{}
				}
				res.Fields["store_id"], res.Fields["share"] = it.StoreID, it.Share
				finish(it, res, out, errOut)
				out.Close()
				errOut.Close()
			}
		}()
	}
	for _, it := range items {
		outMu.Lock()
		stop := jerr != nil
		outMu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		select {
		case work <- it:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if jw != nil {
		// Everything appended reaches the disk before the total is printed.
		if err := jw.Close(); err != nil && jerr == nil {
			jerr = err
		}
	}
	tot.NotStarted = len(items) - tot.Stores
	tot.Elapsed = time.Since(start)

	var runErr error
	switch {
	case ctx.Err() != nil:
		runErr = ctx.Err()
	case jerr != nil:
		runErr = jerr
	case tot.bad() > 0:
		runErr = fmt.Errorf("%s: %w", tot.problemWords(), exitcodes.ErrPartial)
	}
	tot.ExitCode = exitcodes.FromError(runErr)
	fr.printTotal(&tot, runErr)
	return runErr
}

// fleetRoots are the stores of a run, which no output may be inside.
func fleetRoots(items []*fleetItem) []string {
	var roots []string
	for _, it := range items {
		if !objstore.IsURL(it.Key) {
			roots = append(roots, it.Key)
		}
	}
	return roots
}

// skippedResult is a store the journal says is done.
func skippedResult(r journal.Record) fleetResult {
	return fleetResult{Status: statusSkipped, ExitCode: r.ExitCode, Err: r.Error, Fields: r.Fields,
		Started: r.Started, Finished: r.Finished, Recorded: r.Status,
		Words: fmt.Sprintf("done in the journal: %s (exit %d) at %s", r.Status, r.ExitCode, r.Finished.Local().Format(time.RFC3339))}
}

// fleetTotals counts the stores of a run.
type fleetTotals struct {
	Stores, OK, Problems, Failed, Interrupted, Skipped, SkippedBad, NotStarted int
	Warnings                                                                   []string
	ExitCode                                                                   int
	Elapsed                                                                    time.Duration
}

func (t *fleetTotals) add(r fleetResult) {
	t.Stores++
	switch r.Status {
	case journal.StatusOK:
		t.OK++
	case journal.StatusProblems:
		t.Problems++
	case journal.StatusInterrupted:
		t.Interrupted++
	case statusSkipped:
		t.Skipped++
		if r.Recorded != journal.StatusOK {
			t.SkippedBad++
		}
	default:
		t.Failed++
	}
}

// bad counts what makes the run partial.
func (t *fleetTotals) bad() int {
	return t.Problems + t.Failed + t.Interrupted + t.SkippedBad + len(t.Warnings)
}

func (t *fleetTotals) problemWords() string {
	var p []string
	if n := t.Problems + t.SkippedBad; n > 0 {
		p = append(p, fmt.Sprintf("%d store(s) with problems", n))
	}
	if t.Failed > 0 {
		p = append(p, fmt.Sprintf("%d store(s) could not be done", t.Failed))
	}
	if t.Interrupted > 0 {
		p = append(p, fmt.Sprintf("%d interrupted", t.Interrupted))
	}
	if n := len(t.Warnings); n > 0 {
		p = append(p, fmt.Sprintf("%d share warning(s)", n))
	}
	return strings.Join(p, ", ")
}

// fleetStoreJSON is the --json line for one store (docs/cli.md).
type fleetStoreJSON struct {
	Type     string         `json:"type"` // "store"
	Op       string         `json:"op"`
	Path     string         `json:"path"`
	Name     string         `json:"name"`
	Status   string         `json:"status"`
	Recorded string         `json:"recorded_status,omitempty"` // skipped: the journal's status
	ExitCode int            `json:"exit_code"`
	Error    string         `json:"error,omitempty"`
	Kind     string         `json:"kind,omitempty"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Fields   map[string]any `json:"fields"`
}

// fleetTotalJSON is the last --json line of a run over many stores.
type fleetTotalJSON struct {
	Type        string   `json:"type"` // "total"
	Op          string   `json:"op"`
	Stores      int      `json:"stores"`
	OK          int      `json:"ok"`
	Problems    int      `json:"problems"`
	Failed      int      `json:"failed"`
	Interrupted int      `json:"interrupted"`
	Skipped     int      `json:"skipped"`
	NotStarted  int      `json:"not_started"`
	Warnings    []string `json:"warnings"`
	ExitCode    int      `json:"exit_code"`
	Error       string   `json:"error,omitempty"`
	ElapsedMs   float64  `json:"elapsed_ms"`
}

var statusWords = map[string]string{journal.StatusOK: "OK", journal.StatusProblems: "PROBLEMS", journal.StatusFailed: "FAILED",
	journal.StatusInterrupted: "INTERRUPTED", statusSkipped: "SKIPPED"}

// printLine prints a store's one line (text) or object (--json). The
// caller holds the output lock.
func (fr *fleetRun) printLine(it *fleetItem, r fleetResult) {
	if fr.JSON {
		f := r.Fields
		if f == nil {
			f = map[string]any{}
		}
		b, _ := json.Marshal(fleetStoreJSON{Type: "store", Op: fr.Op, Path: it.Key, Name: it.Name, Status: r.Status, Recorded: r.Recorded,
			ExitCode: r.ExitCode, Error: r.Err, Kind: r.Kind, Started: r.Started.UTC(), Finished: r.Finished.UTC(), Fields: f})
		fmt.Fprintln(fr.g.Stdout, string(b))
		return
	}
	fmt.Fprintf(fr.g.Stdout, "%-11s %s  %s\n", statusWords[r.Status], it.Name, r.Words)
}

func (fr *fleetRun) printTotal(t *fleetTotals, runErr error) {
	w := fr.g.Stdout
	if fr.JSON {
		j := fleetTotalJSON{Type: "total", Op: fr.Op, Stores: t.Stores + t.NotStarted, OK: t.OK, Problems: t.Problems, Failed: t.Failed,
			Interrupted: t.Interrupted, Skipped: t.Skipped, NotStarted: t.NotStarted, Warnings: t.Warnings, ExitCode: t.ExitCode,
			ElapsedMs: float64(t.Elapsed.Microseconds()) / 1000}
		if j.Warnings == nil {
			j.Warnings = []string{}
		}
		if runErr != nil {
			j.Error = runErr.Error()
		}
		b, _ := json.Marshal(j)
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "total:      %d stores: %d OK, %d with problems, %d could not be done, %d interrupted, %d skipped (done in the journal), %d not started; %s\n",
		t.Stores+t.NotStarted, t.OK, t.Problems, t.Failed, t.Interrupted, t.Skipped, t.NotStarted, t.Elapsed.Round(time.Millisecond))
	for _, x := range t.Warnings {
		fmt.Fprintf(w, "WARNING:    %s\n", x)
	}
	switch {
	case errors.Is(runErr, context.Canceled):
		fmt.Fprintf(w, "result:     INTERRUPTED: %d stores were not done; run the same command again (with --journal it resumes)\n", t.NotStarted+t.Interrupted)
	case runErr != nil && !errors.Is(runErr, exitcodes.ErrPartial):
		fmt.Fprintf(w, "result:     STOPPED: %v\n", runErr)
	case runErr != nil:
		fmt.Fprintf(w, "result:     PROBLEMS FOUND: %s (see the lines above)\n", t.problemWords())
	default:
		fmt.Fprintf(w, "result:     OK: every store %s\n", map[string]string{"verify": "checked", "index": "indexed", "compress": "archived and read back"}[fr.Op])
	}
}

// groupBuf holds one store's output until the store is done: in memory up
// to a limit, then in a temporary file, so a store's --report all of
// millions of lines costs disk, not memory.
type groupBuf struct {
	mu  sync.Mutex
	mem bytes.Buffer
	f   *os.File
	err error
}

const groupBufMem = 1 << 20

func newGroupBuf() *groupBuf { return &groupBuf{} }

func (b *groupBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return 0, b.err
	}
	if b.f == nil && b.mem.Len()+len(p) <= groupBufMem {
		return b.mem.Write(p)
	}
	if b.f == nil {
		f, err := os.CreateTemp("", "usmtkit-fleet-*.out")
		if err != nil {
			b.err = fmt.Errorf("keeping a store's report aside: %w", err)
			return 0, b.err
		}
		os.Remove(f.Name()) // unnamed: gone when closed, whatever happens
		b.f = f
		if _, err := b.mem.WriteTo(f); err != nil {
			b.err = err
			return 0, err
		}
	}
	n, err := b.f.Write(p)
	if err != nil {
		b.err = err
	}
	return n, err
}

// WriteTo copies everything written, in order, to w.
func (b *groupBuf) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f == nil {
		return b.mem.WriteTo(w)
	}
	if _, err := b.f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, b.f)
}

func (b *groupBuf) Close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
}

// makeFleetDir makes dir, the folder a run over many stores writes one
// output per store into (what: "manifests", "archives"), after checking
// that it is no folder in any of the stores.
func makeFleetDir(dir, what string, items []*fleetItem) error {
	if err := manifest.CheckOutside(dir, fleetRoots(items)); err != nil {
		if errors.Is(err, manifest.ErrInsideStore) {
			return exitcodes.Usagef("refusing to write the " + what + ": " + err.Error())
		}
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating the folder for the %s %s: %w", what, dir, err)
	}
	return nil
}

// outputNames gives each store of a run over many the name of its output
// (a manifest in index's -o DIR, an archive under compress's -o PREFIX/):
// <store id><ext>, or <SMPSTORE folder>_<store id><ext> for a share
// member. Two stores of the run with one name are a usage error
// (docs/cli.md).
func outputNames(items []*fleetItem, ext string) (map[*fleetItem]string, error) {
	names := map[*fleetItem]string{}
	by := map[string][]string{}
	for _, it := range items {
		if it.Err != nil {
			continue
		}
		n := outputName(it, ext)
		names[it] = n
		by[n] = append(by[n], it.Name)
	}
	var clash []string
	for n, who := range by {
		if len(who) > 1 {
			clash = append(clash, fmt.Sprintf("%s (%s)", n, strings.Join(who, ", ")))
		}
	}
	if len(clash) > 0 {
		sort.Strings(clash)
		return nil, exitcodes.Usagef("two stores of this run would have the same output name: " + strings.Join(clash, "; ") + "; do them in separate runs with separate -o folders or prefixes")
	}
	return names, nil
}

func outputName(it *fleetItem, ext string) string {
	n := it.StoreID
	if it.Share != "" {
		n = it.Share + "_" + n
	}
	n = strings.ReplaceAll(n, "/", "_")
	if n == "" || n == "." || n == ".." {
		n = "store"
	}
	return n + ext
}
