package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

type demoOptions struct {
	globalOptions
	Keep bool
	Dir  string
}

func init() {
	register(&cli.Command{
		Name:  "demo",
		Usage: "build a small sample hard-link store and run the main commands on it",
		Description: `Builds a sample hard-link store (a live profile and a USMT store whose files
are hard links to it) in a temporary folder, then runs each main command
on it, printing the command line before its output. Nothing outside the
temporary folder is touched; it is removed at the end unless --keep.

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep", Usage: "keep the sample folder and print where it is"},
			&cli.StringFlag{Name: "dir", Usage: "build the sample in this (new or empty) folder instead of a temporary one"},
		},
		Action: func(c *cli.Context) error {
			o := &demoOptions{globalOptions: *globalsOf(c), Keep: c.Bool("keep"), Dir: c.String("dir")}
			return runDemo(c.Context, o, c.Args().Slice())
		},
	})
}

// demoStep is one command the demo runs; steps whose command is not built
// into this binary are left out, so the demo grows as commands land.
type demoStep struct {
	why   string
	args  []string
	needs string // another command whose output this step reads
}

func runDemo(ctx context.Context, o *demoOptions, args []string) error {
	if len(args) > 0 {
		return exitcodes.Usagef("demo takes no arguments")
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "usmtkit-demo-")
		if err != nil {
			return fmt.Errorf("making a temporary folder: %w", err)
		}
		dir = d
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	vol := filepath.Join(dir, "volume-c")
	hl, err := fixtures.MakeHardLinkStore(vol)
	if err != nil {
		return fmt.Errorf("building the sample store in %s: %w", dir, err)
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "Sample hard-link store: %s\n(live profile at %s; the store's files are hard links to it)\n\n", hl.StorePath, hl.Live)
	steps := []demoStep{
		{"what is this store?", []string{"info", hl.StorePath}, ""},
		{"list a user's Documents in the Windows view", []string{"ls", hl.StorePath, `C:\Users\jdoe\Documents`}, ""},
		{"list everything", []string{"ls", "-R", hl.StorePath}, ""},
		{"write a manifest (xxhash64 of every file)", []string{"index", hl.StorePath, "-o", filepath.Join(out, "manifest.ndjson")}, ""},
		{"verify the store against it", []string{"verify", hl.StorePath, "--manifest", filepath.Join(out, "manifest.ndjson")}, "index"},
		{"which files exist only in the store?", []string{"hardlinks", hl.StorePath, "--live", "C=" + vol}, ""},
		{"compress the store into an archive tar and zstd can open", []string{"compress", hl.StorePath, "-o", filepath.Join(out, "store.tar.zst")}, ""},
		{"the archive is a store too", []string{"info", filepath.Join(out, "store.tar.zst")}, "compress"},
		{"get jdoe's documents back from the archive", []string{"extract", filepath.Join(out, "store.tar.zst"), filepath.Join(out, "restored"), "--user", "jdoe"}, "compress"},
	}
	app := newApp(&o.globalOptions)
	failed := 0
	for _, st := range steps {
		if app.Command(st.args[0]) == nil || (st.needs != "" && app.Command(st.needs) == nil) {
			continue
		}
		fmt.Fprintf(o.Stdout, "# %s\n$ usmtkit %s\n", st.why, quoteArgs(st.args))
		g := o.globalOptions
		g.Progress = false
		code := run(ctx, append([]string{"usmtkit", "-q"}, st.args...), g.Stdout, g.Stderr)
		fmt.Fprintf(o.Stdout, "(exit status %d)\n\n", code)
		if code != exitcodes.OK {
			failed++
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if o.Keep {
		fmt.Fprintf(o.Stdout, "the sample is kept in %s\n", dir)
	}
	if failed > 0 {
		return fmt.Errorf("%d demo steps failed", failed)
	}
	fmt.Fprintln(o.Stdout, "demo finished: every step succeeded")
	return nil
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, ` \$'"*?`) {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
