package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/objstore"
	"github.com/usmtkit/usmtkit/store"
)

type compressOptions struct {
	globalOptions
	Output    string
	Level     string
	ChunkSize string
	FrameSize string // "" = the default (128 KiB, or the chunk size when smaller)
	Threads   int
	Encoder   string
	Force     bool
	Verify    bool
	JSON      bool
	Plain     bool
	fleetFlags
	// inFleet: this store is one of many (fleet_compress.go).
	inFleet bool
}

func init() {
	register(&cli.Command{
		Name:      "compress",
		Usage:     "pack a store into an archive that GNU tar and zstd can open",
		ArgsUsage: "STORE [STORE...] -o OUT.tar.zst | SHARE... -o PREFIX/",
		Description: `Writes a usmtkit archive (docs/format.md): a PAX tar stream compressed as
independent zstd frames, with a table of contents usmtkit reads at random.
Without usmtkit it unpacks with "tar --zstd -xf OUT.tar.zst" or
"zstd -dc OUT.tar.zst | tar -x" into an uncompressed store LoadState can use.
Hard links are stored once; times keep ns precision; creation times and
Windows attributes are kept in PAX records.

The archive is written to a temporary file next to OUT, flushed to disk and
renamed; an existing OUT is kept unless --force; an OUT inside the store is
refused. Files that change while they are read, or cannot be read, are
listed and the run exits 3. --verify reads the result back and checks every
chunk.

Many stores at once (a share copy, --from FILE, or --each STORE...) go
under -o PREFIX/ (s3://BUCKET/PREFIX/ or a local folder), one archive per
store named <store id>.tar.zst (<SMPSTORE folder>_<store id>.tar.zst for a
share member), --jobs at a time; each archive is read back and checked
before its store counts as done, and --journal FILE records each finished
store so a re-run does only what is left (docs/cli.md, docs/journal.md).

Examples:
   usmtkit compress /mnt/c/USMTMIG -o /srv/stores/PC042.tar.zst
   usmtkit compress /mnt/c/USMTMIG /mnt/d/USMTMIG -o pc042.tar.zst --level better --verify
   usmtkit compress /srv/SMPSTORE_copy -o s3://migrations/site12/ --jobs 2 --journal site12.jsonl

` + exitcodes.Table,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the archive to write (OUT.tar.zst, or s3://BUCKET/KEY); over many stores, the folder or s3://BUCKET/PREFIX/ they go under"},
			&cli.StringFlag{Name: "level", Value: "default", Usage: "fastest, default (about zstd -3) or better"},
			&cli.StringFlag{Name: "chunk-size", Value: "4MiB", Usage: "size of the pieces files are cut into, each with its own checksum in the index (64KiB to 64MiB)"},
			&cli.StringFlag{Name: "frame-size", Usage: "size of the independently compressed zstd frames inside a chunk (64KiB up to the chunk size; default 128KiB): smaller makes random reads cheaper and the archive slightly bigger; equal to the chunk size writes format version 1"},
			&cli.IntFlag{Name: "threads", Usage: "chunks compressed at once (default: number of CPUs)"},
			&cli.StringFlag{Name: "encoder", Usage: "zstd encoder of the data: c (the zstd library, about twice as fast; in builds with cgo) or go (default: c when built in)"},
			&cli.BoolFlag{Name: "force", Usage: "replace OUT if it exists"},
			&cli.BoolFlag{Name: "verify", Usage: "read the archive back and check every chunk"},
			&cli.BoolFlag{Name: "json", Usage: "a JSON summary on stdout"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
		}, fleetCLIFlags()...),
		Action: func(c *cli.Context) error {
			o := &compressOptions{globalOptions: *globalsOf(c), Output: c.String("output"), Level: c.String("level"),
				ChunkSize: c.String("chunk-size"), FrameSize: c.String("frame-size"), Threads: c.Int("threads"), Encoder: c.String("encoder"), Force: c.Bool("force"),
				Verify: c.Bool("verify"), JSON: c.Bool("json"), Plain: c.Bool("plain"), fleetFlags: fleetFlagsOf(c)}
			return runCompress(c.Context, o, c.Args().Slice())
		},
	})
}

// parseSize reads 4MiB, 4M, 512KiB, 65536.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 4MiB or 1048576)", s)
	}
	return n * mult, nil
}

// compressReport is the --json shape of compress (docs/cli.md).
type compressReport struct {
	Output     string          `json:"output"`
	Level      string          `json:"level"`
	Encoder    string          `json:"encoder"`
	ChunkSize  int64           `json:"chunk_size"`
	FrameSize  int64           `json:"frame_size"`
	Entries    int64           `json:"entries"`
	Files      int64           `json:"files"`
	Dirs       int64           `json:"dirs"`
	Symlinks   int64           `json:"symlinks"`
	HardLinks  int64           `json:"hard_links"`
	BytesIn    int64           `json:"bytes_in"`
	BytesOut   int64           `json:"bytes_out"`
	Seconds    float64         `json:"seconds"`
	Changed    []problemRecord `json:"changed"`
	Unreadable []problemRecord `json:"unreadable"`
	Skipped    []problemRecord `json:"skipped"`
	WalkErrors []problemRecord `json:"walk_errors"`
	Unlisted   int64           `json:"unlisted_problems"`
	Verified   *bool           `json:"verified,omitempty"`
	Damaged    []problemRecord `json:"verify_damaged,omitempty"`
}

