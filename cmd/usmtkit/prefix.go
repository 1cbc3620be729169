package main

// Archives under an s3:// prefix (docs/object-storage.md, "Archives under
// a prefix"): s3://BUCKET/PREFIX/ names every archive below it, as a
// share copy names its stores. info lists them with their users; verify,
// index and compress take them as many stores (fleet.go).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/objstore"
	"github.com/usmtkit/usmtkit/store"
)

// archiveSuffix ends the key of every archive under a prefix, as compress
// over many stores names them; other objects are counted, not read.
const archiveSuffix = ".tar.zst"

// kindPrefix is info's kind for an s3:// prefix.
const kindPrefix store.Kind = "s3-prefix"

// prefixListing is what a prefix holds.
type prefixListing struct {
	Prefix   objstore.Location
	Archives []objstore.Object
	Others   int // objects whose keys do not end in archiveSuffix
}

// listPrefix lists the archives under an s3:// prefix; none is an error
// (exit 10).
func listPrefix(ctx context.Context, name string) (*prefixListing, error) {
	loc, err := objstore.ParsePrefix(name)
	if err != nil {
		return nil, exitcodes.Usagef(err.Error())
	}
	c, err := objClient()
	if err != nil {
		return nil, err
	}
	l := &prefixListing{Prefix: loc}
	err = c.List(ctx, loc, func(o objstore.Object) {
		switch {
		case strings.HasSuffix(o.Key, "/"):
			// A folder marker (some servers keep one per "folder"): no data.
		case strings.HasSuffix(o.Key, archiveSuffix):
			l.Archives = append(l.Archives, o)
		default:
			l.Others++
		}
	})
	if err != nil {
		return nil, err
	}
	if len(l.Archives) == 0 {
		return nil, l.noArchives()
	}
	return l, nil
}

// othersNote says what a listing left unread, or "".
func (l *prefixListing) othersNote() string {
	if l.Others == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d object(s) whose keys do not end in %s were not read (usmtkit archives end in %s)", l.Prefix, l.Others, archiveSuffix, archiveSuffix)
}

// noArchives is the error of a prefix with no archive under it: exit 10.
func (l *prefixListing) noArchives() error {
	more := ""
	if l.Others > 0 {
		more = fmt.Sprintf(" (%d other objects)", l.Others)
	}
	return fmt.Errorf("%s: no archive (a key ending in %s) under this prefix%s: %w", l.Prefix, archiveSuffix, more, store.ErrNoStore)
}

// prefixStoreID names an archive found under a prefix by its key below
// the prefix, without .tar.zst: compress over many stores uploads a
// share member as <SMPSTORE folder>_<store folder>.tar.zst, so index and
// verify over the prefix use the manifest names that index over the
// share copy gave the same stores.
func prefixStoreID(prefix objstore.Location, o objstore.Object) string {
	return strings.TrimSuffix(strings.TrimPrefix(o.Key, prefix.Key), archiveSuffix)
}

// prefixDetectError is the error of a command that reads one store when
// given a prefix.
func prefixDetectError(name string) error {
	return exitcodes.Usagef(fmt.Sprintf("%s names a prefix (it ends in /), not one archive: `usmtkit info %s` lists the archives under it and their users; verify, index and compress take every archive under it", name, name))
}

// prefixArchive is one archive of `info PREFIX` (the `stores` of
// info --json, docs/cli.md).
type prefixArchive struct {
	store.Member
	Modified time.Time           `json:"modified"`
	Source   store.Kind          `json:"source_kind,omitempty"` // the kind of store it was made from
	Files    int64               `json:"files"`
	Bytes    int64               `json:"bytes_apparent"`
	Users    []store.UserSummary `json:"users"`
}

