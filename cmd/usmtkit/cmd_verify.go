package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/internal/verify"
	"github.com/usmtkit/usmtkit/store"
)

type verifyOptions struct {
	globalOptions
	Manifest string
	Level    string
	Report   string // summary, all, failureonly, catalog; "" = summary (text) or all (--json)
	JSON     bool
	Log      string
	Threads  int
	Plain    bool
	// ListFiles is ScanState's /listfiles output: every file it lists must
	// be in the store (listfiles.go).
	ListFiles string
	fleetFlags
	// inFleet: this store is one of many (fleet.go); its text summary is the
	// fleet's one line, and notes go to its own grouped stderr.
	inFleet bool
}

func init() {
	register(&cli.Command{
		Name:      "verify",
		Usage:     "check a store against its manifest, or check that it is readable and consistent",
		ArgsUsage: "STORE [STORE...] [--manifest MANIFEST] | SHARE... | --from FILE",
		Description: `With --manifest (written by usmtkit index), every entry is compared with the
manifest: OK, MISSING, EXTRA, CHANGED (size, modified time or type differ),
CORRUPTED (content hash differs with the same size and time) or UNREADABLE;
the control files (catalog.mig, migstate.dat) are checked the same way. Without
a manifest, a structural check: every file readable end to end, hard-link
groups consistent, catalog.mig present in USMT layouts.

An archive (usmtkit compress) checks itself: its footer and TOC when it is
opened, and at the data level every header frame and every chunk's zstd and
xxhash64 checksums; a damaged chunk makes its file CORRUPTED, naming the
chunk. A manifest of the source folder store applies to its archive. When the
archive's footer or TOC is damaged, verify runs the salvage walk instead, says
so, and exits 3 even if every file comes back intact.

Levels (--level): structure = metadata only, no content read; data (default) =
also read and hash every file. The report always names the level that ran.

Reports (--report), as usmtutils /verify: summary (default: the damaged files
and the counts), all (one "<path><TAB><STATUS>" line per file, then
"CATALOG<TAB><STATUS>"), failureonly (only the lines not OK), catalog (only the
CATALOG line). With all, failureonly and catalog the summary goes to stderr.
--json prints one object per file (all files unless --report failureonly,
summary or catalog) and a final summary object, printed even when the run is
interrupted. --log FILE also writes the full per-file report to FILE.

--listfiles LOG takes the file ScanState /listfiles wrote (one Windows path per
line; UTF-16 or UTF-8, with or without a BOM): every file it lists that is not
in the store is MISSING.

Many stores at once: a share copy, an s3://BUCKET/PREFIX/ (every archive under
it), --from FILE (one store path per line), or several STOREs with --each are
verified --jobs at a time, each with its own report and one summary line, then
a total; --journal FILE records each store when it is done so a re-run skips
it (unless --redo). With --manifest DIR
(written by index -o DIR over the same stores) each store is checked against
its own manifest. Several STOREs without --each are the volumes of one store.

Examples:
   usmtkit verify /mnt/c/USMTMIG --manifest /root/jdoe.manifest
   usmtkit verify /mnt/c/USMTMIG --listfiles /root/scanstate-files.txt
   usmtkit verify /srv/share-copy --jobs 4 --journal /root/share.journal
   usmtkit verify /mnt/c/USMTMIG --manifest m --report failureonly --log /root/verify.log
   usmtkit verify /media/usb/store --level structure --json
   usmtkit verify /srv/stores/PC042.tar.zst --manifest /root/jdoe.manifest

` + exitcodes.Table,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "manifest", Aliases: []string{"m"}, Usage: "the manifest to check against (from usmtkit index); over many stores, the folder index -o wrote"},
			&cli.StringFlag{Name: "level", Value: string(verify.LevelData), Usage: "structure (metadata only) or data (read and hash every file)"},
			&cli.StringFlag{Name: "report", Usage: "summary, all, failureonly or catalog (default summary; all under --json)"},
			&cli.BoolFlag{Name: "json", Usage: "NDJSON on stdout: one object per file, then a summary object"},
			&cli.StringFlag{Name: "log", Usage: "also write the full per-file report to this file (outside the store)"},
			&cli.IntFlag{Name: "threads", Value: manifest.DefaultThreads, Usage: "files read in parallel"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
			&cli.StringFlag{Name: "listfiles", Usage: "ScanState's /listfiles `LOG`: every file listed must be in the store (MISSING otherwise)"},
		}, fleetCLIFlags()...),
		Action: func(c *cli.Context) error {
			o := &verifyOptions{globalOptions: *globalsOf(c), Manifest: c.String("manifest"), Level: c.String("level"),
				Report: c.String("report"), JSON: c.Bool("json"), Log: c.String("log"), Threads: c.Int("threads"), Plain: c.Bool("plain"),
				ListFiles: c.String("listfiles"), fleetFlags: fleetFlagsOf(c)}
			return runVerify(c.Context, o, c.Args().Slice())
		},
	})
}

