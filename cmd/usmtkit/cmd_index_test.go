package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/store"
)

// indexFor runs index with test globals and returns stdout, stderr, error.
func indexFor(t *testing.T, o indexOptions, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	o.globalOptions = globalOptions{Stdout: &out, Stderr: &errb}
	if o.Threads == 0 {
		o.Threads = 3
	}
	err := runIndex(context.Background(), &o, args)
	return out.String(), errb.String(), err
}

// readManifest reads every record of a manifest (validating it).
func readManifest(t *testing.T, p string) (*manifest.Reader, []*manifest.Record) {
	t.Helper()
	r, err := manifest.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var recs []*manifest.Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r, recs
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
}

// osTree lists every path under root (slash-separated, relative; "" is
// the root) the way a plain os walk sees it, with content hashes of files.
func osTree(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		rel = filepath.ToSlash(rel)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = manifest.HashHex(xxhash.Sum64(b))
		} else {
			got[rel] = d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestIndexUSMT4(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	out := filepath.Join(dir, "jdoe.manifest")
	stdout, _, err := indexFor(t, indexOptions{Output: out}, sp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout, "indexed 13 files (") || !strings.Contains(stdout, "0 entries could not be read") {
		t.Errorf("summary line %q", stdout)
	}
	r, recs := readManifest(t, out)
	h := r.Header
	if h.Format != "usmtkit-manifest" || h.Version != 1 || !h.Hashed || h.Hash != "xxh64" ||
		h.Store.Kind != "usmt-dir" || h.Store.Version != "USMT 4+" || h.Store.Level != "store-path" ||
		len(h.Store.Roots) != 1 || h.Store.Roots[0] != sp || !strings.HasPrefix(h.Tool, "usmtkit ") {
		t.Errorf("header %+v", h)
	}
	want := osTree(t, sp)
	if len(recs) != len(want) {
		t.Errorf("%d records, the tree has %d entries", len(recs), len(want))
	}
	var links []*manifest.Record
	control := 0
	for i, rec := range recs {
		if i > 0 && store.ComparePaths(recs[i-1].StorePath, rec.StorePath) >= 0 {
			t.Errorf("order: %q before %q", recs[i-1].StorePath, rec.StorePath)
		}
		w, ok := want[rec.StorePath]
		if !ok {
			t.Errorf("%q in the manifest, not in the tree", rec.StorePath)
			continue
		}
		if rec.Type == "file" {
			if rec.XXH64 != w {
				t.Errorf("%s: xxh64 %s, want %s", rec.StorePath, rec.XXH64, w)
			}
		} else if rec.XXH64 != "" {
			t.Errorf("%s: a %s has a hash", rec.StorePath, rec.Type)
		}
		if rec.Error != "" {
			t.Errorf("%s: error %s", rec.StorePath, rec.Error)
		}
		if rec.Control {
			control++
		}
		if rec.StorePath == fixtures.USMT4LinkA || rec.StorePath == fixtures.USMT4LinkB {
			links = append(links, rec)
		}
		if rec.StorePath == "USMT/File/C$/Users/jdoe/Documents/report.docx" {
			if rec.MtimeNs != fixtures.USMT4ReportMtime.UnixNano() || rec.Size != 20000 || rec.WinPath != `C:\Users\jdoe\Documents\report.docx` {
				t.Errorf("report.docx: %+v", rec)
			}
		}
	}
	if control != 2 {
		t.Errorf("%d control records, want catalog.mig and migstate.dat", control)
	}
	if len(links) != 2 || links[0].LinkID == "" || links[0].LinkID != links[1].LinkID || links[0].XXH64 != links[1].XXH64 || links[0].Nlink != 2 {
		t.Errorf("hard-link pair: %+v", links)
	}
	tr := r.Trailer
	if tr.Files != 13 || tr.Entries != int64(len(want)) || tr.Errors != 0 || tr.Bytes != fixtures.USMT4Expect.Bytes+4096+1024 {
		t.Errorf("trailer %+v", tr)
	}
	// Atomic write: only the manifest (and the store) in the folder.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("folder has %d entries, want store and manifest", len(ents))
	}
	// The store is unchanged: the manifest of a second run is identical
	// but for the created time.
	out2 := filepath.Join(dir, "again.manifest")
	if _, _, err := indexFor(t, indexOptions{Output: out2}, sp); err != nil {
		t.Fatal(err)
	}
	_, recs2 := readManifest(t, out2)
	for i := range recs {
		a, b := *recs[i], *recs2[i]
		a.AtimeNs, b.AtimeNs = 0, 0
		if a.StorePath != b.StorePath || a.XXH64 != b.XXH64 || a.MtimeNs != b.MtimeNs || a.Size != b.Size {
			t.Errorf("second run differs at %s", a.StorePath)
		}
	}
}

