package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/store"
)

type indexOptions struct {
	globalOptions
	Output  string
	Force   bool
	NoHash  bool
	Threads int
	Plain   bool
	JSON    bool
	// now is the clock (tests fix it); nil means time.Now.
	now func() time.Time
	fleetFlags
	// inFleet: this store is one of many (fleet_index.go); its text line is
	// the fleet's.
	inFleet bool
}

func init() {
	register(&cli.Command{
		Name:      "index",
		Usage:     "write a manifest of a store: every entry with its metadata and content hash",
		ArgsUsage: "STORE [STORE...] -o MANIFEST | SHARE... -o DIR | --from FILE -o DIR",
		Description: `Walks the store and writes a manifest (docs/manifest.md): one JSON line per
entry in a fixed order with size, times, attributes, hard-link group and an
xxhash64 of the content (hard-link groups are read once), the control files
(catalog.mig, migstate.dat) included, framed by a header and a trailer whose
checksum detects truncation and edits. usmtkit verify checks a store against it.

The manifest is written atomically (a temporary file renamed into place), an
existing file is kept unless --force, and a path inside the store is refused:
usmtkit never writes into a store. Entries that cannot be read are recorded
with their error, and the exit status is then 3 (partial).

Many stores at once (a share copy, an s3://BUCKET/PREFIX/, --from FILE, or
several STOREs with --each):
-o is a folder (created if needed) that gets one manifest per store, named
<store folder>.manifest, or <SMPSTORE folder>_<store folder>.manifest for a
share member; --jobs, --journal and --redo as for verify (docs/cli.md).

Examples:
   usmtkit index /mnt/c/USMTMIG -o /root/jdoe.manifest
   usmtkit index /srv/share-copy -o /root/manifests --journal /root/index.journal
   usmtkit index /mnt/c/USMTMIG /mnt/d/USMTMIG -o both.manifest --no-hash

` + exitcodes.Table,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the manifest file to write (outside the store); over many stores, a folder"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing manifest"},
			&cli.BoolFlag{Name: "no-hash", Usage: "metadata only: do not read file contents"},
			&cli.IntFlag{Name: "threads", Value: manifest.DefaultThreads, Usage: "files read in parallel"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
			&cli.BoolFlag{Name: "json", Usage: "print the final summary as one JSON object"},
		}, fleetCLIFlags()...),
		Action: func(c *cli.Context) error {
			o := &indexOptions{globalOptions: *globalsOf(c), Output: c.String("output"), Force: c.Bool("force"),
				NoHash: c.Bool("no-hash"), Threads: c.Int("threads"), Plain: c.Bool("plain"), JSON: c.Bool("json"),
				fleetFlags: fleetFlagsOf(c)}
			return runIndex(c.Context, o, c.Args().Slice())
		},
	})
}

// indexSummary is the --json shape of `index` (docs/manifest.md).
type indexSummary struct {
	Type      string  `json:"type"` // "summary"
	Manifest  string  `json:"manifest"`
	Hashed    bool    `json:"hashed"`
	Entries   int64   `json:"entries"`
	Files     int64   `json:"files"`
	Dirs      int64   `json:"dirs"`
	Bytes     int64   `json:"bytes"`
	Errors    int64   `json:"errors"`
	ElapsedMs float64 `json:"elapsed_ms"`
}

// wrapStore lets tests interpose on the store index and verify read
// (e.g. to make a file vanish between the walk and the read).
var wrapStore func(store.Store) store.Store

func openStore(g *globalOptions, ds []*store.Detection) (store.Store, error) {
	s, err := openDetected(g, ds)
	if err != nil || wrapStore == nil {
		return s, err
	}
	return wrapStore(s), nil
}

// indexOutcome is what one store's index wrote, for the fleet line and
// the journal (fleet_index.go).
type indexOutcome struct {
	Info    *store.Info
	Counts  *manifest.Counts // nil unless the manifest was written
	Elapsed time.Duration
}

func runIndex(ctx context.Context, o *indexOptions, args []string) error {
	if len(args) == 0 && o.From == "" {
		return exitcodes.Usagef("index needs at least one STORE path (or --from FILE)")
	}
	if o.Output == "" {
		return exitcodes.Usagef("index needs -o MANIFEST: the file to write (outside the store); over many stores, a folder")
	}
	if o.Threads < 1 || o.Threads > 256 {
		return exitcodes.Usagef(fmt.Sprintf("--threads must be between 1 and 256, not %d", o.Threads))
	}
	ds, fleet, err := fleetWanted(&o.fleetFlags, args, o.Plain)
	if err != nil {
		return err
	}
	if fleet {
		return runIndexFleet(ctx, o, args)
	}
	_, err = indexStore(ctx, o, args, ds)
	return err
}