// prefixReport is the --json shape of `info PREFIX`.
type prefixReport struct {
	Input     []string        `json:"input"`
	Kind      store.Kind      `json:"kind"`       // s3-prefix
	StoreType string          `json:"store_type"` // prefix
	Roots     []string        `json:"roots"`
	Notes     []string        `json:"notes"`
	Archives  []prefixArchive `json:"stores"`
}

// prefixInfoJobs is how many archives' indexes info reads at once: each
// costs 1 HEAD and a GET per MiB of TOC, and most of their time is the
// server's answer.
const prefixInfoJobs = 8

// runInfoPrefix lists the archives under a prefix, each with what its
// index says (the users, files and bytes): one HEAD and one GET for each
// archive of up to about 40,000 entries. An archive that cannot be opened
// is listed with its error, and the run exits 3.
func runInfoPrefix(ctx context.Context, o *infoOptions, name string) error {
	l, err := listPrefix(ctx, name)
	if err != nil {
		return err
	}
	rep := &prefixReport{Input: []string{name}, Kind: kindPrefix, StoreType: "prefix", Roots: []string{l.Prefix.String()}, Notes: []string{}}
	if n := l.othersNote(); n != "" {
		rep.Notes = append(rep.Notes, n)
	}
	rep.Archives = make([]prefixArchive, len(l.Archives))
	m := o.meter("reading archive indexes")
	var (
		mu   sync.Mutex
		done int64
		wg   sync.WaitGroup
	)
	work := make(chan int)
	for range min(prefixInfoJobs, len(l.Archives)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rep.Archives[i] = describeArchive(ctx, l.Prefix, l.Archives[i])
				mu.Lock()
				done++
				m.Set(done, 0)
				mu.Unlock()
			}
		}()
	}
	for i := range l.Archives {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	m.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.printPrefix(rep); err != nil {
		return err
	}
	bad := 0
	for _, a := range rep.Archives {
		if a.Err != "" {
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of the %d archives under %s could not be read (see above): %w", bad, len(rep.Archives), l.Prefix, exitcodes.ErrPartial)
	}
	return nil
}

// describeArchive opens one archive under a prefix and summarizes its
// index (no file data is read).
func describeArchive(ctx context.Context, prefix objstore.Location, obj objstore.Object) prefixArchive {
	url := obj.Location.String()
	pa := prefixArchive{Member: store.Member{ID: prefixStoreID(prefix, obj), Path: url, Input: url, Kind: store.KindArchive, Size: obj.Size},
		Modified: obj.Modified.UTC(), Users: []store.UserSummary{}}
	a, err := openObjectArchive(url, compress.ReaderOptions{})
	if err != nil {
		pa.Err = err.Error()
		return pa
	}
	defer a.Close()
	pa.Source = a.SourceKind()
	sum, err := store.Summarize(ctx, a, nil)
	if err != nil {
		pa.Err = err.Error()
		return pa
	}
	pa.Files, pa.Bytes = sum.Files, sum.BytesApparent
	if sum.Users != nil {
		pa.Users = sum.Users
	}
	return pa
}

func (o *infoOptions) printPrefix(r *prefixReport) error {
	w := o.Stdout
	if o.JSON {
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "prefix:      %s\n", r.Roots[0])
	fmt.Fprintf(w, "archives:    %d\n", len(r.Archives))
	for _, a := range r.Archives {
		fmt.Fprintf(w, "  %s\n", shellQuote(a.Path))
		if a.Err != "" {
			fmt.Fprintf(w, "    PROBLEM: %s\n", a.Err)
			continue
		}
		fmt.Fprintf(w, "    archive of a %s store, %s, uploaded %s; %d files, %s\n", a.Source, progress.Bytes(a.Size),
			a.Modified.Format("2006-01-02 15:04 UTC"), a.Files, progress.Bytes(a.Bytes))
		for _, u := range a.Users {
			fmt.Fprintf(w, "    user %-36s %8d files %10s\n", u.Path, u.Files, progress.Bytes(u.Bytes))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note:        %s\n", n)
	}
	return nil
}