func TestIndexCommandLine(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	out := filepath.Join(dir, "m")
	var o, e bytes.Buffer
	code := run(context.Background(), []string{"usmtkit", "index", sp, "-o", out, "--threads", "2", "--json"}, &o, &e)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e.String())
	}
	if !strings.Contains(o.String(), `"type":"summary"`) || !strings.Contains(o.String(), `"files":13`) {
		t.Errorf("json summary %q", o.String())
	}
	code = run(context.Background(), []string{"usmtkit", "index", sp}, &o, &e)
	if code != exitcodes.Usage {
		t.Errorf("without -o: exit %d", code)
	}
}

func TestIndexNoHash(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	out := filepath.Join(dir, "m")
	stdout, _, err := indexFor(t, indexOptions{Output: out, NoHash: true}, sp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "no content hashes") {
		t.Errorf("summary %q", stdout)
	}
	r, recs := readManifest(t, out)
	if r.Header.Hashed || r.Header.Hash != "" {
		t.Errorf("header %+v", r.Header)
	}
	for _, rec := range recs {
		if rec.XXH64 != "" {
			t.Errorf("%s hashed under --no-hash", rec.StorePath)
		}
	}
	if r.Trailer.Files != 13 {
		t.Errorf("trailer %+v", r.Trailer)
	}
}

func TestIndexRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	out := filepath.Join(dir, "m")
	os.WriteFile(out, []byte("precious"), 0o644)
	_, _, err := indexFor(t, indexOptions{Output: out}, sp)
	if exitcodes.FromError(err) != exitcodes.Usage || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatal("existing file changed")
	}
	if _, _, err := indexFor(t, indexOptions{Output: out, Force: true}, sp); err != nil {
		t.Fatal(err)
	}
	readManifest(t, out)
}

func TestIndexRefusesInsideStore(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	os.Symlink(filepath.Join(sp, "USMT"), filepath.Join(dir, "alias"))
	before := osTree(t, sp)
	for _, c := range []struct{ input, out string }{
		{sp, filepath.Join(sp, "m")},
		{sp, filepath.Join(sp, "USMT/File/C$/m")},
		{sp, filepath.Join(dir, "alias/m")}, // through a symlink
		// Opened at the drive-folder level: the whole store is off limits.
		{filepath.Join(sp, "USMT/File/C$"), filepath.Join(sp, "USMT/m")},
	} {
		_, _, err := indexFor(t, indexOptions{Output: c.out}, c.input)
		if exitcodes.FromError(err) != exitcodes.Usage || !strings.Contains(err.Error(), "inside the store") ||
			!strings.Contains(err.Error(), "never writes into a store") {
			t.Errorf("%s -o %s: err = %v", c.input, c.out, err)
		}
	}
	after := osTree(t, sp)
	if len(after) != len(before) {
		t.Errorf("the store changed: %d entries, was %d", len(after), len(before))
	}
}

// vanishingStore deletes a file just before opening it: a file removed
// between the walk and the read, as a technician's cleanup can do.
type vanishingStore struct {
	store.Store
	root, victim string
}

func (v *vanishingStore) Open(e *store.Entry) (store.File, error) {
	if e.StorePath == v.victim {
		os.Remove(filepath.Join(v.root, e.StorePath))
	}
	return v.Store.Open(e)
}