// verifyFileJSON is one --json line per file (docs/verify.md).
type verifyFileJSON struct {
	Type         string `json:"type"` // "file"
	Path         string `json:"path"` // Windows path when the entry has one, else the store path
	StorePath    string `json:"store_path"`
	StorePathB64 string `json:"store_path_b64,omitempty"`
	Kind         string `json:"kind"` // file, dir, symlink, other
	Control      bool   `json:"control,omitempty"`
	Status       string `json:"status"`
	Detail       string `json:"detail,omitempty"`
	EFS          bool   `json:"efs,omitempty"`  // NTFS-encrypted: raw EFS data
	Note         string `json:"note,omitempty"` // store.EFSNote when efs
}

// verifySummaryJSON is the final --json line (docs/verify.md).
type verifySummaryJSON struct {
	Type string `json:"type"` // "summary"
	*verify.Summary
	Store       []string `json:"store"`
	Kind        string   `json:"kind"`
	Manifest    string   `json:"manifest,omitempty"`
	Damaged     int64    `json:"damaged"`
	Interrupted bool     `json:"interrupted"`
	Error       string   `json:"error,omitempty"`
	ExitCode    int      `json:"exit_code"`
	ElapsedMs   float64  `json:"elapsed_ms"`
	// ListFiles is the --listfiles check (listfiles.go), when asked.
	ListFiles *listFilesSummary `json:"listfiles,omitempty"`
}

// verifyOutcome is what one store's verify found, for the fleet line and
// the journal (fleet_verify.go). Sum is nil when nothing was checked.
type verifyOutcome struct {
	Sum       *verify.Summary
	Info      *store.Info
	MIG       *migVerifySummary
	ListFiles *listFilesSummary
}

func runVerify(ctx context.Context, o *verifyOptions, args []string) error {
	if len(args) == 0 && o.From == "" {
		return exitcodes.Usagef("verify needs at least one STORE path (or --from FILE)")
	}
	level, lerr := verify.ParseLevel(o.Level)
	if lerr != nil {
		return exitcodes.Usagef(lerr.Error())
	}
	report := o.Report
	switch report {
	case "":
		report = "summary"
		if o.JSON {
			report = "all"
		}
	case "summary", "all", "failureonly", "catalog":
	default:
		return exitcodes.Usagef(fmt.Sprintf("unknown --report %q: use summary, all, failureonly or catalog", report))
	}
	if o.Threads < 1 || o.Threads > 256 {
		return exitcodes.Usagef(fmt.Sprintf("--threads must be between 1 and 256, not %d", o.Threads))
	}
	ds, fleet, err := fleetWanted(&o.fleetFlags, args, o.Plain)
	if err != nil {
		return err
	}
	if fleet {
		return runVerifyFleet(ctx, o, args, level, report)
	}
	_, err = verifyStore(ctx, o, args, ds, level, report)
	return err
}

