package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/hardlinkscan"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

type rdOptions struct {
	globalOptions
	Live  []string
	Yes   bool
	Force bool
	JSON  bool
	Plain bool
}

func init() {
	register(&cli.Command{
		Name:      "rd",
		Usage:     "remove a (hard-link) store safely, on every volume it spans: a dry run unless --yes",
		ArgsUsage: "STORE [STORE...]",
		Description: `The safe counterpart of UsmtUtils /rd. Without --yes it only prints what would
be removed and the bytes that would be freed. With --yes it removes the
store's own entries on every volume given (every StorePath folder, then the
folder itself) and nothing else: symlinks are removed as links and never
followed, mount points inside the store are neither entered nor removed.

A hard-link store has a folder of the same name on every NTFS volume holding
migrated data. rd looks for them on every mounted volume and refuses (exit 1,
nothing removed, even with --force) unless every one is given or
--all-volumes is passed; then all are checked and removed together.

It refuses (nothing removed, exit 1) unless --force when:
  - a file exists only in the store (ONLY-IN-STORE, STALE, or a COPY whose
    content differs): deleting the store would lose it; this needs --live;
  - no --live is given: nothing can be checked, so every file counts as
    having no known path outside the store;
  - a live path could not be examined, or the store could not be read fully;
  - a USMT store folder holds other things next to its USMT folder.
It always refuses "/", top-level folders, volume roots, home directories
and folders holding them or a --live folder, even with --force.
What could not be removed is listed (exit 3). See docs/hardlinks.md.

Examples:
   usmtkit rd /mnt/c/USMTMIG --live C=/mnt/c
   usmtkit rd /mnt/c/USMTMIG /mnt/d/USMTMIG --live C=/mnt/c --live D=/mnt/d --yes
   usmtkit rd /mnt/c/USMTMIG --all-volumes --live C=/mnt/c --live D=/mnt/d --yes

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "live", Usage: "DRIVE=FOLDER where the live volume is mounted (repeat per drive)"},
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "really remove (default: dry run)"},
			&cli.BoolFlag{Name: "force", Usage: "remove even when data exists only in the store or cannot be checked"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object on stdout"},
			&cli.BoolFlag{Name: "plain", Usage: "treat a folder as a plain tree even when a store lies below it"},
		},
		Action: func(c *cli.Context) error {
			o := &rdOptions{globalOptions: *globalsOf(c), Live: c.StringSlice("live"), Yes: c.Bool("yes"),
				Force: c.Bool("force"), JSON: c.Bool("json"), Plain: c.Bool("plain")}
			return runRd(c.Context, o, c.Args().Slice())
		},
	})
}

// rdLostFile is a file that removing the store would lose.
type rdLostFile struct {
	StorePath string `json:"store_path"`
	WinPath   string `json:"win_path,omitempty"`
	Class     string `json:"class"`
	Size      int64  `json:"size"`
}

// rdReport is the --json shape of `rd` (docs/hardlinks.md).
type rdReport struct {
	Type          string                     `json:"type"` // "rd"
	DryRun        bool                       `json:"dry_run"`
	Roots         []string                   `json:"roots"`
	LiveRoots     []hardlinkscan.LiveRoot    `json:"live_roots"`
	Files         int64                      `json:"files"`
	BytesApparent int64                      `json:"bytes_apparent"`
	BytesFreed    int64                      `json:"bytes_freed"`
	BytesLost     int64                      `json:"bytes_lost"`
	LostFiles     int64                      `json:"lost_files"`
	Lost          []rdLostFile               `json:"lost"` // the first 100
	Refused       bool                       `json:"refused"`
	Forced        bool                       `json:"forced"`
	Reasons       []string                   `json:"reasons"`
	Removed       *hardlinkscan.RemoveResult `json:"removed,omitempty"`
	FreeBefore    int64                      `json:"free_bytes_before,omitempty"`
	FreeAfter     int64                      `json:"free_bytes_after,omitempty"`
	Notes         []string                   `json:"notes"`
}

const rdMaxList = 100

func runRd(ctx context.Context, o *rdOptions, args []string) error {
	if len(args) == 0 {
		return exitcodes.Usagef("rd needs at least one STORE path")
	}
	s, live, err := openForLinks(&o.globalOptions, args, o.Live, o.Plain)
	if err != nil {
		return err
	}
	info := s.Info()
	if !info.Kind.IsDirectory() {
		s.Close()
		return fmt.Errorf("%s is a %s store, not a folder: delete it with rm after checking it; rd removes directory stores", strings.Join(args, ", "), info.Kind)
	}
	if missing := unopenedVolumes(info); len(missing) > 0 {
		s.Close()
		return fmt.Errorf("refusing to remove the store: it also has data on %s, which was not given; removing one volume's part would leave the rest (UsmtUtils /rd removes a store from every volume it spans): name every volume's store folder or pass --all-volumes; nothing was removed",
			strings.Join(missing, ", "))
	}
	roots := append([]string(nil), info.Roots...)
	for _, r := range roots {
		if err := hardlinkscan.CheckRemovable(r, live); err != nil {
			s.Close()
			return err
		}
	}
	rep := &rdReport{Type: "rd", DryRun: !o.Yes, Roots: roots, LiveRoots: live, Forced: o.Force,
		Lost: []rdLostFile{}, Reasons: []string{}, Notes: []string{}}
	if info.Kind != store.KindPlain {
		if foreign := foreignEntries(roots); len(foreign) > 0 {
			rep.Reasons = append(rep.Reasons, fmt.Sprintf("the store folder also holds %s, which is not part of a USMT store; move it out first", strings.Join(foreign, ", ")))
		}
	}
	var unknown int64
	m := o.meter("checking")
	// Content is always compared: a copy is only safe to lose when its
	// bytes are the same as the live file's.
	sum, err := hardlinkscan.Scan(ctx, s, hardlinkscan.Options{Live: live, Compare: hardlinkscan.CompareContent,
		Progress: func(files, bytes int64) { m.Set(files, bytes) }}, func(f *hardlinkscan.File) error {
		if f.Class == hardlinkscan.Unknown {
			unknown++
		}
		if f.Lost && len(rep.Lost) < rdMaxList {
			rep.Lost = append(rep.Lost, rdLostFile{StorePath: f.StorePath, WinPath: f.WinPath, Class: string(f.Class), Size: f.Size})
		}
		return nil
	})
	m.Done()
	s.Close()
	if err != nil {
		return err
	}
	rep.Files, rep.BytesApparent, rep.BytesFreed = sum.Files, sum.BytesApparent, sum.BytesFreed
	rep.BytesLost, rep.LostFiles = sum.BytesLost, sum.LostFiles
	rep.Notes = append(rep.Notes, sum.Notes...)
	switch {
	case len(live) == 0 && sum.NoOutside > 0:
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d files have no known path outside the store: without --live nothing can be checked; %s", sum.NoOutside, liveHint(info)))
	case sum.LostFiles > 0:
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d files (%s) exist only in the store (only-in-store, stale, or a copy that differs): deleting the store loses them; copy them out first (usmtkit hardlinks lists them)", sum.LostFiles, progress.Bytes(sum.BytesLost)))
	}
	if unknown > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d live files could not be examined", unknown))
	}
	if sum.ProblemCount > 0 {
		rep.Reasons = append(rep.Reasons, fmt.Sprintf("%d entries could not be read, so the check is incomplete", sum.ProblemCount))
	}
	rep.Refused = len(rep.Reasons) > 0 && !o.Force

	if rep.Refused || !o.Yes {
		if err := o.printRd(rep); err != nil {
			return err
		}
		if rep.Refused {
			return fmt.Errorf("refusing to remove the store: %s; nothing was removed (--force overrides)", strings.Join(rep.Reasons, "; "))
		}
		return nil
	}

	rep.FreeBefore = freeBytes(roots)
	res, rerr := hardlinkscan.Remove(ctx, roots)
	rep.Removed = res
	rep.FreeAfter = freeBytes(roots)
	if err := o.printRd(rep); err != nil {
		return err
	}
	if rerr != nil {
		return rerr
	}
	if res.Skipped > 0 {
		return fmt.Errorf("%d entries could not be removed (listed above); fix the cause and run rd again: %w", res.Skipped, exitcodes.ErrPartial)
	}
	return nil
}

// unopenedVolumes lists the store's folders on other volumes that are not
// part of the opened store.
func unopenedVolumes(info *store.Info) []string {
	var out []string
	for _, v := range info.OtherVolumes {
		if !v.Opened {
			out = append(out, v.Path)
		}
	}
	return out
}

// foreignEntries lists what a USMT StorePath holds besides its USMT or
// USMT3 folder (and ScanState's logs): things rd must not remove blindly.
func foreignEntries(roots []string) []string {
	var out []string
	for _, r := range roots {
		ents, err := safeio.ListDirPath(r)
		if err != nil {
			continue
		}
		for _, e := range ents {
			n := e.Name
			low := strings.ToLower(n)
			if low == "usmt" || low == "usmt3" || (!e.IsDir() && strings.HasSuffix(low, ".log")) {
				continue
			}
			out = append(out, filepath.Join(r, n))
		}
	}
	return out
}

// freeBytes sums the free space of the file systems holding roots (each
// file system once), for the before/after report.
func freeBytes(roots []string) int64 {
	var total int64
	seen := map[uint64]bool{}
	for _, r := range roots {
		dir := filepath.Dir(r)
		var st unix.Stat_t
		if unix.Stat(dir, &st) != nil || seen[st.Dev] {
			continue
		}
		seen[st.Dev] = true
		var fs unix.Statfs_t
		if unix.Statfs(dir, &fs) == nil {
			total += int64(fs.Bavail) * fs.Bsize
		}
	}
	return total
}

func (o *rdOptions) printRd(r *rdReport) error {
	w := o.Stdout
	if o.JSON {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	for _, root := range r.Roots {
		fmt.Fprintf(w, "store folder: %s\n", root)
	}
	for _, l := range r.LiveRoots {
		fmt.Fprintf(w, "live:         %s: = %s\n", l.Drive, l.Path)
	}
	fmt.Fprintf(w, "files:        %d (%s apparent)\n", r.Files, progress.Bytes(r.BytesApparent))
	fmt.Fprintf(w, "frees:        %s (inodes with no path outside the store)\n", progress.Bytes(r.BytesFreed))
	if r.LostFiles > 0 {
		fmt.Fprintf(w, "ONLY IN STORE: %d files, %s: deleting the store loses them\n", r.LostFiles, progress.Bytes(r.BytesLost))
		for _, l := range r.Lost {
			name := l.WinPath
			if name == "" {
				name = l.StorePath
			}
			fmt.Fprintf(w, "  %-14s %12d  %s\n", strings.ToUpper(l.Class), l.Size, name)
		}
		if int64(len(r.Lost)) < r.LostFiles {
			fmt.Fprintf(w, "  ... and %d more (usmtkit hardlinks lists them all)\n", r.LostFiles-int64(len(r.Lost)))
		}
	}
	for _, reason := range r.Reasons {
		if r.Forced {
			fmt.Fprintf(w, "FORCED past:  %s\n", reason)
		} else {
			fmt.Fprintf(w, "REFUSED:      %s\n", reason)
		}
	}
	if res := r.Removed; res != nil {
		fmt.Fprintf(w, "removed:      %d files, %d folders, %d other entries\n", res.Files, res.Dirs, res.Others)
		if r.FreeAfter > 0 || r.FreeBefore > 0 {
			fmt.Fprintf(w, "free space:   %s before, %s after (%s gained)\n", progress.Bytes(r.FreeBefore), progress.Bytes(r.FreeAfter), progress.Bytes(r.FreeAfter-r.FreeBefore))
		}
		for _, f := range res.Failed {
			fmt.Fprintf(w, "NOT REMOVED:  %s: %s\n", f.Path, f.Error)
		}
		if res.Skipped > int64(len(res.Failed)) {
			fmt.Fprintf(w, "  ... and %d more\n", res.Skipped-int64(len(res.Failed)))
		}
	} else if !r.Refused {
		fmt.Fprintf(w, "dry run:      nothing removed; run again with --yes to remove the store\n")
	}
	if !o.Quiet {
		for _, n := range r.Notes {
			fmt.Fprintf(o.Stderr, "note: %s\n", n)
		}
	}
	return nil
}
