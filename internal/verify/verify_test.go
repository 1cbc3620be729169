package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/internal/manifest"
	"github.com/usmtkit/usmtkit/store"
)

// memStore is a store held in memory: entries in walk order and their data.
// With chunkErrs it also implements ChunkVerifier, as an archive does.
type memStore struct {
	kind    store.Kind
	entries []store.Entry
	data    map[string][]byte
	readErr map[string]error // Open fails with this
}

func (m *memStore) Info() *store.Info { return &store.Info{Kind: m.kind, Roots: []string{"/mem"}} }
func (m *memStore) Walk(ctx context.Context, fn store.WalkFunc) error {
	for i := range m.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := m.entries[i]
		if err := fn(&e, nil); err != nil {
			return err
		}
	}
	return nil
}
func (m *memStore) Stat(p string) (*store.Entry, error) {
	for i := range m.entries {
		if m.entries[i].StorePath == p {
			e := m.entries[i]
			return &e, nil
		}
	}
	return nil, fs.ErrNotExist
}
func (m *memStore) ReadDir(p string) ([]store.Entry, error) { return nil, fs.ErrNotExist }
func (m *memStore) Close() error                            { return nil }
func (m *memStore) Open(e *store.Entry) (store.File, error) {
	if err := m.readErr[e.StorePath]; err != nil {
		return nil, err
	}
	return memFile{bytes.NewReader(m.data[e.StorePath])}, nil
}

type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }

// archiveStore adds chunk verification as compress.Archive does: fn is
// called for every entry's header (chunk -1) and every chunk (two per
// non-empty file here), in walk order, with err nil when good.
type archiveStore struct {
	*memStore
	bad       map[string]int // path -> damaged chunk
	badHeader map[string]bool
	tocError  error
	source    store.Kind
}

func (a *archiveStore) VerifyAll(ctx context.Context, fn func(path string, chunk int, err error)) error {
	for _, e := range a.entries {
		if e.StorePath == "" {
			continue
		}
		var herr error
		if a.badHeader[e.StorePath] {
			herr = fmt.Errorf("header frame at archive offset 7: %w: not a tar header", store.ErrCorrupt)
		}
		fn(e.StorePath, -1, herr)
		if e.Type != store.TypeFile || e.Size == 0 || (e.Nlink > 1 && a.linkNotFirst(&e)) {
			continue
		}
		for k := 0; k < 2; k++ {
			var err error
			if c, ok := a.bad[e.StorePath]; ok && c == k {
				err = fmt.Errorf("chunk %d of 2 (archive offset %d): %w: xxhash64 mismatch", k, 100+k, store.ErrCorrupt)
			}
			fn(e.StorePath, k, err)
		}
	}
	return a.tocError
}

// linkNotFirst: a later name of a hard-link group holds no chunks.
func (a *archiveStore) linkNotFirst(e *store.Entry) bool {
	for _, o := range a.entries {
		if o.LinkID == e.LinkID {
			return o.StorePath != e.StorePath
		}
	}
	return false
}

func (a *archiveStore) SourceKind() store.Kind { return a.source }

// headerArchive also checks header frames alone.
type headerArchive struct{ *archiveStore }

func (h headerArchive) VerifyHeaders(ctx context.Context, fn func(path string, err error)) error {
	for _, e := range h.entries {
		if e.StorePath == "" {
			continue
		}
		var err error
		if h.badHeader[e.StorePath] {
			err = fmt.Errorf("header frame at archive offset 7: %w: not a tar header", store.ErrCorrupt)
		}
		fn(e.StorePath, err)
	}
	return nil
}

