package main

import (
	"context"
	"fmt"
	"io"

	"github.com/usmtkit/usmtkit/fusefs"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/store"
)

// extract --experimental-mig and mount --experimental-mig: the File\
// records of an unencrypted USMT.MIG, read by a layout inferred from
// public descriptions (store.MIGStore, docs/stores.md).

// migExperimentalFlagUsage is the --experimental-mig help line of both commands.
const migExperimentalFlagUsage = "read an unencrypted USMT.MIG's File records (EXPERIMENTAL: the layout is inferred, never checked against Windows; docs/stores.md)"

// migExperimentalJSON is what --json adds about a MIG read experimentally.
type migExperimentalJSON struct {
	Note         string             `json:"note"`
	Files        int64              `json:"files"`
	Bytes        int64              `json:"bytes"`
	LeftOut      []store.MIGLeftOut `json:"left_out"`
	LeftOutCount int64              `json:"left_out_count"`
}

func migJSON(s *store.MIGStore) *migExperimentalJSON {
	left, n := s.LeftOut()
	if left == nil {
		left = []store.MIGLeftOut{}
	}
	return &migExperimentalJSON{Note: store.MIGExperimentalNote, Files: s.Files(), Bytes: s.Bytes(), LeftOut: left, LeftOutCount: n}
}

// openExperimentalMIG opens the one USMT.MIG named by ds. The warning goes
// to stderr even with -q: it is about the data.
func openExperimentalMIG(ctx context.Context, g *globalOptions, ds []*store.Detection, marker bool) (*store.MIGStore, error) {
	d := ds[0]
	if len(ds) != 1 || d.Kind != store.KindMIG || d.MIG == nil {
		return nil, exitcodes.Usagef(fmt.Sprintf("--experimental-mig reads one USMT.MIG file, but %s is a %s store: drop --experimental-mig", d.Input, d.Kind))
	}
	fmt.Fprintf(g.Stderr, "usmtkit: warning: %s\n", store.MIGExperimentalNote)
	m := g.meter("reading the USMT.MIG records")
	s, err := store.OpenMIGDetected(ctx, d, store.MIGStoreOptions{Marker: marker, Progress: func(done, total int64) {
		m.SetTotal(0, total)
		m.Set(0, done)
	}})
	m.Done()
	if err != nil {
		return nil, err
	}
	return s, nil
}

// printMIGLeftOut lists on stderr what the MIG reader left out.
func printMIGLeftOut(g *globalOptions, s *store.MIGStore) {
	left, n := s.LeftOut()
	if n == 0 {
		return
	}
	fmt.Fprintf(g.Stderr, "usmtkit: %d records or parts of %s were left out (not interpreted, never guessed):\n", n, s.Info().Roots[0])
	for _, l := range left {
		fmt.Fprintf(g.Stderr, "usmtkit:   left out: %s\n", migLeftOutLine(l))
	}
	if n > int64(len(left)) {
		fmt.Fprintf(g.Stderr, "usmtkit:   ... and %d more\n", n-int64(len(left)))
	}
}

func migLeftOutLine(l store.MIGLeftOut) string {
	name := l.Path
	if name == "" {
		name = l.Name
	}
	if name == "" {
		return fmt.Sprintf("at %#x: %s", l.Offset, l.Why)
	}
	return fmt.Sprintf("%s (record at %#x): %s", name, l.Offset, l.Why)
}

// migPartial is the exit-3 error of a run that left records out.
func migPartial(s *store.MIGStore) error {
	if _, n := s.LeftOut(); n > 0 {
		return fmt.Errorf("%d records or parts of %s were left out (listed above; EXPERIMENTAL reader); everything else was read: %w", n, s.Info().Roots[0], exitcodes.ErrPartial)
	}
	return nil
}

