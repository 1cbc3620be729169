package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/extract"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/objstore"
)

type salvageOptions struct {
	globalOptions
	JSON bool
}

func init() {
	register(&cli.Command{
		Name:      "salvage",
		Usage:     "recover every intact entry of a damaged or truncated archive",
		ArgsUsage: "ARCHIVE DEST",
		Description: `Walks the archive frame by frame without trusting its table of contents,
resynchronises at the next entry after any damage, and writes every intact
entry into DEST (the store's own layout) with its times and hard links,
through extract's writer. Damaged entries (a data frame fails its checksum)
and lost ones (their header is gone) are listed; the readable part of a
damaged file is kept as NAME.usmtkit-damaged. The run exits 3 when anything
was lost or not written. Use it when "usmtkit info ARCHIVE" says the index
is damaged or the file was cut short; on a healthy archive it is a plain,
checked extraction.

DEST is created if missing. As with extract: nothing is written outside it,
names with ".." or absolute paths are refused, symlinks in DEST are never
followed and none is created, existing files are never overwritten or
deleted, names a Windows-rule target (FAT, exFAT, NTFS, SMB) rejects are
escaped and names over 255 bytes shortened (listed as escaped), and every
entry that cannot be written is listed while the walk goes on. Only a DEST
that is full, read-only or failing stops it.

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "a JSON summary on stdout"},
		},
		Action: func(c *cli.Context) error {
			o := &salvageOptions{globalOptions: *globalsOf(c), JSON: c.Bool("json")}
			return runSalvage(c.Context, o, c.Args().Slice())
		},
	})
}

// salvageReport is the --json shape of salvage (docs/cli.md).
type salvageReport struct {
	Archive        string          `json:"archive"`
	Dest           string          `json:"dest"`
	IndexOK        bool            `json:"index_ok"`
	IndexError     string          `json:"index_error,omitempty"`
	Names          string          `json:"names"`
	TargetFS       string          `json:"target_fs,omitempty"`
	Intact         int64           `json:"intact"`
	Damaged        []salvageRecord `json:"damaged"`
	DamagedCount   int64           `json:"damaged_count"`
	Lost           []salvageRecord `json:"lost"`
	LostCount      int64           `json:"lost_count"`
	LostBytes      int64           `json:"lost_bytes"`
	Refused        []salvageRecord `json:"refused"`
	RefusedCount   int64           `json:"refused_count"`
	Escaped        []salvageRename `json:"escaped"`
	EscapedCount   int64           `json:"escaped_count"`
	Collisions     []salvageRename `json:"collisions"`
	CollisionCount int64           `json:"collision_count"`
	Skipped        []salvageRecord `json:"skipped"`
	SkippedCount   int64           `json:"skipped_count"`
	EndOfArchive   bool            `json:"end_of_archive"`
}

// salvageRecord is one entry of a salvage list.
type salvageRecord struct {
	Path  string `json:"store_path"`
	Error string `json:"error"`
	Kept  string `json:"kept,omitempty"` // damaged: the DEST-relative NAME.usmtkit-damaged holding the readable part
}

// salvageRename is an entry written under another name than its own.
type salvageRename struct {
	Path    string `json:"store_path"`
	Written string `json:"written"` // slash path below DEST
}

func runSalvage(ctx context.Context, o *salvageOptions, args []string) error {
	if len(args) != 2 {
		return exitcodes.Usagef("salvage needs ARCHIVE and DEST")
	}
	archive, dest := args[0], args[1]
	if objstore.IsPrefix(archive) {
		return prefixDetectError(archive)
	}
	if objstore.IsURL(archive) {
		return runSalvageObject(ctx, o, archive, dest)
	}
	fi, err := os.Stat(archive)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", errNoArchive, archive, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w at %s: it is not a file", errNoArchive, archive)
	}
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	rep := &salvageReport{Archive: archive, Dest: absDest, IndexOK: true}
	if a, err := compress.Open(archive, compress.ReaderOptions{}); err != nil {
		rep.IndexOK, rep.IndexError = false, err.Error()
	} else {
		a.Close()
	}
	return o.salvage(ctx, rep, archive, func(fn func(*compress.SalvagedEntry, io.Reader) error) (*compress.SalvageReport, error) {
		return compress.Salvage(ctx, archive, fn)
	})
}

// runSalvageObject salvages an archive in a bucket (s3://BUCKET/KEY).
func runSalvageObject(ctx context.Context, o *salvageOptions, archive, dest string) error {
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	r, err := openObject(ctx, archive)
	if err != nil {
		return fmt.Errorf("salvaging archive %w", err)
	}
	defer r.Close()
	rep := &salvageReport{Archive: archive, Dest: absDest, IndexOK: true}
	if _, err := compress.OpenReaderAt(r, r.Size(), archive, nil, compress.ReaderOptions{}); err != nil {
		rep.IndexOK, rep.IndexError = false, err.Error()
	}
	return o.salvage(ctx, rep, "", func(fn func(*compress.SalvagedEntry, io.Reader) error) (*compress.SalvageReport, error) {
		return compress.SalvageReaderAt(ctx, r, r.Size(), archive, fn)
	})
}

// salvage runs the archive walk into extract's writer, prints the report
// and returns its outcome. localArchive is the archive's path when it is
// a file (DEST may not be inside it).
func (o *salvageOptions) salvage(ctx context.Context, rep *salvageReport, localArchive string, walk extract.SalvageWalk) error {
	var m *progress.Meter
	notice := func(kind, path, msg string) {
		if o.Quiet && (kind == "escaped" || kind == "collision") {
			return
		}
		m.Done()
		printNotice(o.Stderr, kind, path, msg)
	}
	m = o.meter("salvaging")
	res, err := extract.Salvage(ctx, walk, extract.SalvageOptions{Dest: rep.Dest, Archive: localArchive,
		Notice: notice, Progress: func(files, bytes int64) { m.Add(files, bytes) }})
	m.Done()
	var ue *extract.UsageError
	if errors.As(err, &ue) {
		return exitcodes.Usagef(ue.Msg)
	}
	if res == nil || res.Walk == nil {
		if err == nil {
			err = fmt.Errorf("salvaging into %s: nothing was walked", rep.Dest)
		}
		return err
	}
	o.fillSalvage(rep, res)
	if perr := o.printSalvage(rep); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err // DEST failed (full, read-only) or interrupted: the report above is partial
	}
	bad := rep.DamagedCount + rep.LostCount + rep.RefusedCount
	if bad > 0 || rep.LostBytes > 0 || !rep.EndOfArchive || !rep.IndexOK {
		return fmt.Errorf("salvaged %d intact entries into %s; %d entries damaged, lost or not written (listed above): %w", rep.Intact, rep.Dest, bad, exitcodes.ErrPartial)
	}
	return nil
}

// fillSalvage copies what the walk and the writer did into the report.
func (o *salvageOptions) fillSalvage(rep *salvageReport, res *extract.SalvageResult) {
	w := res.Walk
	rep.Names, rep.TargetFS = res.Names, res.Target
	rep.Intact, rep.DamagedCount, rep.LostCount, rep.EndOfArchive = res.Intact, w.DamagedCount, w.LostCount, w.EndOfArchive
	for _, d := range w.Damaged {
		rep.Damaged = append(rep.Damaged, salvageRecord{Path: d.Path, Error: errText(d.Err), Kept: res.Kept[d.Path]})
	}
	for _, l := range w.Lost {
		rep.Lost = append(rep.Lost, salvageRecord{Path: l.Path, Error: errText(l.Err)})
	}
	for _, r := range w.LostRanges {
		rep.LostBytes += r.Length
	}
	for _, l := range [][]extract.Problem{res.Refused, res.Conflicts, res.Failed} {
		for _, p := range l {
			rep.Refused = append(rep.Refused, salvageRecord{Path: p.Path, Error: p.Error})
		}
	}
	rep.RefusedCount = res.NotWritten()
	for _, e := range res.Escaped {
		rep.Escaped = append(rep.Escaped, salvageRename{Path: e.Path, Written: e.Written})
	}
	for _, c := range res.Collisions {
		rep.Collisions = append(rep.Collisions, salvageRename{Path: c.Path, Written: c.Written})
	}
	rep.EscapedCount, rep.CollisionCount = res.EscapedCount, res.CollisionCount
	for _, s := range res.Skipped {
		rep.Skipped = append(rep.Skipped, salvageRecord{Path: s.Path, Error: s.Error})
	}
	rep.SkippedCount = res.SkippedCount
}

// errNoArchive: salvage was not given an archive file.
var errNoArchive = fmt.Errorf("no archive found")

// errText is err's message, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (o *salvageOptions) printSalvage(r *salvageReport) error {
	if o.JSON {
		for _, p := range []*[]salvageRecord{&r.Damaged, &r.Lost, &r.Refused, &r.Skipped} {
			if *p == nil {
				*p = []salvageRecord{}
			}
		}
		for _, p := range []*[]salvageRename{&r.Escaped, &r.Collisions} {
			if *p == nil {
				*p = []salvageRename{}
			}
		}
		return writeJSON(o.Stdout, r)
	}
	w := o.Stdout
	fmt.Fprintf(w, "archive:     %s\n", r.Archive)
	if r.IndexOK {
		fmt.Fprintf(w, "index:       intact\n")
	} else {
		fmt.Fprintf(w, "index:       DAMAGED (%s); recovered by walking the frames\n", r.IndexError)
	}
	fmt.Fprintf(w, "recovered:   %d intact entries into %s (names %s)\n", r.Intact, r.Dest, r.Names)
	if !r.EndOfArchive {
		fmt.Fprintf(w, "TRUNCATED:   the archive ends before its end-of-archive marker\n")
	}
	if r.LostBytes > 0 {
		fmt.Fprintf(w, "unreadable:  %s of damaged or orphaned frames\n", progress.Bytes(r.LostBytes))
	}
	for _, l := range []struct {
		what  string
		n     int64
		items []salvageRename
	}{{"escaped:", r.EscapedCount, r.Escaped}, {"collisions:", r.CollisionCount, r.Collisions}} {
		if l.n == 0 {
			continue
		}
		fmt.Fprintf(w, "%-12s %d written under another name (see docs/extract.md, names)\n", l.what, l.n)
		for _, p := range l.items {
			fmt.Fprintf(w, "  %s -> %s\n", p.Path, p.Written)
		}
	}
	for _, l := range []struct {
		what  string
		n     int64
		items []salvageRecord
	}{{"DAMAGED", r.DamagedCount, r.Damaged}, {"LOST", r.LostCount, r.Lost}, {"NOT WRITTEN", r.RefusedCount, r.Refused}, {"skipped", r.SkippedCount, r.Skipped}} {
		if l.n == 0 {
			continue
		}
		fmt.Fprintf(w, "%-12s %d\n", l.what+":", l.n)
		for _, p := range l.items {
			line := "  " + p.Path
			if p.Error != "" {
				line += ": " + p.Error
			}
			if p.Kept != "" {
				line += " (readable part kept as " + p.Kept + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
	return nil
}

// printNotice prints one of the writer's per-file notices (extract and
// salvage): an escaped name, a case collision, or a file not written.
func printNotice(w io.Writer, kind, path, msg string) {
	switch kind {
	case "escaped":
		fmt.Fprintf(w, "usmtkit: name escaped: %s: %s\n", path, msg)
	case "collision":
		fmt.Fprintf(w, "usmtkit: case collision: %s %s\n", path, msg)
	default:
		fmt.Fprintf(w, "usmtkit: %s: %s\n", kind, msg)
	}
}
