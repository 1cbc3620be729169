package main

import (
	"context"
	"fmt"
	"github.com/usmtkit/usmtkit/objstore"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
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
entry into DEST (the store's own layout, as tar would) with its times and hard
links. Damaged entries (a data frame fails its checksum) and lost ones (their
header is gone) are listed; the run exits 3 when anything was lost. Use it
when "usmtkit info ARCHIVE" says the index is damaged or the file was cut
short; on a healthy archive it is a plain, checked extraction.

DEST is created if missing; nothing is written outside it, names with ".."
or absolute paths are refused, symlinks in DEST are never followed, and
existing files are not overwritten.

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
	Archive      string          `json:"archive"`
	Dest         string          `json:"dest"`
	IndexOK      bool            `json:"index_ok"`
	IndexError   string          `json:"index_error,omitempty"`
	Intact       int64           `json:"intact"`
	Damaged      []problemRecord `json:"damaged"`
	DamagedCount int64           `json:"damaged_count"`
	Lost         []problemRecord `json:"lost"`
	LostCount    int64           `json:"lost_count"`
	LostBytes    int64           `json:"lost_bytes"`
	Refused      []problemRecord `json:"refused"`
	RefusedCount int64           `json:"refused_count"`
	EndOfArchive bool            `json:"end_of_archive"`
}

func runSalvage(ctx context.Context, o *salvageOptions, args []string) error {
	if len(args) != 2 {
		return exitcodes.Usagef("salvage needs ARCHIVE and DEST")
	}
	archive, dest := args[0], args[1]
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
	m := o.meter("salvaging")
	res, err := compress.SalvageTo(ctx, archive, absDest)
	m.Done()
	if err != nil {
		return err
	}
	return o.finishSalvage(rep, res)
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
	m := o.meter("salvaging")
	res, err := compress.SalvageReaderAtTo(ctx, r, r.Size(), archive, absDest)
	m.Done()
	if err != nil {
		return err
	}
	return o.finishSalvage(rep, res)
}

// finishSalvage prints the report and returns its outcome.
func (o *salvageOptions) finishSalvage(rep *salvageReport, res *compress.SalvageReport) error {
	rep.Intact, rep.DamagedCount, rep.LostCount, rep.EndOfArchive = res.Intact, res.DamagedCount, res.LostCount, res.EndOfArchive
	for _, d := range res.Damaged {
		rep.Damaged = append(rep.Damaged, problemRecord{Path: d.Path, Error: errText(d.Err)})
	}
	for _, l := range res.Lost {
		rep.Lost = append(rep.Lost, problemRecord{Path: l.Path, Error: errText(l.Err)})
	}
	for _, r := range res.LostRanges {
		rep.LostBytes += r.Length
	}
	for _, r := range res.Refused {
		rep.Refused = append(rep.Refused, problemRecord{Path: r.Path, Error: errText(r.Err)})
	}
	rep.RefusedCount = res.RefusedCount
	if err := o.printSalvage(rep); err != nil {
		return err
	}
	bad := rep.DamagedCount + rep.LostCount + rep.RefusedCount
	if bad > 0 || rep.LostBytes > 0 || !rep.EndOfArchive || !rep.IndexOK {
		return fmt.Errorf("salvaged %d intact entries into %s; %d entries damaged, lost or refused (listed above): %w", rep.Intact, rep.Dest, bad, exitcodes.ErrPartial)
	}
	return nil
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
		for _, p := range []*[]problemRecord{&r.Damaged, &r.Lost, &r.Refused} {
			if *p == nil {
				*p = []problemRecord{}
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
	fmt.Fprintf(w, "recovered:   %d intact entries into %s\n", r.Intact, r.Dest)
	if !r.EndOfArchive {
		fmt.Fprintf(w, "TRUNCATED:   the archive ends before its end-of-archive marker\n")
	}
	if r.LostBytes > 0 {
		fmt.Fprintf(w, "unreadable:  %s of damaged or orphaned frames\n", progress.Bytes(r.LostBytes))
	}
	for _, l := range []struct {
		what  string
		n     int64
		items []problemRecord
	}{{"DAMAGED", r.DamagedCount, r.Damaged}, {"LOST", r.LostCount, r.Lost}, {"REFUSED", r.RefusedCount, r.Refused}} {
		if l.n == 0 {
			continue
		}
		fmt.Fprintf(w, "%-12s %d\n", l.what+":", l.n)
		for _, p := range l.items {
			if p.Error != "" {
				fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Error)
			} else {
				fmt.Fprintf(w, "  %s\n", p.Path)
			}
		}
	}
	return nil
}
