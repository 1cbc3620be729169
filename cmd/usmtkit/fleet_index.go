package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
	"github.com/usmtkit/usmtkit/internal/progress"
)

// runIndexFleet indexes many stores (fleet.go), one manifest each in the
// folder -o names (outputNames).
func runIndexFleet(ctx context.Context, o *indexOptions, args []string) error {
	if fi, err := os.Stat(o.Output); err == nil && !fi.IsDir() {
		return exitcodes.Usagef(fmt.Sprintf("over many stores -o is a folder for one manifest per store; %s is a file", o.Output))
	}
	items, warnings, notes, err := collectFleet(ctx, args, o.From, o.Plain)
	if err != nil {
		return err
	}
	names, err := outputNames(items, ".manifest")
	if err != nil {
		return err
	}
	if err := makeFleetDir(o.Output, "manifests", items); err != nil {
		return err
	}
	fr := &fleetRun{Op: "index", JSON: o.JSON, g: &o.globalOptions, outputs: []string{filepath.Join(o.Output, "x.manifest")}}
	fr.run = func(ctx context.Context, it *fleetItem, stdout, stderr io.Writer) fleetResult {
		sub := *o
		sub.Stdout, sub.Stderr, sub.Progress = stdout, stderr, false
		sub.fleetFlags, sub.inFleet = fleetFlags{}, true
		sub.Output = filepath.Join(o.Output, names[it])
		start := time.Now()
		out, err := indexStore(ctx, &sub, []string{it.Key}, nil)
		r := fleetResult{ExitCode: exitcodes.FromError(err), Started: start, Finished: time.Now(), Fields: map[string]any{}}
		if err != nil {
			r.Err = err.Error()
		}
		if out != nil && out.Info != nil {
			r.Kind = string(out.Info.Kind)
			r.Fields["kind"] = r.Kind
		}
		written := out != nil && out.Counts != nil
		r.Status = fleetStatus(err, written)
		if written {
			c := out.Counts
			for k, v := range map[string]any{"manifest": sub.Output, "entries": c.Entries, "files": c.Files, "dirs": c.Dirs,
				"bytes": c.Bytes, "errors": c.Errors} {
				r.Fields[k] = v
			}
		}
		switch r.Status {
		case journal.StatusOK, journal.StatusProblems:
			r.Words = fmt.Sprintf("%s: %d files (%s) into %s", r.Kind, out.Counts.Files, progress.Bytes(out.Counts.Bytes), shellQuote(sub.Output))
			if out.Counts.Errors > 0 || err != nil {
				r.Words += fmt.Sprintf("; %v", err)
			}
		default:
			r.Words = fmt.Sprint(err)
		}
		return r
	}
	return runFleet(ctx, fr, &o.fleetFlags, items, warnings, notes)
}