// migsPartial is migPartial over the MIGs of a mount: the first that left
// records out, with how many others did too.
func migsPartial(migs []*store.MIGStore) error {
	var first error
	more := 0
	for _, s := range migs {
		if err := migPartial(s); err != nil {
			if first == nil {
				first = err
			} else {
				more++
			}
		}
	}
	if more > 0 {
		return fmt.Errorf("%w (and %d more USMT.MIG files left records out)", first, more)
	}
	return first
}

// openExtractMIG opens the USMT.MIG of extract --experimental-mig.
func openExtractMIG(ctx context.Context, o *extractOptions, paths []string) (store.Store, error) {
	if o.StoreID != "" {
		return nil, exitcodes.Usagef("--store-id picks a store of a share copy; --experimental-mig reads one USMT.MIG file: give the file itself")
	}
	if o.Layout == "store" {
		return nil, exitcodes.Usagef("--layout store writes a store LoadState can use, which needs the store's catalog.mig; a USMT.MIG read by --experimental-mig has none: use --layout windows")
	}
	ds, err := detectAll(paths, o.Plain)
	if err != nil {
		return nil, err
	}
	s, err := openExperimentalMIG(ctx, &o.globalOptions, ds, false)
	if err != nil {
		return nil, err
	}
	o.mig = s
	return s, nil
}

// printMIGSummary adds the EXPERIMENTAL line and the left-out list to
// extract's text summary.
func printMIGSummary(w io.Writer, s *store.MIGStore) error {
	_, err := fmt.Fprintf(w, "  %s\n", store.MIGExperimentalNote)
	left, n := s.LeftOut()
	if err != nil || n == 0 {
		return err
	}
	fmt.Fprintf(w, "  LEFT OUT (USMT.MIG records not interpreted): %d\n", n)
	for _, l := range left {
		fmt.Fprintf(w, "    %s\n", migLeftOutLine(l))
	}
	if n > int64(len(left)) {
		_, err = fmt.Fprintf(w, "    ... and %d more\n", n-int64(len(left)))
	}
	return err
}

// readyPartial is the status a --background child reports when it serves
// but left records of a USMT.MIG out: the parent then exits 3.
const readyPartial = "partial"

func readyStatus(o *mountOptions) string {
	if migsPartial(o.migs) != nil {
		return readyPartial
	}
	return "ok"
}

// openShareMIG opens the unencrypted USMT.MIG of a share member for mount
// --experimental-mig, with EXPERIMENTAL.txt at the member's root. The
// warning is printed once per mount.
func openShareMIG(ctx context.Context, o *mountOptions, m store.Member) (*store.MIGStore, error) {
	d, err := store.Detect(m.Input)
	if err != nil {
		return nil, err
	}
	if len(o.migs) == 0 {
		fmt.Fprintf(o.Stderr, "usmtkit: warning: %s\n", store.MIGExperimentalNote)
	}
	s, err := store.OpenMIGDetected(ctx, d, store.MIGStoreOptions{Marker: true})
	if err != nil {
		return nil, err
	}
	printMIGLeftOut(&o.globalOptions, s)
	o.migs = append(o.migs, s)
	return s, nil
}

// openMountMIG opens the USMT.MIG of mount --experimental-mig, with
// EXPERIMENTAL.txt at the mount's root.
func openMountMIG(ctx context.Context, ds []*store.Detection, o *mountOptions, fopts fusefs.Options) (*fusefs.FS, func(), string, error) {
	s, err := openExperimentalMIG(ctx, &o.globalOptions, ds, true)
	if err != nil {
		return nil, nil, "", err
	}
	printMIGLeftOut(&o.globalOptions, s)
	f, err := fusefs.New(s, fopts)
	if err != nil {
		s.Close()
		return nil, nil, "", fmt.Errorf("mounting %s: %w", ds[0].Input, err)
	}
	o.migs = []*store.MIGStore{s}
	what := fmt.Sprintf("%s (EXPERIMENTAL USMT.MIG reader: %d files; read %s at the mount's root)", ds[0].Input, s.Files(), store.MIGMarkerName)
	return f, func() { s.Close() }, what, nil
}