func TestIndexUnreadable(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	victim := "USMT/File/C$/Users/jdoe/Desktop/notes.txt"
	wrapStore = func(s store.Store) store.Store { return &vanishingStore{Store: s, root: sp, victim: victim} }
	defer func() { wrapStore = nil }()
	out := filepath.Join(dir, "m")
	stdout, stderr, err := indexFor(t, indexOptions{Output: out}, sp)
	if exitcodes.FromError(err) != exitcodes.Partial || !errors.Is(err, exitcodes.ErrPartial) {
		t.Fatalf("err = %v, want partial (exit 3)", err)
	}
	if !strings.Contains(stdout, "1 entries could not be read") || !strings.Contains(stderr, victim) {
		t.Errorf("stdout %q stderr %q", stdout, stderr)
	}
	r, recs := readManifest(t, out)
	if r.Trailer.Errors != 1 {
		t.Errorf("trailer %+v", r.Trailer)
	}
	for _, rec := range recs {
		if rec.StorePath == victim {
			if !strings.Contains(rec.Error, "vanished") || rec.XXH64 != "" || rec.Size != 1500 {
				t.Errorf("victim record %+v", rec)
			}
		} else if rec.Error != "" {
			t.Errorf("%s: unexpected error %s", rec.StorePath, rec.Error)
		}
	}
}

func TestIndexHostileAndMultiVolume(t *testing.T) {
	dir := t.TempDir()
	h := fixtures.Hostile(t, dir)
	out := filepath.Join(dir, "m")
	_, _, err := indexFor(t, indexOptions{Output: out}, h.StorePath)
	if err != nil && exitcodes.FromError(err) != exitcodes.Partial {
		t.Fatal(err)
	}
	_, recs := readManifest(t, out)
	byPath := map[string]*manifest.Record{}
	for _, rec := range recs {
		p, err := rec.Path()
		if err != nil {
			t.Fatal(err)
		}
		byPath[p] = rec
	}
	bad := byPath[h.BadName]
	if bad == nil || bad.StorePathB64 == "" || bad.XXH64 != manifest.HashHex(xxhash.Sum64String("bad name\n")) {
		t.Errorf("non-UTF-8 name: %+v", bad)
	}
	if l := byPath[h.LongPath]; l == nil || l.XXH64 != manifest.HashHex(xxhash.Sum64String("far away\n")) {
		t.Errorf("path past PATH_MAX: %+v", l)
	}
	if f := byPath[h.FIFO]; f == nil || f.Type != "other" || f.XXH64 != "" {
		t.Errorf("FIFO: %+v", f)
	}
	if l := byPath[h.SymlinkSelf]; l == nil || l.Type != "symlink" || l.LinkTarget != "loop" {
		t.Errorf("symlink loop: %+v", l)
	}

	// Two volumes merge into one manifest with both roots in the header.
	vols := fixtures.MultiVolume(t, t.TempDir())
	out2 := filepath.Join(dir, "mv")
	if _, _, err := indexFor(t, indexOptions{Output: out2}, vols...); err != nil {
		t.Fatal(err)
	}
	r, recs := readManifest(t, out2)
	if len(r.Header.Store.Roots) != 2 {
		t.Errorf("roots %v", r.Header.Store.Roots)
	}
	seen := map[int]bool{}
	for _, rec := range recs {
		seen[rec.Volume] = true
	}
	if !seen[0] || !seen[1] {
		t.Errorf("volumes seen %v", seen)
	}
}

// cancelAtOpen cancels the run at the n-th file opened: Ctrl-C mid-index.
type cancelAtOpen struct {
	store.Store
	n, at  int
	cancel context.CancelFunc
}

func (c *cancelAtOpen) Open(e *store.Entry) (store.File, error) {
	c.n++ // index reads with one thread in this test
	if c.n == c.at {
		c.cancel()
	}
	return c.Store.Open(e)
}

func TestIndexInterruptedLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrapStore = func(s store.Store) store.Store { return &cancelAtOpen{Store: s, at: 3, cancel: cancel} }
	defer func() { wrapStore = nil }()
	out := filepath.Join(dir, "m")
	var o, e bytes.Buffer
	err := runIndex(ctx, &indexOptions{globalOptions: globalOptions{Stdout: &o, Stderr: &e}, Output: out, Threads: 1}, []string{sp})
	if !errors.Is(err, context.Canceled) || exitcodes.FromError(err) != exitcodes.Interrupted {
		t.Fatalf("err = %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left behind %d entries next to the store (no manifest, no temp file expected)", len(ents)-1)
	}
}