// verifyStore verifies one store (the volumes of one store) and prints its
// report. ds is what detection found at args, or nil to detect here.
func verifyStore(ctx context.Context, o *verifyOptions, args []string, ds []*store.Detection, level verify.Level, report string) (res *verifyOutcome, err error) {
	res = &verifyOutcome{}
	// From here on, --json always ends with a summary object, even when
	// nothing could be checked.
	early := func(err error) (*verifyOutcome, error) {
		if o.JSON && err != nil {
			b, _ := json.Marshal(verifySummaryJSON{Type: "summary", Summary: &verify.Summary{Level: level, Check: checkKind(o.Manifest)},
				Store: args, Manifest: o.Manifest, Interrupted: errors.Is(err, context.Canceled), Error: err.Error(),
				ExitCode: exitcodes.FromError(err)})
			fmt.Fprintln(o.Stdout, string(b))
		}
		return res, err
	}
	if ds == nil {
		if ds, err = detectAll(args, o.Plain); err != nil {
			return early(err)
		}
	}
	if len(ds) == 1 && ds[0].Kind == store.KindMIG && ds[0].MIG != nil {
		if o.ListFiles != "" {
			return early(exitcodes.Usagef("--listfiles needs a store whose files usmtkit can list; a USMT.MIG's file records are not readable (verify it without --listfiles)"))
		}
		res.MIG, err = runVerifyMIG(ctx, o, ds[0], report)
		return res, err
	}
	var lf *listFile
	if o.ListFiles != "" {
		if lf, err = openListFile(o.ListFiles); err != nil {
			return early(err)
		}
		defer lf.Close()
	}
	var info *store.Info
	// salvage is set when the store is an archive whose footer or TOC is
	// damaged: it is checked by the salvage walk instead (docs/verify.md).
	var salvage error
	s, err := openStore(&o.globalOptions, ds)
	switch {
	case err == nil:
		defer s.Close()
		info = s.Info()
	case len(ds) == 1 && ds[0].Kind == store.KindArchive && verify.IndexDamaged(err):
		salvage = err
		info = &store.Info{Kind: store.KindArchive, Input: []string{ds[0].Input}, Roots: []string{ds[0].Root}}
		o.notef("usmtkit: note: %s (%v)", verify.SalvageNotice, err)
	default:
		return early(err)
	}
	res.Info = info
	for _, n := range info.Notes {
		o.notef("usmtkit: note: %s", n)
	}

	var mr *manifest.Reader
	if o.Manifest != "" {
		mr, err = manifest.Open(o.Manifest)
		if err != nil {
			return early(err) // damaged manifest: tool failure (exit 1), nothing was checked
		}
		defer mr.Close()
		if k := mr.Header.Store.Kind; k != string(info.Kind) && salvage == nil && !archiveOf(s, k) {
			o.notef("usmtkit: note: the manifest was made from a %s store; this is a %s store", k, info.Kind)
		}
	}

	var logw *bufio.Writer
	if o.Log != "" {
		if err := manifest.CheckOutside(o.Log, append(append([]string{}, info.Roots...), info.Input...)); err != nil {
			if errors.Is(err, manifest.ErrInsideStore) {
				return early(exitcodes.Usagef("refusing to write the log: " + err.Error()))
			}
			return early(err)
		}
		if o.Manifest != "" && sameFile(o.Log, o.Manifest) {
			return early(exitcodes.Usagef(fmt.Sprintf("--log %s is the manifest itself; choose another log file", o.Log)))
		}
		// Written beside and renamed over: an existing log is replaced, never
		// written into (it could be a hard link to a store file).
		lf, err := safeio.CreateAtomic(o.Log, 0o644, true)
		if err != nil {
			return early(fmt.Errorf("creating the log %s: %w", o.Log, err))
		}
		logw = bufio.NewWriter(lf)
		defer func() {
			ferr := logw.Flush()
			if ferr == nil {
				ferr = lf.Commit()
			} else {
				lf.Abort()
			}
			if ferr != nil && err == nil {
				err = fmt.Errorf("writing the log %s: %w", o.Log, ferr)
			}
		}()
	}

	out := bufio.NewWriter(o.Stdout)
	defer out.Flush()
	m := o.meter("verifying")
	if o.Progress && salvage == nil {
		if sum, err := store.Summarize(ctx, s, nil); err == nil {
			var b int64
			if level == verify.LevelData {
				b = sum.BytesUnique
			}
			m.SetTotal(sum.Files+sum.Dirs+sum.Symlinks+sum.Others, b)
		}
	}

	emit := func(r *verify.Result) error {
		m.Add(1, 0)
		line := r.Name() + "\t" + string(r.Status)
		if logw != nil && (r.Type != "dir" || r.Status != verify.OK) {
			fmt.Fprintf(logw, "%s\n", line)
		}
		if r.Type == "dir" && r.Status == verify.OK {
			return nil
		}
		if r.EFS {
			efsNote(&o.globalOptions, r.Name())
		}
		show := report == "all" || (r.Status != verify.OK && (report == "failureonly" || report == "summary"))
		if !show {
			return nil
		}
		if o.JSON {
			j := verifyFileJSON{Type: "file", Path: r.Name(), StorePath: r.StorePath, Kind: r.Type, Control: r.Control,
				Status: string(r.Status), Detail: r.Detail, EFS: r.EFS}
			if r.EFS {
				j.Note = store.EFSNote
			}
			if !utf8.ValidString(r.StorePath) {
				j.StorePathB64 = base64.StdEncoding.EncodeToString([]byte(r.StorePath))
			}
			b, _ := json.Marshal(j)
			out.Write(append(b, '\n'))
		} else if report == "summary" {
			fmt.Fprintf(out, "%-10s %s: %s\n", r.Status, r.Name(), r.Detail)
		} else {
			fmt.Fprintln(out, line)
		}
		return nil
	}

	start := time.Now()
	vo := verify.Options{Level: level, Manifest: mr, Threads: o.Threads, ReadBytes: func(n int64) { m.Add(0, n) }}
	var sum *verify.Summary
	var runErr error
	if salvage != nil {
		sum, runErr = runVerifySalvage(ctx, ds[0].Root, salvage, vo, emit)
		if sum == nil {
			return res, runErr // the archive could not be opened again
		}
	} else {
		sum, runErr = verify.Run(ctx, s, vo, emit)
	}
	if lf != nil && runErr == nil {
		res.ListFiles, runErr = checkListFile(ctx, lf, s, sum, emit)
	}
	m.Done()
	elapsed := time.Since(start)
	res.Sum = sum

	// The result error decides the exit status; the summary below is
	// printed whatever happened.
	resErr := runErr
	if resErr == nil && sum.Problems() > 0 {
		resErr = fmt.Errorf("%s: %w", problemWords(sum), exitcodes.ErrPartial)
	}
	code := exitcodes.FromError(resErr)

	catLine := "CATALOG\t" + string(sum.Catalog)
	if logw != nil {
		fmt.Fprintln(logw, catLine)
		writeSummaryText(logw, sum, info, o.Manifest, elapsed, runErr, res.ListFiles)
	}
	if o.JSON {
		if report == "all" || report == "catalog" || (report == "failureonly" && sum.Catalog != verify.OK && sum.Catalog != verify.CatalogNone) {
			b, _ := json.Marshal(verifyFileJSON{Type: "catalog", Path: "CATALOG", StorePath: "", Kind: "catalog",
				Status: string(sum.Catalog), Detail: sum.CatalogD})
			out.Write(append(b, '\n'))
		}
		j := verifySummaryJSON{Type: "summary", Summary: sum, Store: info.Roots, Kind: string(info.Kind), Manifest: o.Manifest,
			Damaged: sum.Damaged(), Interrupted: errors.Is(runErr, context.Canceled), ExitCode: code,
			ElapsedMs: float64(elapsed.Microseconds()) / 1000, ListFiles: res.ListFiles}
		if runErr != nil {
			j.Error = runErr.Error()
		}
		b, _ := json.Marshal(j)
		out.Write(append(b, '\n'))
	} else {
		switch report {
		case "all", "catalog":
			fmt.Fprintln(out, catLine)
		case "failureonly":
			if sum.Catalog != verify.OK && sum.Catalog != verify.CatalogNone {
				fmt.Fprintln(out, catLine)
			}
		}
		var sw io.Writer = out
		if report != "summary" {
			out.Flush()
			sw = o.Stderr
		}
		if o.inFleet {
			// The fleet prints one line for the store (fleet_verify.go);
			// what that line cannot hold goes with the store's notes.
			for _, n := range sum.Notes {
				o.notef("usmtkit: note: %s", n)
			}
		} else {
			writeSummaryText(sw, sum, info, o.Manifest, elapsed, runErr, res.ListFiles)
		}
	}
	if ferr := out.Flush(); ferr != nil && resErr == nil {
		return res, fmt.Errorf("writing the report: %w", ferr)
	}
	return res, resErr
}

