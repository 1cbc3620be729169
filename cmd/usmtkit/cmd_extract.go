package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/extract"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/store"
)

type extractOptions struct {
	globalOptions
	Include      []string
	Exclude      []string
	User         string
	Drive        string
	DryRun       bool
	MapUser      []string // OLD=NEW
	MapDrive     []string // FROM=TO
	Layout       string
	Names        string
	Overwrite    bool
	SkipExisting bool
	Hardlinks    string
	Continue     bool
	JSON         bool
	Plain        bool
	StoreID      string
	// ExperimentalMIG reads a USMT.MIG's File records (cmd_mig_experimental.go).
	ExperimentalMIG bool
	mig             *store.MIGStore
}

func init() {
	register(&cli.Command{
		Name:      "extract",
		Usage:     "copy a user's files out of a store, selectively and safely",
		ArgsUsage: "STORE [STORE...] DEST",
		Description: `Copies the files of a store into the folder DEST, one file at a time (no
staging copy), from any store usmtkit reads: uncompressed and hard-link stores
(several STOREs are the volumes of one multi-volume store), USMT 3 layouts,
plain folders, usmtkit archives, and one store of a state migration point
share copy (--store-id, or give SHARE/SMPSTORE_x$/ID itself). The store is
never written to. Full rules: docs/extract.md.

SELECTION (case-insensitive, Windows wildcards * and ?, ** for any folders):
   A pattern without \ (*.pst, AppData) matches the name of the file or of any
   folder above it. A pattern with \ (C:\Users\jdoe\Documents\*) matches the
   Windows path of the file or of any folder above it; a pattern that names a
   folder selects everything below it. Several patterns may share one value:
   --include "*.docx;*.xlsx" or "*.docx,*.xlsx" (as usmtutils /i: and /e:).
   INCLUDE WINS: when a file matches both an --include and an --exclude
   pattern it is extracted (usmtutils' rule: --include myProject.*
   --exclude *.exe still extracts myProject.exe). With --include, files
   that match no include pattern are skipped. --user and --drive restrict
   everything further. --dry-run prints every decision and the pattern
   that made it, and writes nothing.

LAYOUT:
   windows (default): DEST/C/Users/jdoe/Documents/... (drive letter folders).
   store: DEST/USMT/File/C$/... plus catalog.mig and migstate.dat: the result
   is again a store LoadState can use.

SAFETY:
   Nothing is written outside DEST and no symlink in DEST is followed. A DEST
   inside a source store is refused. Existing files are never overwritten
   unless --overwrite; --skip-existing keeps an existing file of the same
   size and last write time (to resume an interrupted run). Each file is
   written under a temporary name and renamed when complete, so a real name
   never holds a partial file. On FAT, exFAT, NTFS and SMB targets, names
   Windows cannot hold are escaped reversibly (%XX) and names that differ
   only in case are both kept; each is reported.

DAMAGE:
   By default extraction stops at the first damaged file (or existing file,
   unsafe name) and says so. --continue extracts everything else, lists the
   problems and exits 3. A damaged file never appears under its real name:
   the part that could be read is kept as NAME.usmtkit-damaged.

Examples:
   usmtkit extract /mnt/c/USMTMIG /media/usb/restore --user jdoe
   usmtkit extract store.tar.zst /srv/out --include '*.pst' --include 'C:\Users\jdoe\Documents'
   usmtkit extract /srv/smp-copy --store-id 3f2a /srv/out --dry-run

` + exitcodes.Table + `
   extract without --continue exits 1 when it stops at a damaged, existing or
   unsafe file; with --continue such files give 3.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "include", Aliases: []string{"i"}, Usage: "extract only what matches `PATTERN` (repeatable; include wins over exclude)"},
			&cli.StringSliceFlag{Name: "exclude", Aliases: []string{"e"}, Usage: "leave out what matches `PATTERN` unless an --include matches (repeatable)"},
			&cli.StringFlag{Name: "user", Usage: "only this profile folder `NAME` (Users\\NAME, Documents and Settings\\NAME)"},
			&cli.StringFlag{Name: "drive", Usage: "only this drive `LETTER` (C, D, ...)"},
			&cli.StringSliceFlag{Name: "map-user", Usage: "put profile `OLD=NEW`'s files in Users\\NEW (Users\\OLD and Documents and Settings\\OLD; repeatable; like LoadState /mu)"},
			&cli.StringSliceFlag{Name: "map-drive", Usage: "put drive `FROM=TO`'s files on drive TO (D=C; repeatable; like LoadState /md)"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print what would be extracted and why; write nothing"},
			&cli.StringFlag{Name: "layout", Value: "windows", Usage: "windows (DEST/C/Users/...) or store (DEST/USMT/File/C$/..., a store again)"},
			&cli.StringFlag{Name: "names", Value: "auto", Usage: "windows (escape names Windows cannot hold), posix (as stored) or auto (by DEST's file system)"},
			&cli.BoolFlag{Name: "overwrite", Usage: "replace existing files in DEST"},
			&cli.BoolFlag{Name: "skip-existing", Usage: "keep existing files of the same size and last write time (resume)"},
			&cli.StringFlag{Name: "hardlinks", Value: "keep", Usage: "keep (re-create hard links) or copy (separate files)"},
			&cli.BoolFlag{Name: "continue", Usage: "go on past damaged files and conflicts, list them, exit 3"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as one JSON object on stdout"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
			&cli.StringFlag{Name: "store-id", Usage: "pick the store with this `ID` (or unique prefix) of a state migration point share copy"},
			&cli.BoolFlag{Name: "experimental-mig", Usage: migExperimentalFlagUsage},
		},
		Action: func(c *cli.Context) error {
			o := &extractOptions{globalOptions: *globalsOf(c),
				Include: c.StringSlice("include"), Exclude: c.StringSlice("exclude"),
				User: c.String("user"), Drive: c.String("drive"), DryRun: c.Bool("dry-run"),
				MapUser: c.StringSlice("map-user"), MapDrive: c.StringSlice("map-drive"),
				Layout: c.String("layout"), Names: c.String("names"), Overwrite: c.Bool("overwrite"),
				SkipExisting: c.Bool("skip-existing"), Hardlinks: c.String("hardlinks"), Continue: c.Bool("continue"),
				JSON: c.Bool("json"), Plain: c.Bool("plain"), StoreID: c.String("store-id"), ExperimentalMIG: c.Bool("experimental-mig")}
			return runExtract(c.Context, o, c.Args().Slice())
		},
	})
}

// openExtractSource opens the stores named on the command line, picking
// one store of an SMP share copy by --store-id.
func openExtractSource(g *globalOptions, paths []string, plain bool, storeID string) (store.Store, error) {
	ds, err := detectAll(paths, plain)
	if err != nil {
		return nil, err
	}
	if storeID == "" {
		if ds[0].Kind == store.KindSMP && len(ds[0].Members) > 0 {
			var ids []string
			for _, m := range ds[0].Members {
				ids = append(ids, m.ID)
			}
			return nil, exitcodes.Usagef(fmt.Sprintf("%s is a copy of a state migration point share holding %d stores: pick one with --store-id ID (a unique prefix is enough): %s",
				paths[0], len(ids), strings.Join(ids, ", ")))
		}
		return openDetected(g, ds)
	}
	if len(ds) != 1 || ds[0].Kind != store.KindSMP {
		return nil, exitcodes.Usagef(fmt.Sprintf("--store-id picks a store of a state migration point share copy, but %s is a %s store: drop --store-id", paths[0], ds[0].Kind))
	}
	var match []store.Member
	for _, m := range ds[0].Members {
		if m.ID != "" && strings.HasPrefix(strings.ToLower(m.ID), strings.ToLower(storeID)) {
			match = append(match, m)
		}
	}
	switch len(match) {
	case 0:
		return nil, exitcodes.Usagef(fmt.Sprintf("no store id of %s starts with %q; run usmtkit info %s to list them", paths[0], storeID, paths[0]))
	case 1:
	default:
		var ids []string
		for _, m := range match {
			ids = append(ids, m.Share+"/"+m.ID)
		}
		return nil, exitcodes.Usagef(fmt.Sprintf("--store-id %s matches %d stores (%s): give more of the id", storeID, len(match), strings.Join(ids, ", ")))
	}
	m := match[0]
	if m.Err != "" {
		return nil, fmt.Errorf("store %s/%s: %s: %w", m.Share, m.ID, m.Err, store.ErrNoStore)
	}
	return store.Open(m.Path)
}

func runExtract(ctx context.Context, o *extractOptions, args []string) error {
	if len(args) < 2 {
		return exitcodes.Usagef("extract needs a STORE and a DEST folder: usmtkit extract STORE... DEST")
	}
	if o.Hardlinks != "" && o.Hardlinks != "keep" && o.Hardlinks != "copy" {
		return exitcodes.Usagef(fmt.Sprintf("--hardlinks takes keep or copy (got %q)", o.Hardlinks))
	}
	// The mappings are checked before the store is opened.
	var userMaps []extract.UserMap
	var driveMaps []extract.DriveMap
	for _, m := range o.MapUser {
		um, err := extract.ParseUserMap(m)
		if err != nil {
			return exitcodes.Usagef(err.Error())
		}
		userMaps = append(userMaps, um)
	}
	for _, m := range o.MapDrive {
		dm, err := extract.ParseDriveMap(m)
		if err != nil {
			return exitcodes.Usagef(err.Error())
		}
		driveMaps = append(driveMaps, dm)
	}
	paths, dest := args[:len(args)-1], args[len(args)-1]
	var s store.Store
	var err error
	if o.ExperimentalMIG {
		s, err = openExtractMIG(ctx, o, paths)
	} else {
		s, err = openExtractSource(&o.globalOptions, paths, o.Plain, o.StoreID)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	for _, n := range s.Info().Notes {
		o.notef("usmtkit: note: %s", n)
	}

	eo := extract.Options{
		Dest: dest, Layout: o.Layout, Names: o.Names, Include: o.Include, Exclude: o.Exclude,
		User: o.User, Drive: o.Drive, DryRun: o.DryRun, Overwrite: o.Overwrite, SkipExisting: o.SkipExisting,
		HardlinkCopy: o.Hardlinks == "copy", Continue: o.Continue, MapUsers: userMaps, MapDrives: driveMaps,
	}
	var werr error
	if o.DryRun {
		mapping := len(eo.MapUsers)+len(eo.MapDrives) > 0
		eo.Decision = func(a extract.Action, path, to, reason string) {
			if werr != nil {
				return
			}
			if o.JSON {
				d := map[string]string{"type": "decision", "action": a.String(), "path": path, "reason": reason}
				if to != "" {
					d["dest"] = filepath.Join(dest, filepath.FromSlash(to))
				}
				b, _ := json.Marshal(d)
				_, werr = fmt.Fprintln(o.Stdout, string(b))
				return
			}
			if mapping && to != "" {
				// With a mapping, where each file goes is the point of the dry run.
				path += " -> " + filepath.Join(dest, filepath.FromSlash(to))
			}
			_, werr = fmt.Fprintf(o.Stdout, "%-7s  %s  (%s)\n", a, path, reason)
		}
	} else if o.Verbose {
		eo.Decision = func(a extract.Action, path, _, reason string) {
			if a != extract.Include {
				fmt.Fprintf(o.Stderr, "%-7s  %s  (%s)\n", a, path, reason)
			}
		}
	}
	var m *progress.Meter
	eo.Notice = func(kind, path, msg string) {
		if kind == "efs" {
			if m != nil {
				m.Done()
			}
			efsNote(&o.globalOptions, path)
			return
		}
		if o.Quiet && (kind == "escaped" || kind == "collision") {
			return
		}
		if !o.Continue && kind != "escaped" && kind != "collision" {
			return // the problem stops the run: the final error says it
		}
		if m != nil {
			m.Done()
		}
		printNotice(o.Stderr, kind, path, msg)
	}
	if !o.DryRun && o.Progress {
		// Count first, so the meter can show an ETA.
		co := eo
		co.DryRun, co.Decision, co.Notice = true, nil, nil
		if r, err := extract.Run(ctx, s, co); err == nil {
			m = o.meter("extracting")
			m.SetTotal(r.Files, r.Bytes)
		}
	}
	if m == nil {
		m = o.meter("extracting")
	}
	eo.Progress = func(files, bytes int64) { m.Add(files, bytes) }
	res, err := extract.Run(ctx, s, eo)
	m.Done()
	var ue *extract.UsageError
	if errors.As(err, &ue) {
		return exitcodes.Usagef(ue.Msg)
	}
	if res != nil {
		if perr := printExtractSummary(o, res); perr != nil && err == nil {
			err = perr
		}
	}
	if werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return err
	}
	if n := res.Problems(); n > 0 {
		var parts []string
		for _, c := range []struct {
			n    int64
			what string
		}{{res.DamagedCount, "damaged"}, {res.FailedCount, "could not be written"}, {res.ConflictCount, "already existed (not overwritten)"}, {res.RefusedCount, "refused (unsafe name)"}} {
			if c.n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
			}
		}
		return fmt.Errorf("%d files not extracted: %s; every other file was extracted: %w", n, strings.Join(parts, ", "), exitcodes.ErrPartial)
	}
	if o.mig != nil {
		return migPartial(o.mig)
	}
	return nil
}

// extractJSON is the --json summary (docs/extract.md).
type extractJSON struct {
	Type string `json:"type"`
	*extract.Result
	MIG *migExperimentalJSON `json:"experimental_mig,omitempty"`
}

func printExtractSummary(o *extractOptions, r *extract.Result) error {
	if o.JSON {
		for _, l := range []*[]extract.Problem{&r.Damaged, &r.Failed, &r.Conflicts, &r.Refused} {
			if *l == nil {
				*l = []extract.Problem{}
			}
		}
		if r.EFSFiles == nil {
			r.EFSFiles = []string{}
		}
		for _, l := range []*[]extract.Rename{&r.Escaped, &r.Collisions} {
			if *l == nil {
				*l = []extract.Rename{}
			}
		}
		j := extractJSON{Type: "summary", Result: r}
		if o.mig != nil {
			j.MIG = migJSON(o.mig)
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(o.Stdout, string(b))
		return err
	}
	w := o.Stdout
	verb := "extracted"
	if r.DryRun {
		verb = "would extract"
	}
	_, err := fmt.Fprintf(w, "%s %d files (%s) to %s (layout %s, names %s)\n", verb, r.Files, progress.Bytes(r.Bytes), r.Dest, r.Layout, r.Names)
	if err == nil && r.Mapping != "" {
		_, err = fmt.Fprintf(w, "  mapped: %s\n", r.Mapping)
	}
	if err == nil && o.mig != nil {
		err = printMIGSummary(w, o.mig)
	}
	if err != nil {
		return err
	}
	line := func(cond bool, format string, a ...any) {
		if cond {
			fmt.Fprintf(w, "  "+format+"\n", a...)
		}
	}
	line(r.HardLinks > 0, "hard links: %d re-created as hard links", r.HardLinks)
	line(r.LinksCopied > 0, "hard links: %d written as copies (the target has no hard links)", r.LinksCopied)
	line(r.SkippedExisting > 0, "existing:   %d identical files already in DEST were kept (--skip-existing)", r.SkippedExisting)
	line(r.NotSelected > 0, "not selected: %d files (patterns, --user, --drive, control files)", r.NotSelected)
	line(r.Special > 0, "not extracted: %d symlinks, FIFOs, sockets or devices (never extracted)", r.Special)
	line(r.EscapedCount > 0, "escaped names: %d (Windows naming rules; reverse with %%XX decoding, see docs/extract.md)", r.EscapedCount)
	line(r.CollisionCount > 0, "case collisions: %d names kept under an escaped name", r.CollisionCount)
	if r.EFSCount > 0 {
		fmt.Fprintf(w, "  EFS:        %s:\n", efsWords(r.EFSCount))
		for _, p := range r.EFSFiles {
			fmt.Fprintf(w, "    %s  [%s]\n", p, store.EFSNote)
		}
		line(r.EFSCount > int64(len(r.EFSFiles)), "    ... and %d more", r.EFSCount-int64(len(r.EFSFiles)))
	}
	line(r.StaleTempsRemoved > 0, "cleaned: %d temporary files left by an interrupted run", r.StaleTempsRemoved)
	line(r.MetaUnsupported > 0, "metadata: the target keeps no creation time / Windows attributes for %d files (no extended attributes)", r.MetaUnsupported)
	line(r.MetaFailures > 0, "metadata: %d times or attributes could not be set (first: %s)", r.MetaFailures, r.MetaError)
	for _, g := range []struct {
		title string
		list  []extract.Problem
	}{{"DAMAGED", r.Damaged}, {"NOT WRITTEN", r.Failed}, {"EXISTING, NOT OVERWRITTEN", r.Conflicts}, {"REFUSED", r.Refused}} {
		if len(g.list) == 0 {
			continue
		}
		fmt.Fprintf(w, "  %s: %d\n", g.title, len(g.list))
		ps := append([]extract.Problem(nil), g.list...)
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Path < ps[j].Path })
		for _, p := range ps {
			if p.Kept != "" {
				fmt.Fprintf(w, "    %s  (readable part kept as %s)\n", p.Path, p.Kept)
			} else {
				fmt.Fprintf(w, "    %s\n", p.Path)
			}
		}
	}
	return nil
}