// indexStore writes the manifest of one store (the volumes of one store).
// ds is what detection found at args, or nil to detect here.
func indexStore(ctx context.Context, o *indexOptions, args []string, ds []*store.Detection) (*indexOutcome, error) {
	res := &indexOutcome{}
	now := time.Now
	if o.now != nil {
		now = o.now
	}
	start := time.Now()
	var err error
	if ds == nil {
		if ds, err = detectAll(args, o.Plain); err != nil {
			return res, err
		}
	}
	s, err := openStore(&o.globalOptions, ds)
	if err != nil {
		return res, err
	}
	defer s.Close()
	info := s.Info()
	res.Info = info
	for _, n := range info.Notes {
		o.notef("usmtkit: note: %s", n)
	}
	if err := manifest.CheckOutside(o.Output, append(append([]string{}, info.Roots...), info.Input...)); err != nil {
		if errors.Is(err, manifest.ErrInsideStore) {
			return res, exitcodes.Usagef("refusing to write the manifest: " + err.Error())
		}
		return res, err
	}
	out, err := manifest.CreateAtomic(o.Output, o.Force)
	if err != nil {
		if errors.Is(err, manifest.ErrExists) {
			return res, exitcodes.Usagef(fmt.Sprintf("%s already exists; pass --force to replace it, or choose another -o path", o.Output))
		}
		return res, err
	}
	defer out.Abort() // no-op after Commit

	m := o.meter("indexing")
	defer m.Done()
	if o.Progress {
		// Totals for the ETA: a metadata-only walk, done only when shown.
		if sum, err := store.Summarize(ctx, s, nil); err == nil {
			m.SetTotal(sum.Files, sum.BytesApparent)
		} else if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}

	hdr := manifest.Header{
		Created: now().UTC().Format(time.RFC3339Nano),
		Tool:    "usmtkit " + version,
		Store: manifest.StoreHeader{Kind: string(info.Kind), Version: info.Version, Level: info.Level,
			Input: info.Input, Roots: info.Roots},
		Hashed: !o.NoHash,
	}
	w, err := manifest.NewWriter(out, hdr)
	if err != nil {
		return res, fmt.Errorf("writing %s: %w; check the disk has room", o.Output, err)
	}
	var readBytes func(int64)
	if !o.NoHash {
		readBytes = func(n int64) { m.Add(0, n) }
	}
	var writeErr error
	err = manifest.HashWalk(ctx, s, manifest.HashOptions{Threads: o.Threads, Hash: !o.NoHash, ReadBytes: readBytes},
		func(it *manifest.Item) error {
			rec := manifest.FromEntry(&it.Entry)
			if e := it.Err(); e != nil {
				rec.Error = e.Error()
				if !o.Quiet {
					m.Done() // the note must not be drawn over; the meter stays off afterwards
					fmt.Fprintf(o.Stderr, "usmtkit: unreadable: %s\n", e)
				}
			}
			if it.Hashed {
				rec.XXH64 = manifest.HashHex(it.Hash)
			}
			if o.Verbose && it.Entry.Type == store.TypeFile {
				m.Done() // -v lists files; a progress line would be drawn over them
				fmt.Fprintf(o.Stderr, "%-16s %s\n", rec.XXH64, displayName(&it.Entry))
			}
			if it.Entry.Type == store.TypeFile {
				m.Add(1, 0)
				if o.NoHash {
					m.Add(0, it.Entry.Size)
				}
			}
			if err := w.Write(&rec); err != nil {
				writeErr = err
				return err
			}
			return nil
		})
	if writeErr != nil {
		return res, fmt.Errorf("writing %s: %w; check the disk has room (nothing was written under that name)", o.Output, writeErr)
	}
	if err != nil {
		return res, err // interrupted or a fatal walk error: the temporary file is removed
	}
	tr, err := w.Close()
	if err == nil {
		err = out.Commit()
	}
	if err != nil {
		if errors.Is(err, manifest.ErrExists) {
			return res, exitcodes.Usagef(fmt.Sprintf("%s appeared while indexing; pass --force to replace it, or choose another -o path", o.Output))
		}
		return res, fmt.Errorf("writing %s: %w; check the disk has room (nothing was written under that name)", o.Output, err)
	}
	m.Done()
	elapsed := time.Since(start)
	res.Counts, res.Elapsed = &tr.Counts, elapsed
	if o.JSON {
		b, _ := json.Marshal(indexSummary{Type: "summary", Manifest: o.Output, Hashed: !o.NoHash, Entries: tr.Entries,
			Files: tr.Files, Dirs: tr.Dirs, Bytes: tr.Bytes, Errors: tr.Errors, ElapsedMs: float64(elapsed.Microseconds()) / 1000})
		fmt.Fprintln(o.Stdout, string(b))
	} else if !o.inFleet { // in a fleet, the store's one line says it (fleet_index.go)
		what := "indexed"
		if o.NoHash {
			what = "listed (no content hashes)"
		}
		fmt.Fprintf(o.Stdout, "%s %d files (%s) in %s; %d entries could not be read; manifest %s\n",
			what, tr.Files, progress.Bytes(tr.Bytes), elapsed.Round(time.Millisecond), tr.Errors, o.Output)
	}
	var parts []string
	if tr.Errors > 0 {
		parts = append(parts, fmt.Sprintf("%d entries could not be read (the manifest records them with their error)", tr.Errors))
	}
	if cl := s.Info().Clashes; len(cl) > 0 {
		parts = append(parts, fmt.Sprintf("%d paths exist on more than one volume (only the first volume's copy is in the manifest)", len(cl)))
	}
	if len(parts) > 0 {
		return res, fmt.Errorf("%s: %w", strings.Join(parts, "; "), exitcodes.ErrPartial)
	}
	return res, nil
}