type problemRecord struct {
	Path  string `json:"store_path"`
	Error string `json:"error"`
}

func problemRecords(ps []compress.Problem) []problemRecord {
	out := make([]problemRecord, 0, len(ps))
	for _, p := range ps {
		out = append(out, problemRecord{Path: p.Path, Error: p.Err.Error()})
	}
	return out
}

// compressParams are compress's checked settings.
type compressParams struct {
	level        compress.Level
	chunk, frame int64
}

func (o *compressOptions) params() (compressParams, error) {
	var p compressParams
	var err error
	if p.level, err = compress.ParseLevel(o.Level); err != nil {
		return p, exitcodes.Usagef(err.Error())
	}
	p.chunk, err = parseSize(o.ChunkSize)
	if err != nil || p.chunk < compress.MinChunkSize || p.chunk > compress.MaxChunkSize {
		return p, exitcodes.Usagef(fmt.Sprintf("--chunk-size must be a size from %s to %s (got %q)",
			progress.Bytes(compress.MinChunkSize), progress.Bytes(compress.MaxChunkSize), o.ChunkSize))
	}
	p.frame = min(int64(compress.DefaultFrameSize), p.chunk)
	if o.FrameSize != "" {
		p.frame, err = parseSize(o.FrameSize)
		if err != nil || p.frame < compress.MinChunkSize || p.frame > p.chunk {
			return p, exitcodes.Usagef(fmt.Sprintf("--frame-size must be a size from %s up to the chunk size, %s (got %q)",
				progress.Bytes(compress.MinChunkSize), progress.Bytes(p.chunk), o.FrameSize))
		}
	}
	if o.Threads < 0 {
		return p, exitcodes.Usagef("--threads must be 1 or more")
	}
	if err := compress.CheckEncoder(o.Encoder); err != nil {
		return p, exitcodes.Usagef("--encoder: " + err.Error())
	}
	return p, nil
}

func runCompress(ctx context.Context, o *compressOptions, args []string) error {
	if len(args) == 0 && o.From == "" {
		return exitcodes.Usagef("compress needs a STORE path (or --from FILE)")
	}
	if o.Output == "" {
		return exitcodes.Usagef("compress needs -o OUT.tar.zst: where to write the archive (over many stores, -o PREFIX/)")
	}
	p, err := o.params()
	if err != nil {
		return err
	}
	ds, fleet, err := fleetWanted(&o.fleetFlags, args, o.Plain)
	if err != nil {
		return err
	}
	if fleet {
		return runCompressFleet(ctx, o, args, p)
	}
	_, err = compressStore(ctx, o, args, ds, p)
	return err
}

