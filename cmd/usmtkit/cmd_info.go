package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/objstore"
	"github.com/usmtkit/usmtkit/store"
)

type infoOptions struct {
	globalOptions
	JSON  bool
	Plain bool
}

func init() {
	register(&cli.Command{
		Name:      "info",
		Usage:     "say what a store is and what it holds",
		ArgsUsage: "STORE [STORE...]",
		Description: `Detects the store kind at any level of its path and walks it once: kind, USMT
version, volumes and drives, user profiles, files, folders, bytes (apparent
and unique, hard links counted once), control files, encryption, and
everything that could not be read. Several STOREs are the volumes of one
multi-volume hard-link store. A state migration point share copy lists its
stores; a USMT.MIG file is identified and structurally walked; an s3://
prefix (ending in /) lists the archives under it with their users.

Examples:
   usmtkit info /mnt/c/_SMSTaskSequence/StateStore
   usmtkit info /mnt/c/USMTMIG /mnt/d/USMTMIG --json
   usmtkit info s3://migrations/site12/

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "one JSON object on stdout"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
		},
		Action: func(c *cli.Context) error {
			o := &infoOptions{globalOptions: *globalsOf(c), JSON: c.Bool("json"), Plain: c.Bool("plain")}
			return runInfo(c.Context, o, c.Args().Slice())
		},
	})
}

// infoReport is the --json shape of `info` (docs/cli.md).
type infoReport struct {
	Input     []string            `json:"input"`
	Kind      store.Kind          `json:"kind"`
	StoreType string              `json:"store_type"` // uncompressed, hard-link, compressed, share, archive, plain
	Version   string              `json:"version,omitempty"`
	Level     string              `json:"level"`
	Roots     []string            `json:"roots"`
	Encrypted bool                `json:"encrypted"`
	Readable  bool                `json:"readable"` // usmtkit can read the contents
	Control   []store.ControlFile `json:"control_files"`
	Clashes   []string            `json:"clashes"`
	Notes     []string            `json:"notes"`
	Warnings  []string            `json:"warnings"`
	// MissingData: see store.Info.MissingData; any entry makes info exit 3.
	MissingData []string `json:"missing_data"`
	// OtherVolumes: the store's folders on other mounted volumes (store.OpenVolumes).
	OtherVolumes []store.OtherVolume `json:"other_volumes"`
	Summary      *store.Summary      `json:"summary,omitempty"`
	MIG          *store.MIGInfo      `json:"mig,omitempty"`
	Members      []store.Member      `json:"stores,omitempty"`
}

func detectAll(args []string, plain bool) ([]*store.Detection, error) {
	return detectAllWith(args, store.DetectOptions{Plain: plain})
}

func runInfo(ctx context.Context, o *infoOptions, args []string) error {
	if len(args) == 0 {
		return exitcodes.Usagef("info needs at least one STORE path")
	}
	for _, a := range args {
		if objstore.IsPrefix(a) {
			if len(args) > 1 {
				return exitcodes.Usagef("give an s3:// prefix alone: " + a + " names every archive under it")
			}
			return runInfoPrefix(ctx, o, a)
		}
	}
	ds, err := detectAll(args, o.Plain)
	if err != nil {
		return err
	}
	d := ds[0]
	rep := &infoReport{Input: args, Kind: d.Kind, Version: d.Version, Level: d.Level, Notes: d.Notes}
	switch d.Kind {
	case store.KindMIG:
		if len(ds) > 1 {
			return exitcodes.Usagef("a USMT.MIG is a single-file store: give it alone")
		}
		rep.StoreType, rep.Roots, rep.MIG, rep.Encrypted = "compressed", []string{d.Root}, d.MIG, d.MIG.Encrypted
		rep.Notes = append(rep.Notes, "usmtkit cannot read USMT.MIG contents (the format is not documented): on Windows run usmtutils /extract, or restore with loadstate")
		if err := o.printInfo(rep); err != nil {
			return err
		}
		if d.MIG.Damaged() || d.MIG.WalkCapped {
			// A damage report (or one that stopped short) never exits 0.
			return fmt.Errorf("%s looks damaged (see above): copy it again from its source if you can, then run usmtutils /verify on Windows: %w", d.Root, exitcodes.ErrPartial)
		}
		return nil
	case store.KindSMP:
		if len(ds) > 1 {
			return exitcodes.Usagef("give one state migration point share copy at a time")
		}
		rep.StoreType, rep.Roots, rep.Members, rep.Warnings = "share", []string{d.Root}, d.Members, d.Warnings
		if err := o.printInfo(rep); err != nil {
			return err
		}
		if p := d.Problems(); len(p) > 0 {
			return fmt.Errorf("share copy %s: %d problem(s): %s: %w", d.Root, len(p), strings.Join(p, "; "), exitcodes.ErrPartial)
		}
		return nil
	}
	s, err := openDetected(&o.globalOptions, ds)
	if err != nil {
		return err
	}
	defer s.Close()
	m := o.meter("walking")
	sum, err := store.Summarize(ctx, s, func(files, bytes int64) { m.Set(files, bytes) })
	m.Done()
	info := s.Info()
	rep.Kind, rep.Version, rep.Level, rep.Roots = info.Kind, info.Version, info.Level, info.Roots
	rep.Encrypted, rep.Control, rep.Clashes, rep.Notes, rep.Warnings = info.Encrypted, info.Control, info.Clashes, info.Notes, info.Warnings
	rep.MissingData, rep.OtherVolumes = info.MissingData, info.OtherVolumes
	rep.Summary, rep.Readable = sum, true
	rep.StoreType = storeType(info.Kind, sum)
	if perr := o.printInfo(rep); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	if perr := partialErr(sum.ProblemCount, len(info.Clashes)); perr != nil || len(info.MissingData) == 0 {
		return perr
	}
	return fmt.Errorf("missing data: %s: %w", strings.Join(info.MissingData, "; "), exitcodes.ErrPartial)
}

// partialErr turns counts of unreadable entries and volume clashes into
// the partial status, or nil.
func partialErr(problems int64, clashes int) error {
	var parts []string
	if problems > 0 {
		parts = append(parts, fmt.Sprintf("%d entries could not be read", problems))
	}
	if clashes > 0 {
		parts = append(parts, fmt.Sprintf("%d paths exist on more than one volume (the first volume's copy is shown)", clashes))
	}
	if len(parts) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", strings.Join(parts, "; "), exitcodes.ErrPartial)
}

func storeType(k store.Kind, sum *store.Summary) string {
	switch k {
	case store.KindUSMTDir, store.KindUSMT3Dir:
		if sum != nil && sum.LinkedOutside > 0 {
			return "hard-link"
		}
		return "uncompressed"
	case store.KindArchive:
		return "archive"
	}
	return "plain"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (o *infoOptions) printInfo(r *infoReport) error {
	w := o.Stdout
	if o.JSON {
		for _, p := range []*[]string{&r.Clashes, &r.Notes, &r.Roots, &r.Warnings} {
			if *p == nil {
				*p = []string{}
			}
		}
		if r.Control == nil {
			r.Control = []store.ControlFile{}
		}
		if r.OtherVolumes == nil {
			r.OtherVolumes = []store.OtherVolume{}
		}
		return writeJSON(w, r)
	}
	kind := string(r.Kind)
	if r.Version != "" {
		kind += ", " + r.Version
	}
	fmt.Fprintf(w, "store:       %s\n", strings.Join(r.Input, ", "))
	fmt.Fprintf(w, "kind:        %s store (%s)\n", r.StoreType, kind)
	fmt.Fprintf(w, "found at:    %s level\n", r.Level)
	if len(r.Roots) > 1 {
		fmt.Fprintf(w, "volumes:     %d: %s\n", len(r.Roots), strings.Join(r.Roots, ", "))
	} else if len(r.Roots) == 1 {
		fmt.Fprintf(w, "root:        %s\n", r.Roots[0])
	}
	for _, v := range r.OtherVolumes {
		if v.Opened {
			fmt.Fprintf(w, "also on:     %s (%s on %s; opened by --all-volumes)\n", v.Path, v.FSType, v.MountPoint)
		} else {
			fmt.Fprintf(w, "NOT READ:    this store also has data on %s (%s on %s): pass --all-volumes or name it too\n", v.Path, v.FSType, v.MountPoint)
		}
	}
	fmt.Fprintf(w, "encrypted:   %s\n", yesNo(r.Encrypted))
	switch r.Kind {
	case store.KindMIG:
		g := r.MIG
		fmt.Fprintf(w, "readable:    no (USMT.MIG contents are not readable by usmtkit)\n")
		fmt.Fprintf(w, "size:        %s\n", progress.Bytes(g.Size))
		fmt.Fprintf(w, "signature:   1giM, format version %d\n", g.FormatVersion)
		if g.FirstRecord >= 0 {
			fmt.Fprintf(w, "records:     %d walked from offset %#x (first MRTS record)\n", g.Records, g.FirstRecord)
		} else {
			fmt.Fprintf(w, "records:     no MRTS record found in the first 64 KiB\n")
		}
		for _, n := range g.FirstNames {
			fmt.Fprintf(w, "  record:    %s\n", n)
		}
		fmt.Fprintf(w, "evidence:    %s\n", g.EncryptionEvidence)
		switch {
		case g.Truncated:
			fmt.Fprintf(w, "damage:      the file is truncated: a record runs past its end at %#x\n", g.ChainEnd)
		case g.ChainBroken:
			fmt.Fprintf(w, "damage:      the record chain breaks at %#x before the end of the file\n", g.ChainEnd)
		case g.TrailingGarbage:
			fmt.Fprintf(w, "damage:      %d bytes follow the last record at %#x (a healthy file ends there or 8 bytes later)\n", g.Size-g.ChainEnd, g.ChainEnd)
		case g.FirstRecord < 0:
			fmt.Fprintf(w, "damage:      no record chain could be walked\n")
		case g.WalkCapped:
			fmt.Fprintf(w, "not walked:  the walk stops after %d records; the rest of the file, from %#x, was not looked at\n", g.Records, g.ChainEnd)
		case g.TailBytes > 0:
			fmt.Fprintf(w, "tail:        %d bytes after the last record (as PhotoRec expects)\n", g.TailBytes)
		}
		fmt.Fprintf(w, "based on:    public descriptions only (file(1) Magdir/windows, PhotoRec file_mig.c): the signature and record chain are stated there; the encryption verdict is inferred from the bytes; the contents' layout is unknown (docs/stores.md)\n")
		if g.Encrypted {
			fmt.Fprintf(w, "next step:   get the key from the ConfigMgr console (User State Migration > recovery information) and run on Windows: usmtutils /extract FILE DEST /decrypt /key:KEY\n")
		} else {
			fmt.Fprintf(w, "next step:   on Windows run usmtutils /extract FILE DEST (or loadstate) to restore it\n")
			fmt.Fprintf(w, "here:        usmtkit extract --experimental-mig FILE DEST (or mount --experimental-mig) reads its File records by a layout inferred from public descriptions: EXPERIMENTAL, compare with usmtutils (docs/stores.md)\n")
		}
	case store.KindSMP:
		fmt.Fprintf(w, "stores:      %d\n", len(r.Members))
		for _, m := range r.Members {
			name := strings.TrimPrefix(m.Share+"/"+m.ID, "/")
			if m.Err != "" {
				fmt.Fprintf(w, "  %s  PROBLEM: %s\n", name, m.Err)
				continue
			}
			fmt.Fprintf(w, "  %s  %-12s %10s  encrypted: %s\n", name, m.Kind, progress.Bytes(m.Size), yesNo(m.Encrypted))
		}
		for _, x := range r.Warnings {
			fmt.Fprintf(w, "WARNING:     %s\n", x)
		}
	default:
		s := r.Summary
		fmt.Fprintf(w, "readable:    yes\n")
		if len(r.Control) == 0 && (r.Kind == store.KindUSMTDir || r.Kind == store.KindUSMT3Dir) {
			fmt.Fprintf(w, "catalog:     MISSING (LoadState needs catalog.mig; the files can still be copied out)\n")
		}
		for _, c := range r.Control {
			fmt.Fprintf(w, "control:     %s (%s)\n", c.StorePath, progress.Bytes(c.Size))
		}
		for _, m := range r.MissingData {
			fmt.Fprintf(w, "MISSING:     %s\n", m)
		}
		var drives []string
		for _, d := range s.Drives {
			drives = append(drives, fmt.Sprintf("%s: (%d files, %s)", d.Drive, d.Files, progress.Bytes(d.Bytes)))
		}
		if len(drives) > 0 {
			fmt.Fprintf(w, "drives:      %s\n", strings.Join(drives, ", "))
		}
		if len(s.Users) > 0 {
			fmt.Fprintf(w, "users:       %d\n", len(s.Users))
			for _, u := range s.Users {
				fmt.Fprintf(w, "  %-40s %8d files %10s\n", u.Path, u.Files, progress.Bytes(u.Bytes))
			}
		}
		fmt.Fprintf(w, "files:       %d (%d control)\n", s.Files, s.Control)
		fmt.Fprintf(w, "folders:     %d\n", s.Dirs)
		if s.Symlinks+s.Others > 0 {
			fmt.Fprintf(w, "other:       %d symlinks, %d FIFOs/sockets/devices (listed, never read)\n", s.Symlinks, s.Others)
		}
		fmt.Fprintf(w, "bytes:       %s apparent, %s unique (hard links once)\n", progress.Bytes(s.BytesApparent), progress.Bytes(s.BytesUnique))
		if s.EFSFiles > 0 {
			fmt.Fprintf(w, "EFS:         %d files (%s) carry the NTFS encrypted attribute: %s (usmtkit ls -R marks them E)\n", s.EFSFiles, progress.Bytes(s.EFSBytes), store.EFSNote)
		}
		if s.MultiLinked > 0 {
			fmt.Fprintf(w, "hard links:  %d files have links outside the store (run usmtkit hardlinks before deleting it); %d link groups inside the store\n", s.LinkedOutside, s.InStoreLinkGroups)
		}
		for _, c := range r.Clashes {
			fmt.Fprintf(w, "CLASH:       %s exists on more than one volume; the first volume's copy is used\n", c)
		}
		if s.ProblemCount > 0 {
			fmt.Fprintf(w, "UNREADABLE:  %d entries\n", s.ProblemCount)
			for _, p := range s.Problems {
				fmt.Fprintf(w, "  %s: %s\n", p.StorePath, p.Error)
			}
			if int64(len(s.Problems)) < s.ProblemCount {
				fmt.Fprintf(w, "  ... and %d more\n", s.ProblemCount-int64(len(s.Problems)))
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note:        %s\n", n)
	}
	return nil
}
