package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/store"
)

type lsOptions struct {
	globalOptions
	Recursive bool
	JSON      bool
	User      string
	Drive     string
	Plain     bool
}

func init() {
	register(&cli.Command{
		Name:      "ls",
		Usage:     "list a store in the Windows view",
		ArgsUsage: `STORE [STORE...] [WINDOWS-PATH]`,
		Description: `Lists a folder of the store by its Windows path (C:\Users\jdoe\Documents),
like ls -l: type and Windows attributes (R read-only, H hidden, S system,
A archive, E encrypted: raw EFS data, also said after the name), last
write time, size, name. Without a path it lists the drives
and the store's control files. The last argument is taken as a Windows path
when it is not an existing path on this machine. Several STOREs are the
volumes of one multi-volume store.

Examples:
   usmtkit ls /mnt/c/USMTMIG 'C:\Users\jdoe\Documents'
   usmtkit ls -R --user jdoe --json /srv/stores/PC042

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"R"}, Usage: "list everything below the path"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per entry (docs/manifest.md, record fields)"},
			&cli.StringFlag{Name: "user", Usage: "only this profile folder name (Users\\NAME, Documents and Settings\\NAME)"},
			&cli.StringFlag{Name: "drive", Usage: "only this drive letter (C, D, ...)"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
		},
		Action: func(c *cli.Context) error {
			o := &lsOptions{globalOptions: *globalsOf(c), Recursive: c.Bool("recursive"), JSON: c.Bool("json"),
				User: c.String("user"), Drive: c.String("drive"), Plain: c.Bool("plain")}
			return runLs(c.Context, o, c.Args().Slice())
		},
	})
}

// splitStoresAndPath separates store paths from a trailing Windows path:
// the last argument is a Windows path when it does not exist here.
func splitStoresAndPath(args []string) (stores []string, win string) {
	if len(args) >= 2 {
		last := args[len(args)-1]
		if _, err := os.Stat(last); err != nil || strings.Contains(last, `\`) || (len(last) >= 2 && last[1] == ':') {
			return args[:len(args)-1], last
		}
	}
	return args, ""
}

// openStores detects and opens the stores named on the command line.
func openStores(g *globalOptions, paths []string, plain bool) (store.Store, error) {
	ds, err := detectAll(paths, plain)
	if err != nil {
		return nil, err
	}
	return openDetected(g, ds)
}

// openDetected opens detected stores and prints their warnings on stderr:
// every command shows them, even with -q, since they are about the data.
// It is the one place the commands open a store, so it is where the
// store's other volumes are looked for (and opened with --all-volumes).
func openDetected(g *globalOptions, ds []*store.Detection) (store.Store, error) {
	s, err := store.OpenVolumes(ds, store.VolumeOptions{All: g.AllVolumes, Skip: skipVolume})
	if err != nil {
		return nil, err
	}
	for _, w := range s.Info().Warnings {
		fmt.Fprintf(g.Stderr, "usmtkit: warning: %s\n", w)
	}
	return s, nil
}

func runLs(ctx context.Context, o *lsOptions, args []string) error {
	if len(args) == 0 {
		return exitcodes.Usagef("ls needs a STORE path")
	}
	if o.Drive != "" && (len(strings.TrimSuffix(o.Drive, ":")) != 1) {
		return exitcodes.Usagef(fmt.Sprintf("--drive takes one letter, like --drive C (got %q)", o.Drive))
	}
	paths, win := splitStoresAndPath(args)
	if len(paths) == 1 && win == "" {
		if ds, err := detectAll(paths, o.Plain); err == nil && len(ds) == 1 && ds[0].Kind == store.KindMIG && ds[0].MIG != nil {
			return runLsMIG(ctx, o, ds[0])
		}
	}
	s, err := openStores(&o.globalOptions, paths, o.Plain)
	if err != nil {
		return err
	}
	defer s.Close()
	start := ""
	if win != "" {
		if start, err = store.ResolveWinPath(s, win); err != nil {
			return fmt.Errorf("%w; list the parent folder with usmtkit ls to see what is there", err)
		}
	}
	p := &lister{o: o, w: o.Stdout}
	if o.Recursive {
		err = p.walk(ctx, s, start)
	} else {
		err = p.list(s, start, win == "")
	}
	if err != nil {
		return err
	}
	return partialErr(p.problems, 0)
}

type lister struct {
	o        *lsOptions
	w        io.Writer
	problems int64
}

func (p *lister) keep(e *store.Entry) bool {
	if p.o.Drive != "" && !strings.EqualFold(store.DriveOf(e.WinPath), strings.TrimSuffix(p.o.Drive, ":")) {
		return false
	}
	if p.o.User != "" && !strings.EqualFold(store.UserOf(e.WinPath), p.o.User) {
		return false
	}
	return true
}

func (p *lister) problem(e *store.Entry, err error) {
	p.problems++
	fmt.Fprintf(p.o.Stderr, "usmtkit: %s: %v\n", displayName(e), err)
}

// list prints one folder (or one file). At the store root of a USMT layout
// it shows the drives and the control files: the Windows view.
func (p *lister) list(s store.Store, sp string, root bool) error {
	e, err := s.Stat(sp)
	if err != nil {
		return err
	}
	if e.Type != store.TypeDir {
		return p.print(e, false, nil)
	}
	dirs := []string{sp}
	if root {
		if f, err := store.ResolveWinPath(s, "USMT/File"); err == nil {
			dirs = []string{f}
		} else if f, err := store.ResolveWinPath(s, "USMT3/File"); err == nil {
			dirs = []string{f}
		}
	}
	for _, d := range dirs {
		kids, err := s.ReadDir(d)
		if err != nil {
			p.problem(e, err)
		}
		for i := range kids {
			if err := p.print(&kids[i], false, nil); err != nil {
				return err
			}
		}
	}
	if root {
		for _, c := range s.Info().Control {
			if ce, err := s.Stat(c.StorePath); err == nil {
				if err := p.print(ce, true, nil); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// walk prints everything below sp.
func (p *lister) walk(ctx context.Context, s store.Store, sp string) error {
	return s.Walk(ctx, func(e *store.Entry, werr error) error {
		if sp != "" && e.StorePath != sp && !strings.HasPrefix(e.StorePath, sp+"/") {
			if e.Type == store.TypeDir && strings.HasPrefix(sp, e.StorePath+"/") || e.StorePath == "" {
				return nil // an ancestor of the start: go on down
			}
			if e.Type == store.TypeDir {
				return store.SkipDir
			}
			return nil
		}
		if werr != nil {
			p.problem(e, werr)
		}
		if e.StorePath == "" || (e.WinPath == "" && !e.Control && e.Type == store.TypeDir && s.Info().Kind != store.KindPlain) {
			return nil // the store's own folders (USMT, USMT/File) are not Windows data
		}
		return p.print(e, true, werr)
	})
}

func displayName(e *store.Entry) string {
	if e.WinPath != "" {
		return e.WinPath
	}
	return e.StorePath
}

func (p *lister) print(e *store.Entry, full bool, werr error) error {
	if !p.keep(e) {
		return nil
	}
	if p.o.JSON {
		r := lsRecord{Record: manifest.FromEntry(e)}
		if werr != nil {
			r.Error = werr.Error()
		}
		if store.IsEFS(e) {
			r.EFS, r.Note = true, store.EFSNote
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(p.w, string(b))
		return err
	}
	name := e.Name()
	if full {
		name = displayName(e)
	}
	if e.Control {
		name = "[control] " + e.StorePath
	} else if e.WinPath != "" && len(e.WinPath) == 3 && e.WinPath[1] == ':' {
		name = e.WinPath // a drive folder
	}
	size := fmt.Sprintf("%12d", e.Size)
	typ := "-"
	switch e.Type {
	case store.TypeDir:
		typ, size = "d", fmt.Sprintf("%12s", "<DIR>")
	case store.TypeSymlink:
		typ = "l"
		name += " -> " + e.LinkTarget
	case store.TypeOther:
		typ = "?"
	}
	if store.IsEFS(e) {
		name += "  [" + store.EFSNote + "]"
	}
	_, err := fmt.Fprintf(p.w, "%s%s  %s %s  %s\n", typ, attrString(e), time.Unix(0, e.MtimeNs).UTC().Format("2006-01-02 15:04:05"), size, name)
	return err
}

// lsRecord is one line of ls --json: the manifest record of the entry,
// plus efs and its note for a file carrying the NTFS encrypted attribute
// (docs/cli.md).
type lsRecord struct {
	manifest.Record
	EFS  bool   `json:"efs,omitempty"`
	Note string `json:"note,omitempty"`
}

// attrString renders the Windows attributes a technician looks for; E
// (encrypted, as Explorer shows it) marks raw EFS data.
func attrString(e *store.Entry) string {
	if !e.HasWinAttr {
		return "     "
	}
	b := []byte("-----")
	for i, f := range []struct {
		bit uint32
		c   byte
	}{{0x1, 'R'}, {0x2, 'H'}, {0x4, 'S'}, {0x20, 'A'}, {store.FileAttributeEncrypted, 'E'}} {
		if e.WinAttrs&f.bit != 0 {
			b[i] = f.c
		}
	}
	return string(b)
}