// compressStore writes the archive of one store (the volumes of one
// store) to o.Output. ds is what detection found at args, or nil to
// detect here. The report is returned once the archive is written.
func compressStore(ctx context.Context, o *compressOptions, args []string, ds []*store.Detection, p compressParams) (*compressReport, error) {
	level, chunk, frame := p.level, p.chunk, p.frame
	out, err := o.Output, error(nil)
	remote := objstore.IsURL(out)
	if !remote {
		if out, err = filepath.Abs(o.Output); err != nil {
			return nil, err
		}
	}
	if _, err := os.Lstat(out); err == nil && !o.Force && !remote {
		return nil, exitcodes.Usagef(fmt.Sprintf("%s already exists: choose another name or pass --force to replace it", out))
	}
	if ds == nil {
		if ds, err = detectAll(args, o.Plain); err != nil {
			return nil, err
		}
	}
	s, err := openDetected(&o.globalOptions, ds)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if remote {
		// a bucket is never inside a store
	} else if inside, err := compress.IsInside(out, s.Info().Roots); err != nil {
		return nil, fmt.Errorf("checking where %s is: %w", out, err)
	} else if inside {
		return nil, exitcodes.Usagef(fmt.Sprintf("%s is inside the store (%s): usmtkit never writes into a store; choose another folder", out, strings.Join(s.Info().Roots, ", ")))
	}

	m := o.meter("compressing")
	opts := compress.WriteOptions{Level: level, ChunkSize: int(chunk), FrameSize: int(frame), Threads: o.Threads, Encoder: o.Encoder,
		Progress: func(p compress.Progress) { m.Set(p.FilesDone, p.BytesDone) }}
	if o.Progress {
		// Totals for the ETA: one metadata walk, cheap next to compressing.
		if sum, err := store.Summarize(ctx, s, nil); err == nil {
			opts.TotalBytes, opts.TotalFiles = sum.BytesUnique, sum.Files
			m.SetTotal(sum.Files, sum.BytesUnique)
		}
	}
	start := time.Now()
	var res *compress.WriteResult
	if remote {
		res, err = createObjectArchive(ctx, out, s, opts, o.Force)
	} else {
		res, err = compress.CreateFile(ctx, out, s, opts, o.Force)
	}
	m.Done()
	if err != nil {
		return nil, err
	}
	rep := &compressReport{Output: out, Level: level.String(), Encoder: res.Encoder, ChunkSize: chunk, FrameSize: frame, Entries: res.Entries, Files: res.Files,
		Dirs: res.Dirs, Symlinks: res.Symlinks, HardLinks: res.Links, BytesIn: res.BytesIn, BytesOut: res.BytesOut,
		Seconds: time.Since(start).Seconds(), Changed: problemRecords(res.Changed), Unreadable: problemRecords(res.Unreadable),
		Skipped: problemRecords(res.Skipped), WalkErrors: problemRecords(res.WalkErrors), Unlisted: res.Dropped}
	if o.Verify {
		ok := true
		var a *compress.Archive
		if remote {
			a, err = openObjectArchive(out, compress.ReaderOptions{})
		} else {
			a, err = compress.Open(out, compress.ReaderOptions{})
		}
		if err != nil {
			return rep, fmt.Errorf("reading back %s: %w", out, err)
		}
		vm := o.meter("verifying")
		err = a.VerifyAll(ctx, func(path string, chunk int, err error) {
			if err != nil {
				ok = false
				msg := fmt.Sprintf("chunk %d: %v", chunk, err)
				if path == "" {
					msg = err.Error() // the archive's own frames (end of archive)
				}
				rep.Damaged = append(rep.Damaged, problemRecord{Path: path, Error: msg})
			}
		})
		vm.Done()
		a.Close()
		if err != nil {
			return rep, fmt.Errorf("verifying %s: %w", out, err)
		}
		rep.Verified = &ok
	}
	if !o.inFleet || !o.JSON { // over many stores, --json prints each store's line only
		if err := o.printCompress(rep); err != nil {
			return rep, err
		}
	}
	if rep.Verified != nil && !*rep.Verified {
		return rep, fmt.Errorf("the archive %s failed its check right after writing (%d chunks): the disk or memory may be failing; do not rely on it", out, len(rep.Damaged))
	}
	if res.Incomplete() {
		n := len(res.Changed) + len(res.Unreadable) + len(res.Skipped) + len(res.WalkErrors) + int(res.Dropped)
		return rep, fmt.Errorf("the archive %s was written but %d entries are missing or may be inconsistent (listed above): %w", out, n, exitcodes.ErrPartial)
	}
	return rep, nil
}

func (o *compressOptions) printCompress(r *compressReport) error {
	if o.JSON {
		return writeJSON(o.Stdout, r)
	}
	w := o.Stdout
	ratio := 0.0
	if r.BytesIn > 0 {
		ratio = float64(r.BytesOut) / float64(r.BytesIn)
	}
	fmt.Fprintf(w, "archive:     %s\n", r.Output)
	fmt.Fprintf(w, "entries:     %d files, %d folders, %d symlinks, %d hard links\n", r.Files, r.Dirs, r.Symlinks, r.HardLinks)
	fmt.Fprintf(w, "size:        %s of file data -> %s archive (%.1f %%), level %s (%s encoder), %s chunks in %s frames, %.1fs\n",
		progress.Bytes(r.BytesIn), progress.Bytes(r.BytesOut), 100*ratio, r.Level, r.Encoder, progress.Bytes(r.ChunkSize), progress.Bytes(r.FrameSize), r.Seconds)
	for _, l := range []struct {
		what string
		ps   []problemRecord
	}{{"CHANGED while read (archived as read, may be inconsistent)", r.Changed}, {"UNREADABLE (not in the archive)", r.Unreadable},
		{"SKIPPED (FIFOs, sockets, devices: not archived)", r.Skipped}, {"could not be listed", r.WalkErrors}} {
		if len(l.ps) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s: %d\n", l.what, len(l.ps))
		for _, p := range l.ps {
			fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Error)
		}
	}
	if r.Unlisted > 0 {
		fmt.Fprintf(w, "... and %d more problems not listed\n", r.Unlisted)
	}
	if r.Verified != nil {
		if *r.Verified {
			fmt.Fprintf(w, "verified:    every chunk read back and checked (zstd checksum and xxh64)\n")
		} else {
			fmt.Fprintf(w, "VERIFY FAILED: %d damaged chunks\n", len(r.Damaged))
			for _, d := range r.Damaged {
				fmt.Fprintf(w, "  %s: %s\n", d.Path, d.Error)
			}
		}
	}
	fmt.Fprintf(w, "restore without usmtkit: tar --zstd -xf %s   (or: zstd -dc %s | tar -x)\n", filepath.Base(r.Output), filepath.Base(r.Output))
	return nil
}
