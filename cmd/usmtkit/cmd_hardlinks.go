package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/hardlinkscan"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/store"
)

type hardlinksOptions struct {
	globalOptions
	Live    []string
	JSON    bool
	All     bool
	Plain   bool
	Compare string
}

func init() {
	register(&cli.Command{
		Name:      "hardlinks",
		Usage:     "tell which store files also live outside the store, and what deleting it frees",
		ArgsUsage: "STORE [STORE...]",
		Description: `Classifies every file of a hard-link store (or any folder of hard links)
against the live volume the store was captured from, mounted here:

   LINKED         the live file at the original path is the same inode
   COPY           the live path holds a separate file, not newer: SAME or
                  DIFFERENT by size, mtime and content (xxhash64)
   STALE          the live path holds a different, newer file: the link broke
                  (saved via a temporary file); the store has the old version
   MOVED          the live path is gone, the data is linked elsewhere (shown)
   ONLY-IN-STORE  no path outside the store holds the data: deleting the store loses it
   CONTROL        store metadata (catalog.mig, migstate.dat)

--live maps a drive onto the folder its volume is mounted at: --live C=/mnt/c
--live D=/mnt/d (a bare folder means C:, or the only drive in the store). For
a plain folder (--plain), --live is the one folder it mirrors by relative path.
Without --live only link groups and link counts are known, and the classes
say PROBABLY: ntfs-3g counts a DOS 8.3 name as an extra link.

Bytes: apparent (every path), unique (each inode once), freed if the store is
deleted (inodes with no path outside the store), lost (freed and not a SAME
copy). Nothing is written; mount NTFS with -o ro (ntfs-3g ignores O_NOATIME
on read-write mounts and updates access times of what it lists).
See docs/hardlinks.md.

Examples:
   usmtkit hardlinks /mnt/c/USMTMIG --live C=/mnt/c
   usmtkit hardlinks /mnt/c/USMTMIG /mnt/d/USMTMIG --live C=/mnt/c --live D=/mnt/d --json

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "live", Usage: "DRIVE=FOLDER where the live volume is mounted (repeat per drive)"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object per file, then a summary object (NDJSON)"},
			&cli.BoolFlag{Name: "all", Usage: "list LINKED files and SAME copies too (text output)"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
			&cli.StringFlag{Name: "compare", Value: "auto", Usage: "how copies are compared: auto, content, metadata"},
		},
		Action: func(c *cli.Context) error {
			o := &hardlinksOptions{globalOptions: *globalsOf(c), Live: c.StringSlice("live"), JSON: c.Bool("json"),
				All: c.Bool("all"), Plain: c.Bool("plain"), Compare: c.String("compare")}
			return runHardlinks(c.Context, o, c.Args().Slice())
		},
	})
}

// hardlinkRecord is one NDJSON line of `hardlinks --json` (docs/hardlinks.md).
type hardlinkRecord struct {
	Type         string `json:"type"` // "file"
	Class        string `json:"class"`
	StorePath    string `json:"store_path"`
	StorePathB64 string `json:"store_path_b64,omitempty"`
	WinPath      string `json:"win_path,omitempty"`
	Volume       int    `json:"volume"`
	User         string `json:"user,omitempty"`
	Size         int64  `json:"size"`
	MtimeNs      int64  `json:"mtime_ns"`
	Dev          uint64 `json:"dev"`
	Ino          uint64 `json:"ino"`
	Nlink        uint32 `json:"nlink"`
	StoreLinks   int    `json:"store_links"`
	LivePath     string `json:"live_path,omitempty"`
	LiveSize     *int64 `json:"live_size,omitempty"`
	LiveMtimeNs  *int64 `json:"live_mtime_ns,omitempty"`
	Compare      string `json:"compare,omitempty"`
	CompareBy    string `json:"compare_by,omitempty"`
	OtherPath    string `json:"other_path,omitempty"`
	Freed        bool   `json:"freed"`
	Lost         bool   `json:"lost"`
	Note         string `json:"note,omitempty"`
	Error        string `json:"error,omitempty"`
}

func fileRecord(f *hardlinkscan.File) hardlinkRecord {
	r := hardlinkRecord{Type: "file", Class: string(f.Class), StorePath: f.StorePath, WinPath: f.WinPath,
		Volume: f.Volume, User: f.User, Size: f.Size, MtimeNs: f.MtimeNs, Dev: f.Dev, Ino: f.Ino, Nlink: f.Nlink,
		StoreLinks: f.StoreLinks, LivePath: f.LivePath, Compare: f.Compare, CompareBy: f.CompareBy,
		OtherPath: f.OtherPath, Freed: f.Freed, Lost: f.Lost, Note: f.Note}
	if !utf8.ValidString(f.StorePath) {
		r.StorePathB64 = base64.StdEncoding.EncodeToString([]byte(f.StorePath))
	}
	if f.LiveExists {
		sz, mt := f.LiveSize, f.LiveMtimeNs
		r.LiveSize, r.LiveMtimeNs = &sz, &mt
	}
	if f.Err != nil {
		r.Error = f.Err.Error()
	}
	return r
}

// hardlinkSummary is the last NDJSON line: the totals.
type hardlinkSummary struct {
	Type string `json:"type"` // "summary"
	*hardlinkscan.Summary
	Clashes []string `json:"clashes"`
}

func parseCompare(s string) (hardlinkscan.CompareMode, error) {
	switch s {
	case "", "auto":
		return hardlinkscan.CompareAuto, nil
	case "content":
		return hardlinkscan.CompareContent, nil
	case "metadata", "meta":
		return hardlinkscan.CompareMetadata, nil
	}
	return 0, exitcodes.Usagef(fmt.Sprintf("--compare takes auto, content or metadata (got %q)", s))
}

// openForLinks opens the store and parses --live against its drives.
func openForLinks(g *globalOptions, args, liveArgs []string, plain bool) (store.Store, []hardlinkscan.LiveRoot, error) {
	s, err := openStores(g, args, plain)
	if err != nil {
		return nil, nil, err
	}
	info := s.Info()
	var drives []string
	isPlain := info.Kind == store.KindPlain
	if !isPlain {
		drives = hardlinkscan.StoreDrives(s)
	}
	live, err := hardlinkscan.ParseLive(liveArgs, drives, isPlain)
	if err != nil {
		s.Close()
		return nil, nil, exitcodes.Usagef(err.Error())
	}
	return s, live, nil
}

// liveHint says what --live to give, from where the store's volume is mounted.
func liveHint(info *store.Info) string {
	var hints []string
	for _, r := range info.Roots {
		if vr, err := hardlinkscan.VolumeRoot(r); err == nil {
			hints = append(hints, "--live "+vr)
		}
	}
	if len(hints) == 0 {
		return "give --live C=/mnt/c (the folder the store's drive is mounted at)"
	}
	if info.Kind == store.KindPlain {
		return "give --live FOLDER (the live folder this one mirrors)"
	}
	return fmt.Sprintf("give --live DRIVE=FOLDER for the volume the store's drive stood for; the store lies on the volume mounted at %s (e.g. %s)",
		strings.TrimPrefix(strings.Join(hints, ", "), "--live "), hints[0])
}

func runHardlinks(ctx context.Context, o *hardlinksOptions, args []string) error {
	if len(args) == 0 {
		return exitcodes.Usagef("hardlinks needs at least one STORE path")
	}
	mode, err := parseCompare(o.Compare)
	if err != nil {
		return err
	}
	s, live, err := openForLinks(&o.globalOptions, args, o.Live, o.Plain)
	if err != nil {
		return err
	}
	defer s.Close()
	info := s.Info()
	m := o.meter("classifying")
	w := o.Stdout
	var werr error
	if !o.JSON {
		fmt.Fprintf(w, "%-22s %12s  %s\n", "CLASS", "SIZE", "FILE")
	}
	sum, err := hardlinkscan.Scan(ctx, s, hardlinkscan.Options{Live: live, Compare: mode,
		Progress: func(files, bytes int64) { m.Set(files, bytes) }}, func(f *hardlinkscan.File) error {
		if werr != nil {
			return werr
		}
		if o.JSON {
			b, err := json.Marshal(fileRecord(f))
			if err == nil {
				_, err = fmt.Fprintln(w, string(b))
			}
			werr = err
			return err
		}
		if !o.All && (f.Class == hardlinkscan.Linked || f.Class == hardlinkscan.ProbablyLinked ||
			(f.Class == hardlinkscan.Copy && f.Compare == "same")) {
			return nil
		}
		werr = printHardlinkLine(w, f)
		return werr
	})
	m.Done()
	if sum == nil {
		return err
	}
	if len(live) == 0 {
		sum.Notes = append(sum.Notes, "no --live given: classes come from link counts only (\"probably\"); "+liveHint(info))
	}
	info = s.Info()
	if perr := printHardlinkSummary(o, sum, info.Clashes); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	return partialErr(sum.ProblemCount, len(info.Clashes))
}

func classWord(f *hardlinkscan.File) string {
	c := strings.ToUpper(string(f.Class))
	if f.Class == hardlinkscan.Copy && f.Compare != "" {
		c += " " + strings.ToUpper(f.Compare)
	}
	return c
}

func nsTime(ns int64) string { return time.Unix(0, ns).UTC().Format("2006-01-02 15:04:05") }

func printHardlinkLine(w io.Writer, f *hardlinkscan.File) error {
	name := f.WinPath
	if name == "" {
		name = f.StorePath
	}
	var extra []string
	switch f.Class {
	case hardlinkscan.Moved:
		extra = append(extra, "now at "+f.OtherPath)
	case hardlinkscan.Stale:
		extra = append(extra, fmt.Sprintf("live file %d bytes of %s UTC; store has the version of %s UTC", f.LiveSize, nsTime(f.LiveMtimeNs), nsTime(f.MtimeNs)))
	case hardlinkscan.Copy:
		extra = append(extra, "by "+f.CompareBy)
	}
	if f.Class != hardlinkscan.Moved && f.Class != hardlinkscan.Linked && f.OtherPath != "" {
		extra = append(extra, "store data also linked at "+f.OtherPath)
	}
	if f.Note != "" && f.Class != hardlinkscan.Stale && f.Class != hardlinkscan.Moved {
		extra = append(extra, f.Note)
	}
	if f.Err != nil {
		extra = append(extra, "error: "+f.Err.Error())
	}
	line := fmt.Sprintf("%-22s %12d  %s", classWord(f), f.Size, name)
	if len(extra) > 0 {
		line += "  (" + strings.Join(extra, "; ") + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func printHardlinkSummary(o *hardlinksOptions, sum *hardlinkscan.Summary, clashes []string) error {
	w := o.Stdout
	if clashes == nil {
		clashes = []string{}
	}
	if o.JSON {
		b, err := json.Marshal(hardlinkSummary{Type: "summary", Summary: sum, Clashes: clashes})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "store:       %s\n", strings.Join(sum.Roots, ", "))
	if len(sum.LiveRoots) == 0 {
		fmt.Fprintf(w, "live:        not given (link counts only)\n")
	}
	for _, l := range sum.LiveRoots {
		if l.Drive == "" {
			fmt.Fprintf(w, "live:        %s\n", l.Path)
		} else {
			fmt.Fprintf(w, "live:        %s: = %s\n", l.Drive, l.Path)
		}
	}
	if sum.CompareBy != "" {
		fmt.Fprintf(w, "copies:      compared by %s\n", sum.CompareBy)
	}
	fmt.Fprintf(w, "files:       %d, %s apparent, %s unique\n", sum.Files, progress.Bytes(sum.BytesApparent), progress.Bytes(sum.BytesUnique))
	for _, c := range hardlinkscan.Classes {
		n := sum.Classes[c]
		if n == nil {
			continue
		}
		fmt.Fprintf(w, "  %-24s %8d files %12s\n", strings.ToUpper(string(c)), n.Files, progress.Bytes(n.Bytes))
	}
	probably := ""
	if !sum.Live {
		probably = " (at least; from link counts)"
	}
	fmt.Fprintf(w, "deleting the store frees %s%s; %s of it in %d files exists nowhere else\n",
		progress.Bytes(sum.BytesFreed), probably, progress.Bytes(sum.BytesLost), sum.LostFiles)
	if len(sum.Users) > 0 {
		fmt.Fprintf(w, "%-24s %8s %12s %12s %12s %12s\n", "user", "files", "apparent", "unique", "freed", "lost")
		for _, u := range sum.Users {
			name := u.User
			if name == "" {
				name = "(not in a profile)"
			}
			fmt.Fprintf(w, "%-24s %8d %12s %12s %12s %12s\n", name, u.Files, progress.Bytes(u.BytesApparent),
				progress.Bytes(u.BytesUnique), progress.Bytes(u.BytesFreed), progress.Bytes(u.BytesLost))
		}
	}
	if sum.InStoreLinkGroups > 0 {
		fmt.Fprintf(w, "link groups: %d inodes have several paths inside the store\n", sum.InStoreLinkGroups)
	}
	if sc := sum.Scan; sc != nil {
		fmt.Fprintf(w, "live scan:   %s: %d folders, %d names, found %d of %d inodes elsewhere\n",
			strings.Join(sc.Roots, ", "), sc.Dirs, sc.Entries, sc.Found, sc.Wanted)
	}
	for _, c := range clashes {
		fmt.Fprintf(w, "CLASH:       %s exists on more than one volume; the first volume's copy was classified\n", c)
	}
	if sum.ProblemCount > 0 {
		fmt.Fprintf(w, "UNREADABLE:  %d\n", sum.ProblemCount)
		for _, p := range sum.Problems {
			fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Error)
		}
	}
	if !o.Quiet {
		for _, n := range sum.Notes {
			fmt.Fprintf(o.Stderr, "note: %s\n", n)
		}
	}
	return nil
}
