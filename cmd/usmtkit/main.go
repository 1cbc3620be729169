// Command usmtkit indexes, verifies, compresses, extracts and mounts
// Windows USMT migration stores on Linux, read-only and without the site.
//
// Each command lives in its own file (cmd_<name>.go) with an options
// struct, a flag builder and a plain run function that tests call. This
// file is the one place where errors become exit codes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/objstore"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// globalOptions are shared by every command.
type globalOptions struct {
	Stdout  io.Writer
	Stderr  io.Writer
	Quiet   bool // no progress, no notes
	Verbose bool // per-entry detail on stderr
	// Progress is true when progress lines should be drawn (stderr is a
	// terminal and not -q).
	Progress bool
	// AllVolumes opens a store's folders on every other mounted volume
	// with it (--all-volumes; see volumes.go).
	AllVolumes bool
}

func (g *globalOptions) meter(label string) *progress.Meter {
	return progress.New(g.Stderr, label, g.Progress)
}

// notef prints an informational line on stderr unless -q.
func (g *globalOptions) notef(format string, a ...any) {
	if !g.Quiet {
		fmt.Fprintf(g.Stderr, format+"\n", a...)
	}
}

// commands lists every command; each cmd_*.go file adds its own.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

func newApp(g *globalOptions) *cli.App {
	// -v is --verbose here, as in most of our anchors; --version has no short form.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
	app := &cli.App{
		Name:    "usmtkit",
		Usage:   "read, check and recover Windows USMT migration stores on Linux, read-only",
		Version: version,
		Description: `usmtkit opens every kind of USMT migration store — uncompressed and hard-link
stores (one or several volumes), USMT 3 layouts, copies of state migration
point shares, USMT.MIG files (identified only) and usmtkit archives — and
never writes into them. Give a store at any level: the StorePath, its USMT
folder, USMT\File, a drive folder like USMT\File\C$, or the file itself.

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no notes on stderr"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "more detail on stderr"},
			&cli.StringFlag{Name: "endpoint", Usage: "S3-compatible server for s3://BUCKET/KEY names (default $AWS_ENDPOINT_URL, else AWS)"},
			&cli.BoolFlag{Name: "no-verify-tls", Usage: "do not check the certificate of an https --endpoint (prefer AWS_CA_BUNDLE=your-ca.pem): anyone on the path could read and change the data"},
		},
		Before: func(c *cli.Context) error {
			g.Quiet = c.Bool("quiet")
			g.Verbose = c.Bool("verbose")
			objConfig.Endpoint = c.String("endpoint")
			objConfig.InsecureSkipVerify = c.Bool("no-verify-tls")
			if objConfig.InsecureSkipVerify {
				fmt.Fprintln(g.Stderr, "usmtkit: warning: --no-verify-tls: the object store's certificate is not checked; anyone on the path could read and change the data")
			}
			if f, ok := g.Stderr.(*os.File); ok && !g.Quiet && progress.IsTerminal(f) {
				g.Progress = true
			}
			return nil
		},
		Commands:       commands,
		Metadata:       map[string]any{"globals": g},
		Writer:         g.Stdout,
		ErrWriter:      g.Stderr,
		ExitErrHandler: func(*cli.Context, error) {}, // main maps errors, once
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return exitcodes.Usagef(err.Error())
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(g.Stderr, "usmtkit: unknown command %q; run usmtkit --help for the list\n", name)
		},
	}
	for _, cmd := range app.Commands {
		addVolumeFlag(cmd)
		cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return exitcodes.Usagef(err.Error())
		}
	}
	return app
}

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globalOptions{Stdout: stdout, Stderr: stderr}
	app := newApp(g)
	before := objstore.Requests()
	err := app.RunContext(ctx, permuteArgs(app, args))
	reportRequests(g.Stderr, before)
	if err == nil && len(args) > 1 {
		if _, unknown := findCommand(app, args[1:]); unknown {
			return exitcodes.Usage
		}
	}
	return reportError(g, args, err)
}

// permuteArgs moves a command's flags in front of its positional
// arguments, so `usmtkit info STORE --json` works as technicians type it
// (urfave/cli v2 stops parsing flags at the first positional argument).
// Everything after "--" stays positional.
func permuteArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	ci := -1
	for i := 1; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			ci = i
			break
		}
	}
	if ci < 0 {
		return args
	}
	cmd := app.Command(args[ci])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			takesValue[n] = !isBool
		}
	}
	globals := map[string]bool{"-q": true, "--quiet": true, "-v": true, "--verbose": true}
	var flags, pos, global []string
	rest := args[ci+1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i:]...)
			break
		}
		if globals[a] && !takesValue[strings.TrimLeft(a, "-")] {
			global = append(global, a) // -q/-v after the command still mean the global flags
			continue
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	out := append([]string{}, args[:ci]...)
	out = append(out, global...)
	out = append(out, args[ci])
	out = append(out, flags...)
	return append(out, pos...)
}

// findCommand tells whether the first non-flag argument names no command.
func findCommand(app *cli.App, args []string) (string, bool) {
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		if app.Command(a) == nil && a != "help" {
			return a, true
		}
		return a, false
	}
	return "", false
}

// reportError prints err (lower-case, with the next step in it already)
// and returns its exit status. Under --json the error is also one JSON
// object on stderr, so scripts need not parse text.
func reportError(g *globalOptions, args []string, err error) int {
	code := exitcodes.FromError(err)
	if err == nil {
		return code
	}
	msg := err.Error()
	if errors.Is(err, context.Canceled) {
		msg = "interrupted; the results printed above are partial"
	}
	fmt.Fprintf(g.Stderr, "usmtkit: %s\n", msg)
	if code == exitcodes.Usage {
		fmt.Fprintln(g.Stderr, "run usmtkit --help (or usmtkit COMMAND --help) for the usage")
	}
	for _, a := range args {
		if a == "--json" {
			b, _ := json.Marshal(map[string]any{"type": "error", "message": msg, "exit_code": code})
			fmt.Fprintln(g.Stderr, string(b))
			break
		}
	}
	return code
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startCPUProfile(os.Getenv("USMTKIT_CPUPROFILE"))
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

// requestsEnv asks for the object-storage requests a command sent, on
// stderr when it ends (docs/object-storage.md; scripts/bench/s3.sh).
const requestsEnv = "USMTKIT_S3_REQUESTS"

// reportRequests prints the requests sent since before, when asked and
// when there were any.
func reportRequests(w io.Writer, before objstore.RequestCounts) {
	if os.Getenv(requestsEnv) == "" {
		return
	}
	if d := objstore.Requests().Since(before); d.Total() > 0 {
		fmt.Fprintf(w, "usmtkit: s3 requests: %s\n", d)
	}
}

// writeJSON prints one indented JSON object: the --json report of a
// command that produces a single summary.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// globalsOf returns the global options stored on the app by newApp.
func globalsOf(c *cli.Context) *globalOptions {
	return c.App.Metadata["globals"].(*globalOptions)
}

// startCPUProfile writes a CPU profile of the whole run to path when it is
// set (USMTKIT_CPUPROFILE, for the benchmark scripts; docs/benchmarks.md).
// A profile that cannot be started is reported and the run goes on.
func startCPUProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "usmtkit: warning: no CPU profile: %v\n", err)
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// shellQuote returns s as a shell word: as it is when it holds only
// characters no shell treats specially, else in single quotes. Share
// members' names hold a $ (SMPSTORE_1A2B3C4D$_PC042.tar.zst), which a shell
// would take for a variable ($_PC042) when the name is pasted unquoted.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_@%+=:,./-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
