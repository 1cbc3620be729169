package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/objstore"
)

// runCompressFleet archives many stores (fleet.go) under -o PREFIX/: an
// s3://BUCKET/PREFIX/ (one object per store) or a local folder (one file
// per store), named by outputNames. Every archive is read back and checked
// (footer, TOC, every chunk) before its store counts as done, so a
// journal's "ok" means the archive is there and whole.
func runCompressFleet(ctx context.Context, o *compressOptions, args []string, p compressParams) error {
	prefix := o.Output
	remote := objstore.IsURL(prefix)
	if remote {
		if !strings.HasSuffix(prefix, "/") {
			return exitcodes.Usagef(fmt.Sprintf("over many stores -o is a prefix ending in /, one object per store: %s/", prefix))
		}
		if _, err := objstore.ParseURL(prefix + "x"); err != nil {
			return exitcodes.Usagef(err.Error())
		}
	} else if fi, err := os.Stat(prefix); err == nil && !fi.IsDir() {
		return exitcodes.Usagef(fmt.Sprintf("over many stores -o is a folder for one archive per store; %s is a file", prefix))
	}
	items, warnings, notes, err := collectFleet(ctx, args, o.From, o.Plain)
	if err != nil {
		return err
	}
	names, err := outputNames(items, ".tar.zst")
	if err != nil {
		return err
	}
	fr := &fleetRun{Op: "compress", JSON: o.JSON, g: &o.globalOptions}
	dir := ""
	if !remote {
		if dir, err = filepath.Abs(prefix); err != nil {
			return err
		}
		if err := makeFleetDir(dir, "archives", items); err != nil {
			return err
		}
		fr.outputs = []string{filepath.Join(dir, "x.tar.zst")}
	}
	output := func(it *fleetItem) string {
		if remote {
			return prefix + names[it]
		}
		return filepath.Join(dir, names[it])
	}
	// The journal says where each store's archive goes before it is made:
	// an archive that a killed run finished but never recorded is then
	// known as this run's own and replaced, where any other existing
	// archive is kept unless --force.
	fr.startFields = func(it *fleetItem) map[string]any { return map[string]any{"archive": output(it)} }
	fr.run = func(ctx context.Context, it *fleetItem, stdout, stderr io.Writer) fleetResult {
		sub := *o
		sub.Stdout, sub.Stderr, sub.Progress = stdout, stderr, false
		sub.fleetFlags, sub.inFleet = fleetFlags{}, true
		sub.Verify = true // read back before the journal calls it done
		sub.Output = output(it)
		if it.Unfinished != nil && it.Unfinished.Fields["archive"] == sub.Output {
			sub.Force = true
		}
		start := time.Now()
		rep, err := compressStore(ctx, &sub, []string{it.Key}, nil, p)
		r := fleetResult{ExitCode: exitcodes.FromError(err), Started: start, Finished: time.Now(), Fields: map[string]any{"archive": sub.Output}}
		if err != nil {
			r.Err = err.Error()
		}
		verified := rep != nil && rep.Verified != nil && *rep.Verified
		r.Status = fleetStatus(err, verified)
		if rep != nil && !journal.Done(r.Status) {
			// The archive was made, then reading it back was interrupted
			// or failed: it is this journal's own to replace.
			r.Fields["written"] = true
		}
		if rep != nil {
			for k, v := range map[string]any{"files": rep.Files, "entries": rep.Entries, "bytes_in": rep.BytesIn,
				"bytes_out": rep.BytesOut, "verified": verified, "changed": len(rep.Changed), "unreadable": len(rep.Unreadable),
				"skipped": len(rep.Skipped)} {
				r.Fields[k] = v
			}
		}
		switch r.Status {
		case journal.StatusOK, journal.StatusProblems:
			r.Words = fmt.Sprintf("%d files (%s) -> %s (%s), read back and checked", rep.Files, progress.Bytes(rep.BytesIn),
				shellQuote(sub.Output), progress.Bytes(rep.BytesOut))
			if err != nil {
				r.Words += fmt.Sprintf("; %v", err)
			}
		default:
			r.Words = fmt.Sprint(err)
		}
		return r
	}
	return runFleet(ctx, fr, &o.fleetFlags, items, warnings, notes)
}