// archiveOf reports whether s is an archive made from a store of kind k
// (a manifest of the source store applies to its archive unchanged).
func archiveOf(s store.Store, k string) bool {
	a, ok := s.(interface{ SourceKind() store.Kind })
	return ok && string(a.SourceKind()) == k
}

func checkKind(manifestPath string) string {
	if manifestPath != "" {
		return "manifest"
	}
	return "structure"
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	if err1 == nil && err2 == nil {
		return os.SameFile(fa, fb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

// levelWhat says what the level that ran checked.
func levelWhat(s *verify.Summary) string {
	data := s.Level == verify.LevelData
	compared := s.Check == "manifest" && s.Hashes && data
	switch s.Archive {
	case verify.ArchiveIndex:
		var p []string
		p = append(p, "footer and TOC validated")
		if s.HeadersChecked {
			p = append(p, "every tar header frame checked")
		}
		if s.ChunksChecked {
			p = append(p, "every chunk's zstd and xxhash64 checksums checked")
		}
		if compared {
			p = append(p, "every file read back and its xxh64 compared")
		}
		if !data {
			p = append(p, "no file data read")
		}
		return strings.Join(p, ", ")
	case verify.ArchiveSalvage:
		w := "the archive's index is damaged: salvage walk, every frame decoded and its zstd checksum checked"
		if compared {
			w += ", every file's xxh64 compared"
		}
		return w
	}
	if !data {
		return "metadata only, no content read"
	}
	if compared {
		return "every file read end to end and its xxh64 compared"
	}
	return "every file read end to end"
}

func problemWords(s *verify.Summary) string {
	var p []string
	add := func(n int64, w string) {
		if n > 0 {
			p = append(p, fmt.Sprintf("%d %s", n, w))
		}
	}
	add(s.Corrupt, "corrupted")
	add(s.Changed, "changed")
	add(s.Missing, "missing")
	add(s.Unread, "unreadable")
	add(s.Extra, "extra")
	add(s.Skipped, "not checked")
	if n := len(s.StoreErrors); n == 1 {
		p = append(p, "1 archive-level problem")
	} else if n > 1 {
		p = append(p, fmt.Sprintf("%d archive-level problems", n))
	}
	if n := len(s.MissingData); n > 0 {
		p = append(p, fmt.Sprintf("%d missing-data problem(s) (%s)", n, strings.Join(s.MissingData, "; ")))
	}
	if s.Catalog != verify.OK && s.Catalog != verify.CatalogNone {
		p = append(p, "catalog "+strings.ToLower(string(s.Catalog)))
	}
	return "verify found problems: " + strings.Join(p, ", ")
}

// writeSummaryText prints the human summary: the level that ran, the
// counts of OK, damaged and skipped files, the catalog, and the verdict.
func writeSummaryText(w io.Writer, s *verify.Summary, info *store.Info, manifestPath string, elapsed time.Duration, runErr error, lf *listFilesSummary) {
	against := "structural check (no manifest)"
	if s.Check == "manifest" {
		against = "against manifest " + manifestPath
		if !s.Hashes {
			against += " (no content hashes)"
		}
	}
	fmt.Fprintf(w, "level:      %s (%s), %s\n", s.Level, levelWhat(s), against)
	fmt.Fprintf(w, "store:      %s (%s)\n", strings.Join(info.Roots, ", "), info.Kind)
	fmt.Fprintf(w, "files:      %d checked: %d OK, %d damaged (%d corrupted, %d changed, %d missing), %d unreadable, %d extra, %d skipped\n",
		s.Files, s.OKCount, s.Damaged(), s.Corrupt, s.Changed, s.Missing, s.Unread, s.Extra, s.Skipped)
	if s.EFS > 0 {
		fmt.Fprintf(w, "EFS:        %s\n", efsWords(s.EFS))
	}
	if s.Level == verify.LevelData || s.Archive == verify.ArchiveSalvage {
		word := "read:       "
		if s.Archive != "" {
			word = "checked:    " // an archive's bytes are decoded and checked, not only read
		}
		fmt.Fprintf(w, "%s%s in %s\n", word, progress.Bytes(s.Bytes), elapsed.Round(time.Millisecond))
	}
	if g := s.Salvage; g != nil {
		toc, eoa := "no intact TOC copy found", "no end-of-archive marker (cut short)"
		if g.TOCFound {
			toc = "an intact TOC copy found"
		}
		if g.EndOfArchive {
			eoa = "end-of-archive marker found"
		}
		fmt.Fprintf(w, "salvage:    %d entries intact, %d damaged, %d lost; %s; %s\n", g.Intact, g.Damaged, g.Lost, toc, eoa)
	}
	cat := string(s.Catalog)
	if s.CatalogD != "" {
		cat += ": " + s.CatalogD
	}
	fmt.Fprintf(w, "catalog:    %s\n", cat)
	for _, e := range s.StoreErrors {
		fmt.Fprintf(w, "damage:     %s\n", e)
	}
	for _, e := range s.MissingData {
		fmt.Fprintf(w, "MISSING:    %s\n", e)
	}
	if lf != nil {
		fmt.Fprintf(w, "listfiles:  %s\n", lf.words())
	}
	for _, n := range s.Notes {
		fmt.Fprintf(w, "note:       %s\n", n)
	}
	switch {
	case errors.Is(runErr, context.Canceled):
		fmt.Fprintf(w, "result:     INTERRUPTED: the counts above cover only what was checked before the stop\n")
	case runErr != nil:
		fmt.Fprintf(w, "result:     STOPPED: %v; the counts above cover only what was checked\n", runErr)
	case s.Problems() > 0:
		fmt.Fprintf(w, "result:     PROBLEMS FOUND: %s\n", strings.TrimPrefix(problemWords(s), "verify found problems: "))
	default:
		fmt.Fprintf(w, "result:     OK: every file checked at the %s level%s\n", s.Level, efsAside(s.EFS))
	}
}
