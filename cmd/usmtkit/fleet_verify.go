package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/internal/verify"
)

// runVerifyFleet verifies many stores (fleet.go): each store's report is
// the one verify prints for it alone, without its summary block, and its
// one line says the rest.
func runVerifyFleet(ctx context.Context, o *verifyOptions, args []string, level verify.Level, report string) error {
	if o.Log != "" {
		return exitcodes.Usagef("--log is for one store; over many stores use --json or --journal")
	}
	if o.ListFiles != "" {
		return exitcodes.Usagef("--listfiles is ScanState's list of one computer's files: verify that computer's store alone")
	}
	manifestDir := ""
	if o.Manifest != "" {
		fi, err := os.Stat(o.Manifest)
		if err != nil || !fi.IsDir() {
			return exitcodes.Usagef(fmt.Sprintf("over many stores --manifest is the folder index -o wrote (one <store>.manifest each); %s is not a folder", o.Manifest))
		}
		manifestDir = o.Manifest
	}
	items, warnings, notes, err := collectFleet(ctx, args, o.From, o.Plain)
	if err != nil {
		return err
	}
	fr := &fleetRun{Op: "verify", JSON: o.JSON, g: &o.globalOptions}
	fr.run = func(ctx context.Context, it *fleetItem, stdout, stderr io.Writer) fleetResult {
		sub := *o
		sub.Stdout, sub.Stderr, sub.Progress = stdout, stderr, false
		sub.fleetFlags, sub.inFleet = fleetFlags{}, true
		if manifestDir != "" {
			sub.Manifest = filepath.Join(manifestDir, outputName(it, ".manifest"))
		}
		start := time.Now()
		out, err := verifyStore(ctx, &sub, []string{it.Key}, nil, level, report)
		r := verifyResult(out, err, level)
		r.Started, r.Finished = start, time.Now()
		if sub.Manifest != "" {
			r.Fields["manifest"] = sub.Manifest
		}
		return r
	}
	return runFleet(ctx, fr, &o.fleetFlags, items, warnings, notes)
}

// fleetStatus turns a store's result error into its journal status.
func fleetStatus(err error, done bool) string {
	switch {
	case err == nil:
		return journal.StatusOK
	case errors.Is(err, context.Canceled):
		return journal.StatusInterrupted
	case errors.Is(err, exitcodes.ErrPartial) && done:
		return journal.StatusProblems
	}
	return journal.StatusFailed
}

// verifyResult is a store's line, status and journal fields.
func verifyResult(out *verifyOutcome, err error, level verify.Level) fleetResult {
	r := fleetResult{ExitCode: exitcodes.FromError(err), Fields: map[string]any{}}
	if err != nil {
		r.Err = err.Error()
	}
	switch {
	case out != nil && out.MIG != nil:
		g := out.MIG
		r.Kind = "usmt-mig"
		r.Status = fleetStatus(err, true)
		r.Fields["kind"], r.Fields["level"], r.Fields["encrypted"] = r.Kind, g.Level, g.Encrypted
		r.Fields["records"], r.Fields["corrupted"] = g.Records, g.Corrupted
		what := "contents"
		if g.Level != "contents" {
			what = "structure only: encrypted"
		}
		r.Words = fmt.Sprintf("%s: %d records checked (%s), %d CORRUPTED", r.Kind, g.Records, what, g.Corrupted)
		if len(g.Damage) > 0 {
			r.Words += "; " + strings.Join(g.Damage, "; ")
		}
	case out != nil && out.Sum != nil:
		s := out.Sum
		if out.Info != nil {
			r.Kind = string(out.Info.Kind)
		}
		r.Status = fleetStatus(err, true)
		for k, v := range map[string]any{"kind": r.Kind, "level": string(s.Level), "files": s.Files, "ok": s.OKCount,
			"corrupted": s.Corrupt, "changed": s.Changed, "missing": s.Missing, "unreadable": s.Unread, "extra": s.Extra,
			"skipped": s.Skipped, "catalog": string(s.Catalog), "bytes_read": s.Bytes} {
			r.Fields[k] = v
		}
		switch r.Status {
		case journal.StatusOK:
			r.Words = fmt.Sprintf("%s: %d files OK at the %s level", r.Kind, s.Files, s.Level)
			if level == verify.LevelData {
				r.Words += ", " + progress.Bytes(s.Bytes) + " read"
			}
		case journal.StatusProblems:
			r.Words = fmt.Sprintf("%s: %d files checked: %s", r.Kind, s.Files, strings.TrimPrefix(problemWords(s), "verify found problems: "))
		case journal.StatusInterrupted:
			r.Words = fmt.Sprintf("%s: stopped after %d files: not done", r.Kind, s.Files)
		default:
			r.Words = fmt.Sprintf("%s: %v", r.Kind, err)
		}
	default:
		r.Status = fleetStatus(err, false)
		r.Words = fmt.Sprint(err)
	}
	return r
}