func newMem(kind store.Kind, files map[string]string) *memStore {
	m := &memStore{kind: kind, data: map[string][]byte{}, readErr: map[string]error{}}
	var paths []string
	dirs := map[string]bool{"": true}
	for p := range files {
		paths = append(paths, p)
		for d, _ := store.SplitPath(p); d != ""; d, _ = store.SplitPath(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		paths = append(paths, d)
	}
	sort.Slice(paths, func(i, j int) bool { return store.ComparePaths(paths[i], paths[j]) < 0 })
	for i, p := range paths {
		if dirs[p] {
			m.entries = append(m.entries, store.Entry{StorePath: p, Type: store.TypeDir})
			continue
		}
		win, control := store.MapPath(kind, p)
		m.data[p] = []byte(files[p])
		m.entries = append(m.entries, store.Entry{StorePath: p, WinPath: win, Control: control, Type: store.TypeFile,
			Size: int64(len(files[p])), MtimeNs: 1e18, Nlink: 1, LinkID: uint64(i + 1)})
	}
	return m
}

func (m *memStore) entry(p string) *store.Entry {
	for i := range m.entries {
		if m.entries[i].StorePath == p {
			return &m.entries[i]
		}
	}
	panic(p)
}

var usmtFiles = map[string]string{
	"USMT/catalog.mig":             "catalog",
	"USMT/File/C$/Users/a/one.txt": "one",
	"USMT/File/C$/Users/a/two.txt": "two",
	"USMT/File/C$/Users/b/x.bin":   "xxxx",
}

func collect(t *testing.T, s store.Store, o Options) (map[string]*Result, *Summary, error) {
	t.Helper()
	got := map[string]*Result{}
	sum, err := Run(context.Background(), s, o, func(r *Result) error {
		if r.Type != "dir" || r.Status != OK {
			got[r.StorePath] = r
		}
		return nil
	})
	return got, sum, err
}

func TestVerifyStructuralLinkGroups(t *testing.T) {
	m := newMem(store.KindUSMTDir, usmtFiles)
	// one.txt and two.txt claim to be one hard-link group but disagree.
	a, b := m.entry("USMT/File/C$/Users/a/one.txt"), m.entry("USMT/File/C$/Users/a/two.txt")
	a.LinkID, b.LinkID, a.Nlink, b.Nlink = 77, 77, 2, 2
	b.MtimeNs += 100
	got, sum, err := collect(t, m, Options{Level: LevelStructure})
	if err != nil {
		t.Fatal(err)
	}
	r := got["USMT/File/C$/Users/a/two.txt"]
	if r.Status != Changed || !strings.Contains(r.Detail, "hard-link group") {
		t.Errorf("two.txt: %+v", r)
	}
	if sum.Changed != 1 || sum.OKCount != 3 || sum.Catalog != OK || sum.Check != "structure" || sum.Level != LevelStructure {
		t.Errorf("summary %+v", sum)
	}
	if sum.Bytes != 0 {
		t.Errorf("structure level read %d bytes", sum.Bytes)
	}
}

func TestVerifyStructuralCatalogMissingAndUnreadable(t *testing.T) {
	files := map[string]string{}
	for k, v := range usmtFiles {
		if k != "USMT/catalog.mig" {
			files[k] = v
		}
	}
	m := newMem(store.KindUSMTDir, files)
	m.readErr["USMT/File/C$/Users/b/x.bin"] = &store.PathError{Op: "opening", Path: "x.bin", Err: fs.ErrPermission}
	got, sum, err := collect(t, m, Options{Level: LevelData})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Catalog != Missing || sum.Unread != 1 || got["USMT/File/C$/Users/b/x.bin"].Status != Unreadable {
		t.Errorf("summary %+v", sum)
	}
	// A plain tree has no catalog to miss.
	p := newMem(store.KindPlain, map[string]string{"a": "1"})
	_, sum, _ = collect(t, p, Options{Level: LevelData})
	if sum.Catalog != CatalogNone || sum.Problems() != 0 {
		t.Errorf("plain: %+v", sum)
	}
}

func TestVerifyArchiveChunkVerifier(t *testing.T) {
	m := newArchiveMem(store.KindUSMTDir, usmtFiles)
	a := &archiveStore{memStore: m, source: store.KindUSMTDir, bad: map[string]int{"USMT/File/C$/Users/a/two.txt": 1}}
	got, sum, err := collect(t, a, Options{Level: LevelData})
	if err != nil {
		t.Fatal(err)
	}
	r := got["USMT/File/C$/Users/a/two.txt"]
	if r.Status != Corrupted || !strings.Contains(r.Detail, "chunk 1 of 2") || r.WinPath != `C:\Users\a\two.txt` {
		t.Errorf("two.txt %+v", r)
	}
	if len(notOK(got)) != 1 || sum.Corrupt != 1 || sum.OKCount != 3 || sum.Catalog != OK || !sum.ChunksChecked || !sum.HeadersChecked {
		t.Errorf("got %v, summary %+v", got, sum)
	}
	// The bytes checked are the files' logical sizes; nothing is read again.
	if sum.Bytes != int64(len("catalog")+len("one")+len("two")+len("xxxx")) {
		t.Errorf("bytes %d", sum.Bytes)
	}
	// Archive-level damage is reported and counts as a problem.
	a.tocError = errors.New("reading the archive: input/output error")
	a.bad = nil
	_, sum, err = collect(t, a, Options{Level: LevelData})
	if err != nil || len(sum.StoreErrors) != 1 || sum.Problems() != 1 || !strings.Contains(sum.StoreErrors[0], "every file was read instead") {
		t.Errorf("toc damage: %v %+v", err, sum)
	}
	// Structure level does not run the chunk check.
	a.bad = map[string]int{"USMT/File/C$/Users/a/two.txt": 0}
	a.tocError = nil
	_, sum, _ = collect(t, a, Options{Level: LevelStructure})
	if sum.Problems() != 0 || sum.ChunksChecked {
		t.Errorf("structure level ran chunk checks: %+v", sum)
	}
	// A damaged header frame names its entry, directories included.
	a.bad = nil
	a.badHeader = map[string]bool{"USMT/File/C$/Users/b": true, "USMT/catalog.mig": true}
	got, sum, _ = collect(t, a, Options{Level: LevelData})
	if len(notOK(got)) != 2 || got["USMT/File/C$/Users/b"].Status != Corrupted || got["USMT/catalog.mig"].Status != Corrupted ||
		sum.Catalog != Corrupted || sum.Corrupt != 2 || sum.Files != 5 {
		t.Errorf("headers: %v %+v", got, sum)
	}
	// Missing catalog in an archive of a USMT store.
	a.badHeader = nil
	m2 := newArchiveMem(store.KindUSMTDir, map[string]string{"USMT/File/C$/x": "x"})
	_, sum, _ = collect(t, &archiveStore{memStore: m2, source: store.KindUSMTDir}, Options{Level: LevelData})
	if sum.Catalog != Missing {
		t.Errorf("archive of a USMT store without catalog.mig: %+v", sum)
	}
	_, sum, _ = collect(t, &archiveStore{memStore: m2, source: store.KindPlain}, Options{Level: LevelData})
	if sum.Catalog != CatalogNone {
		t.Errorf("archive of a plain tree: %+v", sum)
	}
}

// newArchiveMem is an archive of a store of kind source.
func newArchiveMem(source store.Kind, files map[string]string) *memStore {
	m := newMem(source, files)
	m.kind = store.KindArchive
	return m
}

func notOK(got map[string]*Result) map[string]*Result {
	bad := map[string]*Result{}
	for p, r := range got {
		if r.Status != OK {
			bad[p] = r
		}
	}
	return bad
}

// A damaged chunk of a hard-link group damages every name of the group;
// a damaged header only its own entry.
func TestVerifyArchiveHardLinkDamage(t *testing.T) {
	m := newArchiveMem(store.KindPlain, map[string]string{"d/a": "data", "d/b": "data", "d/c": "other"})
	for _, p := range []string{"d/a", "d/b"} {
		e := m.entry(p)
		e.LinkID, e.Nlink = 42, 2
	}
	a := &archiveStore{memStore: m, source: store.KindPlain, bad: map[string]int{"d/a": 0}}
	got, sum, _ := collect(t, a, Options{Level: LevelData})
	if got["d/a"].Status != Corrupted || got["d/b"].Status != Corrupted || !strings.Contains(got["d/b"].Detail, "a hard link to d/a") ||
		len(notOK(got)) != 2 || sum.Corrupt != 2 {
		t.Errorf("%v %+v", got, sum)
	}
	a.bad, a.badHeader = nil, map[string]bool{"d/a": true}
	got, _, _ = collect(t, a, Options{Level: LevelData})
	if got["d/a"].Status != Corrupted || len(notOK(got)) != 1 {
		t.Errorf("header damage spread to the group: %v", got)
	}
}

// With a HeaderVerifier, the structure level checks the header frames;
// at the data level against a hashed manifest the headers are checked
// alone and the chunks by reading every file back (not decoded twice).
func TestVerifyArchiveHeaderVerifier(t *testing.T) {
	m := newArchiveMem(store.KindUSMTDir, usmtFiles)
	a := &archiveStore{memStore: m, source: store.KindUSMTDir, badHeader: map[string]bool{"USMT/File/C$/Users/a/one.txt": true}}
	h := headerArchive{a}
	got, sum, _ := collect(t, h, Options{Level: LevelStructure})
	if got["USMT/File/C$/Users/a/one.txt"].Status != Corrupted || !sum.HeadersChecked || sum.ChunksChecked || sum.Bytes != 0 {
		t.Errorf("%v %+v", got, sum)
	}
	mp := writeManifestOf(t, m, true)
	a.badHeader = nil
	a.bad = map[string]int{"USMT/File/C$/Users/b/x.bin": 0} // VerifyAll would see it; reads do not
	m.data["USMT/File/C$/Users/a/two.txt"] = []byte("TWO")
	got, sum, _ = collect(t, h, Options{Level: LevelData, Manifest: openManifest(t, mp)})
	if len(notOK(got)) != 1 || got["USMT/File/C$/Users/a/two.txt"].Status != Corrupted || !sum.HeadersChecked || !sum.ChunksChecked {
		t.Errorf("%v %+v", got, sum)
	}
}

// writeManifestOf indexes a store into a manifest file.
func writeManifestOf(t *testing.T, s store.Store, hashed bool) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m")
	f, err := manifest.CreateAtomic(p, false)
	if err != nil {
		t.Fatal(err)
	}
	w, err := manifest.NewWriter(f, manifest.Header{Hashed: hashed, Store: manifest.StoreHeader{Kind: string(s.Info().Kind)}})
	if err != nil {
		t.Fatal(err)
	}
	err = manifest.HashWalk(context.Background(), s, manifest.HashOptions{Hash: hashed}, func(it *manifest.Item) error {
		rec := manifest.FromEntry(&it.Entry)
		if it.Hashed {
			rec.XXH64 = manifest.HashHex(it.Hash)
		}
		if it.Err() != nil {
			rec.Error = it.Err().Error()
		}
		return w.Write(&rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	return p
}

func openManifest(t *testing.T, p string) *manifest.Reader {
	t.Helper()
	r, err := manifest.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestVerifyManifestStatuses(t *testing.T) {
	m := newMem(store.KindUSMTDir, usmtFiles)
	m.readErr["USMT/File/C$/Users/b/x.bin"] = errors.New("boom")
	mp := writeManifestOf(t, m, true) // x.bin recorded with an error
	delete(m.readErr, "USMT/File/C$/Users/b/x.bin")

	// Corrupt one.txt (same size/time), change two.txt's mtime, flip the
	// catalog, drop nothing yet.
	m.data["USMT/File/C$/Users/a/one.txt"] = []byte("0ne")
	m.entry("USMT/File/C$/Users/a/two.txt").MtimeNs++
	m.data["USMT/catalog.mig"] = []byte("cataloG")
	got, sum, err := collect(t, m, Options{Level: LevelData, Manifest: openManifest(t, mp)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{
		"USMT/File/C$/Users/a/one.txt": Corrupted,
		"USMT/File/C$/Users/a/two.txt": Changed,
		"USMT/File/C$/Users/b/x.bin":   Skipped,
		"USMT/catalog.mig":             Corrupted,
	}
	for p, st := range want {
		if got[p] == nil || got[p].Status != st {
			t.Errorf("%s: %+v, want %s", p, got[p], st)
		}
	}
	if sum.Catalog != Corrupted || sum.Corrupt != 2 || sum.Changed != 1 || sum.Skipped != 1 || !sum.Complete {
		t.Errorf("summary %+v", sum)
	}
	// Structure level: the content flips are invisible, the mtime is not (P21).
	_, sum, _ = collect(t, m, Options{Level: LevelStructure, Manifest: openManifest(t, mp)})
	if sum.Corrupt != 0 || sum.Changed != 1 || sum.Catalog != OK {
		t.Errorf("structure: %+v", sum)
	}
}

func TestVerifyManifestMissingExtraOrder(t *testing.T) {
	m := newMem(store.KindPlain, map[string]string{"a/x": "1", "a-b": "2", "c/d/e": "3", "z": "4"})
	mp := writeManifestOf(t, m, true)
	// Remove directory c (with its children) and z; add a/y and b.
	n := newMem(store.KindPlain, map[string]string{"a/x": "1", "a/y": "new", "a-b": "2", "b": "5"})
	var order []string
	sum, err := Run(context.Background(), n, Options{Level: LevelData, Manifest: openManifest(t, mp)}, func(r *Result) error {
		order = append(order, string(r.Status)+" "+r.StorePath)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"OK ", "OK a", "OK a/x", "EXTRA a/y", "OK a-b", "EXTRA b", "MISSING c", "MISSING c/d", "MISSING c/d/e", "MISSING z"}
	if strings.Join(order, "|") != strings.Join(want, "|") {
		t.Errorf("order\n got %q\nwant %q", order, want)
	}
	if sum.Missing != 4 || sum.Extra != 2 || sum.Files != 8 || sum.Dirs != 4 {
		t.Errorf("summary %+v", sum)
	}
}

func TestVerifyCancelledRun(t *testing.T) {
	files := map[string]string{}
	for i := 0; i < 500; i++ {
		files[fmt.Sprintf("USMT/File/C$/f%03d", i)] = "data"
	}
	files["USMT/catalog.mig"] = "c"
	m := newMem(store.KindUSMTDir, files)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	sum, err := Run(ctx, m, Options{Level: LevelData}, func(r *Result) error {
		if n++; n == 100 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || sum == nil || sum.Complete || sum.Files >= 500 || sum.Catalog != Skipped {
		t.Fatalf("err %v summary %+v", err, sum)
	}
}

func TestVerifyManifestNoHashes(t *testing.T) {
	m := newMem(store.KindUSMTDir, usmtFiles)
	mp := writeManifestOf(t, m, false)
	m.data["USMT/File/C$/Users/a/one.txt"] = []byte("0ne")
	_, sum, err := collect(t, m, Options{Level: LevelData, Manifest: openManifest(t, mp)})
	if err != nil || sum.Problems() != 0 || len(sum.Notes) != 1 || sum.Hashes {
		t.Errorf("%v %+v", err, sum)
	}
}

func TestVerifyRealTreeReplacedByDir(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "a/f"), []byte("x"), 0o644)
	s, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mp := writeManifestOf(t, s, true)
	os.Remove(filepath.Join(dir, "a/f"))
	os.MkdirAll(filepath.Join(dir, "a/f/inner"), 0o755)
	got, _, err := collect(t, s, Options{Level: LevelData, Manifest: openManifest(t, mp)})
	if err != nil {
		t.Fatal(err)
	}
	if r := got["a/f"]; r == nil || r.Status != Changed || r.Detail != "was a file, now a directory" {
		t.Errorf("a/f: %+v", r)
	}
	if r := got["a/f/inner"]; r == nil || r.Status != Extra {
		t.Errorf("a/f/inner: %+v", r)
	}
}
