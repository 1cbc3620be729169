package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/storetest"
	"github.com/usmtkit/usmtkit/internal/verify"
	"github.com/usmtkit/usmtkit/store"
)

// verifyFor runs verify with test globals.
func verifyFor(t *testing.T, ctx context.Context, o verifyOptions, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	o.globalOptions = globalOptions{Stdout: &out, Stderr: &errb}
	if o.Threads == 0 {
		o.Threads = 3
	}
	if o.Level == "" {
		o.Level = "data"
	}
	err := runVerify(ctx, &o, args)
	return out.String(), errb.String(), err
}

// indexTo writes a manifest of the store at args into dir and returns it.
func indexTo(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out := filepath.Join(dir, "store.manifest")
	if _, _, err := indexFor(t, indexOptions{Output: out, Force: true}, args...); err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonLines parses verify --json output.
func jsonLines(t *testing.T, out string) (files []verifyFileJSON, sum map[string]any) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, `"type":"summary"`) {
			if err := json.Unmarshal([]byte(l), &sum); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			continue
		}
		var f verifyFileJSON
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		files = append(files, f)
	}
	if sum == nil {
		t.Fatalf("no summary object in %q", out)
	}
	return files, sum
}

// flipByte changes one byte of a file in place and puts its times back,
// so only the content differs: what bad USB hardware does.
func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// userFiles lists the manifest's non-empty, non-control files with their
// OS paths.
func userFiles(t *testing.T, mp string) (paths []string, osPath map[string]string) {
	t.Helper()
	r, recs := readManifest(t, mp)
	osPath = map[string]string{}
	for _, rec := range recs {
		if rec.Type != "file" || rec.Control || rec.Size == 0 {
			continue
		}
		p, _ := rec.Path()
		paths = append(paths, p)
		osPath[p] = filepath.Join(r.Header.Store.Roots[rec.Volume], p)
	}
	return paths, osPath
}

// TestVerifyFlippedBytes flips one byte in N random files of a store of
// every kind: exactly those files are CORRUPTED at the data level, and
// the structure level (which reads no content) passes (P21).
func TestVerifyFlippedBytes(t *testing.T) {
	dir := t.TempDir()
	prof, err := fixtures.Profile(filepath.Join(dir, "profile"), 3<<20, 150, false, 7)
	if err != nil {
		t.Fatal(err)
	}
	hl := fixtures.HardLinkStore(t, filepath.Join(dir, "vol"))
	kinds := []struct {
		name string
		args []string
		n    int
	}{
		{"profile", []string{prof}, 12},
		{"usmt4", []string{fixtures.USMT4(t, filepath.Join(dir, "u4"))}, 3},
		{"usmt3", []string{fixtures.USMT3(t, filepath.Join(dir, "u3"))}, 2},
		{"plain", []string{fixtures.Plain(t, filepath.Join(dir, "plain"))}, 2},
		{"multi-volume", fixtures.MultiVolume(t, filepath.Join(dir, "mv")), 3},
		{"hard-link", []string{hl.StorePath}, 2},
	}
	for i, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			mdir := t.TempDir()
			mp := indexTo(t, mdir, k.args...)
			if _, _, err := verifyFor(t, context.Background(), verifyOptions{Manifest: mp}, k.args...); err != nil {
				t.Fatalf("clean store: %v", err)
			}
			paths, osPath := userFiles(t, mp)
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			rng.Shuffle(len(paths), func(a, b int) { paths[a], paths[b] = paths[b], paths[a] })
			// Hard links inside the store share content: flip only one
			// path per inode, and expect every path of that inode.
			want := map[string]bool{}
			flipped := map[string]bool{}
			for _, p := range paths {
				if len(flipped) == k.n {
					break
				}
				fi, _ := os.Stat(osPath[p])
				if flipped[inoKey(fi)] {
					continue
				}
				flipped[inoKey(fi)] = true
				flipByte(t, osPath[p], rng.Int64N(fi.Size()))
			}
			for _, p := range paths {
				fi, _ := os.Stat(osPath[p])
				if flipped[inoKey(fi)] {
					want[p] = true
				}
			}
			stdout, _, err := verifyFor(t, context.Background(), verifyOptions{Manifest: mp, JSON: true, Report: "failureonly"}, k.args...)
			if exitcodes.FromError(err) != exitcodes.Partial {
				t.Fatalf("err = %v, want exit 3", err)
			}
			files, sum := jsonLines(t, stdout)
			got := map[string]bool{}
			for _, f := range files {
				if f.Type == "catalog" {
					continue
				}
				if f.Status != "CORRUPTED" {
					t.Errorf("%s: %s (%s)", f.StorePath, f.Status, f.Detail)
				}
				got[f.StorePath] = true
			}
			if len(got) != len(want) {
				t.Errorf("%d CORRUPTED, want %d", len(got), len(want))
			}
			for p := range want {
				if !got[p] {
					t.Errorf("%s flipped but not reported", p)
				}
			}
			if sum["corrupted"].(float64) != float64(len(want)) || sum["level"] != "data" || sum["exit_code"].(float64) != 3 {
				t.Errorf("summary %v", sum)
			}
			// Same sizes and times: structure level sees nothing, and says which level ran.
			stdout, _, err = verifyFor(t, context.Background(), verifyOptions{Manifest: mp, Level: "structure"}, k.args...)
			if err != nil || !strings.Contains(stdout, "level:      structure (metadata only") {
				t.Errorf("structure level: %v\n%s", err, stdout)
			}
		})
	}
}

// inoKey identifies a file's inode (hard links share it).
func inoKey(fi os.FileInfo) string {
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d/%d", st.Dev, st.Ino)
}

// damage applies the same set of damages to a USMT4 store: one of each
// status. It returns the expected status per store path.
func damage(t *testing.T, sp string) map[string]string {
	t.Helper()
	p := func(rel string) string { return filepath.Join(sp, rel) }
	// CHANGED: truncated (times put back, so only the size tells).
	notes := p("USMT/File/C$/Users/jdoe/Desktop/notes.txt")
	fi, _ := os.Stat(notes)
	os.Truncate(notes, 100)
	os.Chtimes(notes, fi.ModTime(), fi.ModTime())
	// MISSING: deleted.
	os.Remove(p("USMT/File/C$/Users/jdoe/Documents/report.docx"))
	// EXTRA: added.
	os.WriteFile(p("USMT/File/C$/Users/jdoe/Desktop/new.txt"), []byte("new"), 0o644)
	// CHANGED: a file replaced by a directory (its child is EXTRA).
	os.Remove(p("USMT/File/D$/Data/shared.xlsx"))
	os.MkdirAll(p("USMT/File/D$/Data/shared.xlsx"), 0o755)
	os.WriteFile(p("USMT/File/D$/Data/shared.xlsx/inner.txt"), []byte("x"), 0o644)
	// CORRUPTED: one byte of a user file and of the catalog.
	flipByte(t, p("USMT/File/C$/Users/asmith/Pictures/cat.jpg"), 5000)
	flipByte(t, p("USMT/catalog.mig"), 10)
	return map[string]string{
		"USMT/File/C$/Users/jdoe/Desktop/notes.txt":           "CHANGED",
		"USMT/File/C$/Users/jdoe/Documents/report.docx":       "MISSING",
		"USMT/File/C$/Users/jdoe/Desktop/new.txt":             "EXTRA",
		"USMT/File/D$/Data/shared.xlsx":                       "CHANGED",
		"USMT/File/D$/Data/shared.xlsx/inner.txt":             "EXTRA",
		"USMT/File/C$/Users/asmith/Pictures/cat.jpg":          "CORRUPTED",
		"USMT/catalog.mig":                                    "CORRUPTED",
		"USMT/File/C$/Users/jdoe/Documents/with space $x.txt": "UNREADABLE",
	}
}

// vanishVictim is the file damage() makes unreadable through wrapStore.
const vanishVictim = "USMT/File/C$/Users/jdoe/Documents/with space $x.txt"

func withVanishing(t *testing.T, sp string) {
	wrapStore = func(s store.Store) store.Store { return &vanishingStore{Store: s, root: sp, victim: vanishVictim} }
	t.Cleanup(func() { wrapStore = nil })
}

func TestVerifyStatuses(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, dir)
	mp := indexTo(t, dir, sp)
	want := damage(t, sp)
	withVanishing(t, sp)
	stdout, _, err := verifyFor(t, context.Background(), verifyOptions{Manifest: mp, JSON: true}, sp)
	if exitcodes.FromError(err) != exitcodes.Partial || !errors.Is(err, exitcodes.ErrPartial) {
		t.Fatalf("err = %v", err)
	}
	files, sum := jsonLines(t, stdout)
	got := map[string]string{}
	var catalog string
	for _, f := range files {
		if f.Type == "catalog" {
			catalog = f.Status
			continue
		}
		if f.Status != "OK" {
			got[f.StorePath] = f.Status
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d: %v", len(got), len(want), got)
	}
	for p, st := range want {
		if got[p] != st {
			t.Errorf("%s: %q, want %s", p, got[p], st)
		}
	}
	if catalog != "CORRUPTED" || sum["catalog"] != "CORRUPTED" {
		t.Errorf("catalog %q / %v", catalog, sum["catalog"])
	}
	// 13 files in the manifest: 1 missing; plus 3 new non-directory
	// entries (new.txt, inner.txt) and the directory shared.xlsx.
	if sum["ok"].(float64) != 13-6 || sum["missing"].(float64) != 1 || sum["extra"].(float64) != 2 ||
		sum["changed"].(float64) != 2 || sum["corrupted"].(float64) != 2 || sum["unreadable"].(float64) != 1 ||
		sum["damaged"].(float64) != 5 || sum["complete"] != true || sum["interrupted"] != false {
		t.Errorf("summary %v", sum)
	}
}

var (
	reElapsed = regexp.MustCompile(`"elapsed_ms":[0-9.e+-]+`)
	reTook    = regexp.MustCompile(`in [0-9.]+(ns|µs|ms|s|m[0-9.]+s)\n`)
)

// normalize removes what differs between runs: temp paths and timings.
func normalize(s string, repl ...string) string {
	for i := 0; i+1 < len(repl); i += 2 {
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	s = reElapsed.ReplaceAllString(s, `"elapsed_ms":0`)
	return reTook.ReplaceAllString(s, "in T\n")
}

func TestVerifyGolden(t *testing.T) {
	// Every case gets a fresh damaged store: the vanishing file is gone
	// after one run.
	fresh := func(t *testing.T) (sp, mp string) {
		dir := t.TempDir()
		sp = fixtures.USMT4(t, dir)
		mp = indexTo(t, t.TempDir(), sp)
		damage(t, sp)
		withVanishing(t, sp)
		return sp, mp
	}
	const mp = "\x00manifest" // replaced per case
	jsonEsc := func(s string) string { b, _ := json.Marshal(s); return strings.Trim(string(b), `"`) }
	for _, c := range []struct {
		name string
		o    verifyOptions
		code int
	}{
		{"verify-summary.txt", verifyOptions{Manifest: mp}, 3},
		{"verify-all.txt", verifyOptions{Manifest: mp, Report: "all"}, 3},
		{"verify-failureonly.txt", verifyOptions{Manifest: mp, Report: "failureonly"}, 3},
		{"verify-catalog.txt", verifyOptions{Manifest: mp, Report: "catalog"}, 3},
		{"verify-json.txt", verifyOptions{Manifest: mp, JSON: true}, 3},
		{"verify-json-summary.txt", verifyOptions{Manifest: mp, JSON: true, Report: "summary"}, 3},
		// Without a manifest the damage above is invisible to a metadata
		// check: the structure is sound (the report says what level ran).
		{"verify-structure.txt", verifyOptions{Level: "structure", Report: "all"}, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp, realMP := fresh(t)
			if c.o.Manifest != "" {
				c.o.Manifest = realMP
			}
			stdout, stderr, err := verifyFor(t, context.Background(), c.o, sp)
			if code := exitcodes.FromError(err); code != c.code {
				t.Errorf("err = %v (exit %d), want exit %d", err, code, c.code)
			}
			got := "== stdout\n" + stdout + "== stderr\n" + stderr
			golden(t, c.name, normalize(got, jsonEsc(realMP), "$MANIFEST", realMP, "$MANIFEST", jsonEsc(sp), "$STORE", sp, "$STORE"))
		})
	}
}

// cancellingStore cancels the run's context at the n-th file it opens:
// Ctrl-C in the middle of a verify.
type cancellingStore struct {
	store.Store
	n      atomic.Int64
	at     int64
	cancel context.CancelFunc
}

func (c *cancellingStore) Open(e *store.Entry) (store.File, error) {
	if c.n.Add(1) == c.at {
		c.cancel()
	}
	return c.Store.Open(e)
}

func TestVerifyInterruptedPrintsSummary(t *testing.T) {
	dir := t.TempDir()
	sp, err := fixtures.Profile(filepath.Join(dir, "p"), 1<<20, 200, false, 3)
	if err != nil {
		t.Fatal(err)
	}
	mp := indexTo(t, dir, sp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrapStore = func(s store.Store) store.Store { return &cancellingStore{Store: s, at: 20, cancel: cancel} }
	defer func() { wrapStore = nil }()
	logPath := filepath.Join(dir, "verify.log")
	stdout, _, err := verifyFor(t, ctx, verifyOptions{Manifest: mp, JSON: true, Log: logPath}, sp)
	if !errors.Is(err, context.Canceled) || exitcodes.FromError(err) != exitcodes.Interrupted {
		t.Fatalf("err = %v, want context.Canceled (exit 130)", err)
	}
	_, sum := jsonLines(t, stdout)
	if sum["interrupted"] != true || sum["complete"] != false || sum["exit_code"].(float64) != 130 ||
		sum["unreadable"].(float64) != 0 || sum["catalog"] != "SKIPPED" ||
		sum["files"].(float64) >= 200 || !strings.Contains(sum["error"].(string), "canceled") {
		t.Errorf("summary %v", sum)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "result:     INTERRUPTED") {
		t.Errorf("log %s", log)
	}
	// The text report says so too.
	wrapStore = nil
	ctx3, cancel3 := context.WithCancel(context.Background())
	cancel3()
	stdout, _, err = verifyFor(t, ctx3, verifyOptions{Manifest: mp}, sp)
	if !errors.Is(err, context.Canceled) || !strings.Contains(stdout, "INTERRUPTED") {
		t.Errorf("text: %v\n%s", err, stdout)
	}
}

func TestVerifyExitCodesAndLog(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "a"))
	mp := indexTo(t, dir, sp)
	// Clean: 0, and the log holds every file and the catalog line.
	logPath := filepath.Join(dir, "v.log")
	stdout, _, err := verifyFor(t, context.Background(), verifyOptions{Manifest: mp, Log: logPath}, sp)
	if err != nil || !strings.Contains(stdout, "result:     OK") || !strings.Contains(stdout, "13 checked: 13 OK") {
		t.Fatalf("%v\n%s", err, stdout)
	}
	log, _ := os.ReadFile(logPath)
	if n := strings.Count(string(log), "\tOK\n"); n != 14 { // 13 files + CATALOG
		t.Errorf("log has %d OK lines:\n%s", n, log)
	}
	// Through the command line.
	code, _, stderr := runCLI(t, "verify", sp, "--manifest", mp, "--report", "all", "-q")
	if code != 0 {
		t.Errorf("exit %d: %s", code, stderr)
	}
	// Usage mistakes: 2.
	for _, args := range [][]string{
		{"verify", sp, "--level", "deep"},
		{"verify", sp, "--report", "everything"},
		{"verify", sp, "--log", filepath.Join(sp, "USMT", "v.log")},
		{"verify", sp, "--manifest", mp, "--log", mp},
		{"verify"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitcodes.Usage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if _, err := os.Stat(filepath.Join(sp, "USMT", "v.log")); err == nil {
		t.Error("a log was written inside the store")
	}
	// A damaged manifest: 1, and nothing claims success.
	b, _ := os.ReadFile(mp)
	os.WriteFile(mp, bytes.Replace(b, []byte(`"size":20000`), []byte(`"size":20001`), 1), 0o644)
	code, stdout, stderr = runCLI(t, "verify", sp, "--manifest", mp)
	if code != exitcodes.Failure || !strings.Contains(stderr, "damaged or was edited") || strings.Contains(stdout, "OK") {
		t.Errorf("damaged manifest: exit %d\n%s%s", code, stdout, stderr)
	}
	// --json still ends with a summary object when nothing could be checked.
	code, stdout, _ = runCLI(t, "verify", sp, "--manifest", mp, "--json")
	if code != exitcodes.Failure {
		t.Errorf("damaged manifest --json: exit %d", code)
	}
	_, sum := jsonLines(t, stdout)
	if sum["exit_code"].(float64) != 1 || sum["complete"] != false || !strings.Contains(sum["error"].(string), "damaged") {
		t.Errorf("early summary %v", sum)
	}
	// No manifest, catalog removed: structure check finds it missing.
	os.Remove(filepath.Join(sp, "USMT", "catalog.mig"))
	stdout, _, err = verifyFor(t, context.Background(), verifyOptions{Report: "catalog"}, sp)
	if exitcodes.FromError(err) != exitcodes.Partial || !strings.HasPrefix(stdout, "CATALOG\tMISSING\n") {
		t.Errorf("%v %q", err, stdout)
	}
}

func TestVerifyHostileStructure(t *testing.T) {
	dir := t.TempDir()
	h := fixtures.Hostile(t, dir)
	mp := indexTo(t, t.TempDir(), h.StorePath)
	stdout, stderr, err := verifyFor(t, context.Background(), verifyOptions{Manifest: mp, JSON: true}, h.StorePath)
	if err != nil && exitcodes.FromError(err) != exitcodes.Partial {
		t.Fatal(err)
	}
	files, sum := jsonLines(t, stdout)
	var bad []string
	for _, f := range files {
		if f.Status != "OK" {
			bad = append(bad, f.StorePath+" "+f.Status+" "+f.Detail)
		}
	}
	if os.Geteuid() == 0 && (len(bad) != 0 || err != nil) {
		// As root every hostile entry is readable: nothing may be flagged.
		t.Errorf("flagged %v (%v)\n%s", bad, err, stderr)
	}
	if sum["level"] != "data" {
		t.Errorf("summary %v", sum)
	}
	var sawBad bool
	for _, f := range files {
		if f.StorePathB64 != "" {
			sawBad = true
		}
	}
	if !sawBad {
		t.Error("the non-UTF-8 name carries no store_path_b64")
	}
}

// TestVerifyNTFSHardLinkStore runs on a real NTFS volume through ntfs-3g:
// a hard-link store verifies clean; a live file modified in place through
// its other link changes the store (same inode): CHANGED; a live file
// saved with "write temp + rename" leaves the store copy intact: OK.
func TestVerifyNTFSHardLinkStore(t *testing.T) {
	vol := fixtures.NewNTFSVolume(t, 64)
	h := fixtures.HardLinkStore(t, vol.Mount)
	mp := indexTo(t, t.TempDir(), h.StorePath)
	_, recs := readManifest(t, mp)
	multi := 0
	for _, r := range recs {
		if r.Type == "file" && !r.Control && r.Nlink >= 2 {
			multi++
		}
	}
	if multi != len(h.Linked) {
		t.Fatalf("%d multi-linked files in the manifest, want %d", multi, len(h.Linked))
	}
	stdout, _, err := verifyFor(t, context.Background(), verifyOptions{Manifest: mp}, h.StorePath)
	if err != nil {
		t.Fatalf("clean hard-link store: %v\n%s", err, stdout)
	}
	sort.Strings(h.Linked)
	inPlace, renamed := h.Linked[0], h.Linked[1]
	// In place through the live link: the store's copy is the same inode.
	live := h.LivePath(inPlace)
	f, err := os.OpenFile(live, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("EDITED"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Write temp + rename over the live name: the store keeps the old inode.
	live2 := h.LivePath(renamed)
	tmp := live2 + ".tmp"
	if err := os.WriteFile(tmp, []byte("a whole new version"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, live2); err != nil {
		t.Fatal(err)
	}
	stdout, _, err = verifyFor(t, context.Background(), verifyOptions{Manifest: mp, JSON: true}, h.StorePath)
	if exitcodes.FromError(err) != exitcodes.Partial {
		t.Fatalf("err = %v", err)
	}
	files, _ := jsonLines(t, stdout)
	status := map[string]string{}
	for _, f := range files {
		status[f.StorePath] = f.Status
	}
	if status[inPlace] != "CHANGED" {
		t.Errorf("%s (edited in place through the live link): %s", inPlace, status[inPlace])
	}
	if status[renamed] != "OK" {
		t.Errorf("%s (live saved by rename): %s", renamed, status[renamed])
	}
	for p, st := range status {
		if p != inPlace && st != "OK" {
			t.Errorf("%s: %s", p, st)
		}
	}
}

// ---- archives ----

// makeArchive writes the store at args as an archive with 64 KiB chunks
// (so small fixtures have files of several chunks) and returns its path.
func makeArchive(t *testing.T, dir string, args ...string) string {
	t.Helper()
	s, err := store.Open(args...)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := filepath.Join(dir, "store.tar.zst")
	res, err := compress.CreateFile(context.Background(), out, s, compress.WriteOptions{ChunkSize: compress.MinChunkSize, Threads: 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Incomplete() {
		t.Fatalf("archive incomplete: %+v", res)
	}
	return out
}

// frameRef is a frame of an archive: its offset and length.
type frameRef struct{ off, n int64 }

// archLayout is where an archive keeps each entry, read from its TOC as
// docs/format.md §2–3 describe it (independently of package compress).
type archLayout struct {
	tocOff, size int64
	hdr          map[string]int64      // store path -> header frame offset
	chunks       map[string][]frameRef // regular files (not hard links) -> data frames
	order        []string              // store paths in TOC order
}

func readLayout(t *testing.T, p string) *archLayout {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	ft := b[len(b)-64:]
	if string(ft[56:]) != "USMTZ\x00F1" {
		t.Fatalf("no footer in %s", p)
	}
	tocOff, tocC := int64(le.Uint64(ft[0:])), int64(le.Uint64(ft[8:]))
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	toc, err := dec.DecodeAll(b[tocOff+8:tocOff+8+tocC], nil)
	if err != nil {
		t.Fatal(err)
	}
	n, nc := int(le.Uint64(toc[8:])), int(le.Uint64(toc[16:]))
	es, cs := int(le.Uint16(toc[44:])), int(le.Uint16(toc[46:]))
	ents := toc[128:]
	chunks := ents[n*es:]
	names := chunks[nc*cs:]
	l := &archLayout{tocOff: tocOff, size: int64(len(b)), hdr: map[string]int64{}, chunks: map[string][]frameRef{}}
	paths := make([]string, n)
	for i := 1; i < n; i++ {
		e := ents[i*es:]
		parent, noff, nlen := le.Uint32(e[0:]), le.Uint32(e[4:]), le.Uint16(e[8:])
		paths[i] = store.JoinPath(paths[parent], string(names[noff:noff+uint32(nlen)]))
		l.order = append(l.order, paths[i])
		l.hdr[paths[i]] = int64(le.Uint64(e[64:]))
		if e[10] == 0 { // a regular file
			first, cnt := int(le.Uint32(e[20:])), int(le.Uint32(e[72:]))
			for k := first; k < first+cnt; k++ {
				c := chunks[k*cs:]
				l.chunks[paths[i]] = append(l.chunks[paths[i]], frameRef{int64(le.Uint64(c[0:])), int64(le.Uint32(c[8:]))})
			}
		}
	}
	return l
}

// verdicts runs verify --json --report all and returns every file's
// status (by store path), the summary and the error.
func verdicts(t *testing.T, o verifyOptions, args ...string) (map[string]verifyFileJSON, map[string]any, error) {
	t.Helper()
	o.JSON, o.Report = true, "all"
	stdout, _, err := verifyFor(t, context.Background(), o, args...)
	files, sum := jsonLines(t, stdout)
	got := map[string]verifyFileJSON{}
	for _, f := range files {
		if f.Type == "file" {
			got[f.StorePath] = f
		}
	}
	return got, sum, err
}

// notOKPaths lists the entries not OK.
func notOKPaths(got map[string]verifyFileJSON) []string {
	var bad []string
	for p, f := range got {
		if f.Status != "OK" {
			bad = append(bad, p)
		}
	}
	sort.Strings(bad)
	return bad
}

// archiveFixture is a USMT store with files of several 64 KiB chunks, the
// USMT4 hard-link pair and control files, its manifest and its archive.
type archiveFixture struct {
	src, manifest, archive string
	layout                 *archLayout
}

func newArchiveFixture(t *testing.T) archiveFixture {
	t.Helper()
	dir := t.TempDir()
	src := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	// Add multi-chunk files of a profile under the same store.
	prof, err := fixtures.Profile(filepath.Join(dir, "p"), 2<<20, 12, false, 11)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(prof, "USMT", "File", "C$", "Users"), filepath.Join(src, "USMT", "File", "C$", "Profile")); err != nil {
		t.Fatal(err)
	}
	mp := indexTo(t, dir, src)
	ap := makeArchive(t, dir, src)
	return archiveFixture{src: src, manifest: mp, archive: ap, layout: readLayout(t, ap)}
}

// TestVerifyArchiveChunkDamage damages one chunk at a time, for several
// chunks of several files: exactly that file (and the other names of its
// hard-link group) is CORRUPTED, with the chunk named, and every other
// entry is OK; with the source's manifest too.
func TestVerifyArchiveChunkDamage(t *testing.T) {
	f := newArchiveFixture(t)
	// Clean: everything OK, with and without the manifest.
	for _, o := range []verifyOptions{{}, {Manifest: f.manifest}, {Level: "structure"}, {Level: "structure", Manifest: f.manifest}} {
		got, sum, err := verdicts(t, o, f.archive)
		if err != nil || len(notOKPaths(got)) != 0 || sum["archive_check"] != "index" || sum["catalog"] != "OK" {
			t.Fatalf("clean archive %+v: %v %v %v", o, err, notOKPaths(got), sum)
		}
	}
	type target struct {
		path  string
		chunk int
		also  []string // other names of the hard-link group
	}
	var targets []target
	var multi []string
	for _, p := range f.layout.order {
		if len(f.layout.chunks[p]) >= 3 {
			multi = append(multi, p)
		}
	}
	if len(multi) < 3 {
		t.Fatalf("only %d files of 3+ chunks: %v", len(multi), multi)
	}
	for _, p := range multi[:3] {
		n := len(f.layout.chunks[p])
		targets = append(targets, target{path: p, chunk: 0}, target{path: p, chunk: n / 2}, target{path: p, chunk: n - 1})
	}
	targets = append(targets,
		target{path: "USMT/catalog.mig", chunk: 0},
		target{path: fixtures.USMT4LinkA, chunk: 0, also: []string{fixtures.USMT4LinkB}},
		target{path: "USMT/File/C$/Users/asmith/Pictures/cat.jpg", chunk: 0})
	for i, tg := range targets {
		fr := f.layout.chunks[tg.path]
		if len(fr) <= tg.chunk {
			t.Fatalf("%s has %d chunks", tg.path, len(fr))
		}
		p := storetest.CopyToTemp(t, f.archive)
		flipByte(t, p, fr[tg.chunk].off+fr[tg.chunk].n/2)
		want := append([]string{tg.path}, tg.also...)
		sort.Strings(want)
		opts := []verifyOptions{{}}
		if i%3 == 0 {
			opts = append(opts, verifyOptions{Manifest: f.manifest})
		}
		for _, o := range opts {
			got, sum, err := verdicts(t, o, p)
			if exitcodes.FromError(err) != exitcodes.Partial || sum["exit_code"].(float64) != 3 {
				t.Errorf("%s chunk %d: err %v", tg.path, tg.chunk, err)
			}
			if bad := notOKPaths(got); strings.Join(bad, "|") != strings.Join(want, "|") {
				t.Errorf("%s chunk %d (manifest %v): not OK %v, want %v", tg.path, tg.chunk, o.Manifest != "", bad, want)
				continue
			}
			d := got[tg.path]
			wantChunk := fmt.Sprintf("chunk %d of %d", tg.chunk, len(fr))
			if d.Status != "CORRUPTED" || !strings.Contains(d.Detail, wantChunk) {
				t.Errorf("%s: %s %q, want CORRUPTED naming %q", tg.path, d.Status, d.Detail, wantChunk)
			}
			for _, a := range tg.also {
				if got[a].Status != "CORRUPTED" || !strings.Contains(got[a].Detail, "a hard link to "+tg.path) {
					t.Errorf("%s: %s %q", a, got[a].Status, got[a].Detail)
				}
			}
			if sum["corrupted"].(float64) != float64(len(want)) || int(sum["ok"].(float64)) != len(got)-len(want) {
				t.Errorf("summary %v", sum)
			}
			if tg.path == "USMT/catalog.mig" && sum["catalog"] != "CORRUPTED" {
				t.Errorf("catalog %v", sum["catalog"])
			}
		}
		// The structure level decodes no data: the chunk goes unseen.
		if i == 0 {
			got, _, err := verdicts(t, verifyOptions{Level: "structure"}, p)
			if err != nil || len(notOKPaths(got)) != 0 {
				t.Errorf("structure level: %v %v", err, notOKPaths(got))
			}
		}
	}
}

// TestVerifyArchiveHeaderDamage: a damaged header frame with the index
// intact names its entry.
func TestVerifyArchiveHeaderDamage(t *testing.T) {
	f := newArchiveFixture(t)
	const victim = "USMT/File/C$/Users/jdoe/Desktop/notes.txt"
	p := storetest.CopyToTemp(t, f.archive)
	flipByte(t, p, f.layout.hdr[victim]+20)
	got, _, err := verdicts(t, verifyOptions{}, p)
	if exitcodes.FromError(err) != exitcodes.Partial || strings.Join(notOKPaths(got), "|") != victim ||
		got[victim].Status != "CORRUPTED" || !strings.Contains(got[victim].Detail, "header frame") {
		t.Errorf("%v %v %+v", err, notOKPaths(got), got[victim])
	}
}

// TestVerifyArchiveManifest: a manifest of the source directory store, or
// of the archive itself, applies to the archive unchanged (store paths,
// sizes, ns modified times, content hashes).
func TestVerifyArchiveManifest(t *testing.T) {
	f := newArchiveFixture(t)
	stdout, stderr, err := verifyFor(t, context.Background(), verifyOptions{Manifest: f.manifest}, f.archive)
	if err != nil || !strings.Contains(stdout, "result:     OK") || strings.Contains(stderr, "the manifest was made from") ||
		!strings.Contains(stdout, "every file read back and its xxh64 compared") {
		t.Fatalf("%v\n%s%s", err, stdout, stderr)
	}
	own := indexTo(t, t.TempDir(), f.archive)
	if _, _, err := verifyFor(t, context.Background(), verifyOptions{Manifest: own}, f.archive); err != nil {
		t.Errorf("manifest of the archive itself: %v", err)
	}
	// A file whose mtime moved by 1 ns in the source before compressing:
	// the archive keeps ns, so the old manifest sees it CHANGED.
	const victim = "USMT/File/C$/Users/jdoe/Desktop/notes.txt"
	vp := filepath.Join(f.src, victim)
	fi, _ := os.Stat(vp)
	if err := os.Chtimes(vp, fi.ModTime(), fi.ModTime().Add(time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	ap := makeArchive(t, t.TempDir(), f.src)
	got, _, err := verdicts(t, verifyOptions{Manifest: f.manifest}, ap)
	if exitcodes.FromError(err) != exitcodes.Partial || strings.Join(notOKPaths(got), "|") != victim ||
		got[victim].Status != "CHANGED" || !strings.Contains(got[victim].Detail, "modified time") {
		t.Errorf("%v %v %+v", err, notOKPaths(got), got[victim])
	}
}

// salvageCases damage an archive's index the ways compress/damage_test.go
// does: the TOC, the footer, or both cut off.
func salvageCases(l *archLayout) []struct {
	name   string
	damage func(t *testing.T, p string)
} {
	return []struct {
		name   string
		damage func(t *testing.T, p string)
	}{
		{"toc-byte", func(t *testing.T, p string) { flipByte(t, p, l.tocOff+20) }},
		{"toc-frame-header", func(t *testing.T, p string) { flipByte(t, p, l.tocOff+1) }},
		{"footer-offset", func(t *testing.T, p string) { flipByte(t, p, l.size-64) }},
		{"footer-magic", func(t *testing.T, p string) { flipByte(t, p, l.size-2) }},
		{"no-footer", func(t *testing.T, p string) { os.Truncate(p, l.size-72) }},
		{"no-index", func(t *testing.T, p string) { os.Truncate(p, l.tocOff) }},
	}
}

// TestVerifyArchiveDamagedIndex: a damaged TOC or footer makes verify run
// the salvage walk and say so in every report mode and in JSON; every
// entry still comes back OK, but the run exits 3 (the index is damage).
func TestVerifyArchiveDamagedIndex(t *testing.T) {
	f := newArchiveFixture(t)
	clean, _, err := verdicts(t, verifyOptions{}, f.archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range salvageCases(f.layout) {
		t.Run(c.name, func(t *testing.T) {
			p := storetest.CopyToTemp(t, f.archive)
			c.damage(t, p)
			for _, mode := range []string{"summary", "all", "failureonly", "catalog"} {
				stdout, stderr, err := verifyFor(t, context.Background(), verifyOptions{Report: mode}, p)
				if exitcodes.FromError(err) != exitcodes.Partial {
					t.Errorf("--report %s: err %v", mode, err)
				}
				summary := stdout
				if mode != "summary" {
					summary = stderr
				}
				if !strings.Contains(summary, "damage:     "+verify.SalvageNotice) || !strings.Contains(summary, "salvage walk") {
					t.Errorf("--report %s does not say the salvage walk ran:\n%s", mode, summary)
				}
			}
			for _, o := range []verifyOptions{{}, {Manifest: f.manifest}, {Level: "structure"}} {
				got, sum, err := verdicts(t, o, p)
				if exitcodes.FromError(err) != exitcodes.Partial || sum["exit_code"].(float64) != 3 {
					t.Errorf("%+v: err %v", o, err)
				}
				se, _ := sum["store_errors"].([]any)
				if len(notOKPaths(got)) != 0 || len(got) != len(clean) || sum["archive_check"] != "salvage" ||
					len(se) == 0 || !strings.HasPrefix(se[0].(string), verify.SalvageNotice) || sum["corrupted"].(float64) != 0 {
					t.Errorf("%+v: not OK %v, %d entries (want %d), summary %v", o, notOKPaths(got), len(got), len(clean), sum)
				}
			}
		})
	}
	// A damaged TOC and a damaged chunk: the salvage walk pins the chunk
	// to its file.
	t.Run("toc-and-chunk", func(t *testing.T) {
		const victim = "USMT/File/C$/Users/asmith/Pictures/cat.jpg"
		p := storetest.CopyToTemp(t, f.archive)
		flipByte(t, p, f.layout.tocOff+20)
		fr := f.layout.chunks[victim][0]
		flipByte(t, p, fr.off+fr.n/2)
		for _, o := range []verifyOptions{{}, {Manifest: f.manifest}} {
			got, sum, err := verdicts(t, o, p)
			if exitcodes.FromError(err) != exitcodes.Partial || strings.Join(notOKPaths(got), "|") != victim ||
				got[victim].Status != "CORRUPTED" || sum["corrupted"].(float64) != 1 {
				t.Errorf("%v %v %+v", err, notOKPaths(got), got[victim])
			}
		}
	})
	// The footer damaged and one header frame destroyed: the salvage walk
	// finds the intact TOC and names the lost entry (MISSING).
	t.Run("footer-and-header", func(t *testing.T) {
		const victim = "USMT/File/C$/Users/jdoe/Desktop/notes.txt"
		p := storetest.CopyToTemp(t, f.archive)
		flipByte(t, p, f.layout.size-64)
		flipByte(t, p, f.layout.hdr[victim]+20)
		got, sum, err := verdicts(t, verifyOptions{}, p)
		if exitcodes.FromError(err) != exitcodes.Partial || strings.Join(notOKPaths(got), "|") != victim ||
			got[victim].Status != "MISSING" || !strings.Contains(got[victim].Detail, "lost") || sum["missing"].(float64) != 1 {
			t.Errorf("%v %v %+v %v", err, notOKPaths(got), got[victim], sum)
		}
		if g := sum["salvage"].(map[string]any); g["toc_found"] != true || g["lost"].(float64) != 1 {
			t.Errorf("salvage %v", g)
		}
		got, _, _ = verdicts(t, verifyOptions{Manifest: f.manifest}, p)
		if strings.Join(notOKPaths(got), "|") != victim || got[victim].Status != "MISSING" {
			t.Errorf("with the manifest: %v", notOKPaths(got))
		}
	})
}

// TestVerifyArchiveTruncated cuts an archive inside a file's data: the
// entries before the cut are OK, that file is CORRUPTED, the rest is lost:
// MISSING by name against a manifest, an archive-level problem without.
func TestVerifyArchiveTruncated(t *testing.T) {
	f := newArchiveFixture(t)
	tarOrder := append([]string{}, f.layout.order...)
	sort.Slice(tarOrder, func(i, j int) bool { return store.ComparePaths(tarOrder[i], tarOrder[j]) < 0 })
	var victim string
	for _, p := range tarOrder {
		if len(f.layout.chunks[p]) >= 3 {
			victim = p
			break
		}
	}
	p := storetest.CopyToTemp(t, f.archive)
	if err := os.Truncate(p, f.layout.chunks[victim][1].off+10); err != nil {
		t.Fatal(err)
	}
	before := map[string]bool{}
	for _, q := range tarOrder {
		if q == victim {
			break
		}
		before[q] = true
	}
	stdout, _, err := verifyFor(t, context.Background(), verifyOptions{}, p)
	if exitcodes.FromError(err) != exitcodes.Partial || !strings.Contains(stdout, "no end-of-archive marker") ||
		!strings.Contains(stdout, verify.SalvageNotice) {
		t.Errorf("%v\n%s", err, stdout)
	}
	for _, o := range []verifyOptions{{}, {Manifest: f.manifest}} {
		got, sum, err := verdicts(t, o, p)
		if exitcodes.FromError(err) != exitcodes.Partial {
			t.Errorf("err %v", err)
		}
		if got[victim].Status != "CORRUPTED" || !strings.Contains(got[victim].Detail, "truncated") &&
			!strings.Contains(got[victim].Detail, "unreadable bytes") {
			t.Errorf("%s: %+v", victim, got[victim])
		}
		for q, r := range got {
			switch {
			case before[q] && r.Status != "OK":
				t.Errorf("%s (before the cut): %s %s", q, r.Status, r.Detail)
			case !before[q] && q != victim && (o.Manifest == "" || r.Status != "MISSING"):
				t.Errorf("%s (after the cut): %s %s", q, r.Status, r.Detail)
			}
		}
		if o.Manifest != "" {
			if int(sum["missing"].(float64)) != len(f.layout.order)-len(before)-1 {
				t.Errorf("missing %v, want %d", sum["missing"], len(f.layout.order)-len(before)-1)
			}
		}
		if sum["catalog"] != "MISSING" { // catalog.mig sorts after USMT/File
			t.Errorf("catalog %v", sum["catalog"])
		}
	}
}

var reOffset = regexp.MustCompile(`(archive offset|at offset) [0-9]+|\([0-9]+ bytes, the first|written [0-9TZ:-]+`)

func TestVerifyArchiveGolden(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	good := makeArchive(t, dir, sp)
	l := readLayout(t, good)
	const victim = "USMT/File/C$/Users/asmith/Pictures/cat.jpg"
	fr := l.chunks[victim][0]
	jsonEsc := func(s string) string { b, _ := json.Marshal(s); return strings.Trim(string(b), `"`) }
	for _, c := range []struct {
		name    string
		o       verifyOptions
		salvage bool
	}{
		{"verify-archive-all.txt", verifyOptions{Report: "all"}, false},
		{"verify-archive-json-summary.txt", verifyOptions{JSON: true, Report: "summary"}, false},
		{"verify-archive-salvage.txt", verifyOptions{}, true},
		{"verify-archive-salvage-json.txt", verifyOptions{JSON: true, Report: "failureonly"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := storetest.CopyToTemp(t, good)
			flipByte(t, p, fr.off+fr.n/2)
			if c.salvage {
				flipByte(t, p, l.tocOff+20)
			}
			stdout, stderr, err := verifyFor(t, context.Background(), c.o, p)
			if code := exitcodes.FromError(err); code != exitcodes.Partial {
				t.Errorf("err = %v (exit %d), want exit 3", err, code)
			}
			got := "== stdout\n" + stdout + "== stderr\n" + stderr
			got = normalize(got, jsonEsc(p), "$ARCHIVE", p, "$ARCHIVE")
			golden(t, c.name, reOffset.ReplaceAllStringFunc(got, func(m string) string {
				switch {
				case strings.HasPrefix(m, "written"):
					return "written T"
				case strings.HasPrefix(m, "("):
					return "(N bytes, the first"
				}
				return m[:strings.LastIndexByte(m, ' ')] + " N"
			}))
		})
	}
}

// cancelArchive cancels the run's context at the at-th check of the
// archive's VerifyAll: Ctrl-C during the chunk check.
type cancelArchive struct {
	*compress.Archive
	n      int
	at     int
	cancel context.CancelFunc
}

func (c *cancelArchive) VerifyAll(ctx context.Context, fn func(path string, chunk int, err error)) error {
	return c.Archive.VerifyAll(ctx, func(p string, chunk int, err error) {
		if c.n++; c.n == c.at {
			c.cancel()
		}
		fn(p, chunk, err)
	})
}

// cancelWriter cancels a context at its first write: the report's first
// flush, in the middle of a salvage walk.
type cancelWriter struct {
	bytes.Buffer
	cancel context.CancelFunc
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	c.cancel()
	return c.Buffer.Write(p)
}

func TestVerifyArchiveInterrupted(t *testing.T) {
	f := newArchiveFixture(t)
	total := len(f.layout.order)
	// During the chunk check.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wrapStore = func(s store.Store) store.Store {
		return &cancelArchive{Archive: s.(*compress.Archive), at: 10, cancel: cancel}
	}
	defer func() { wrapStore = nil }()
	stdout, _, err := verifyFor(t, ctx, verifyOptions{JSON: true, Manifest: f.manifest}, f.archive)
	if !errors.Is(err, context.Canceled) || exitcodes.FromError(err) != exitcodes.Interrupted {
		t.Fatalf("err = %v, want context.Canceled (exit 130)", err)
	}
	_, sum := jsonLines(t, stdout)
	if sum["interrupted"] != true || sum["complete"] != false || sum["exit_code"].(float64) != 130 || sum["catalog"] != "SKIPPED" {
		t.Errorf("summary %v", sum)
	}
	wrapStore = nil
	// During the salvage walk: the report's first flush stops it.
	p := storetest.CopyToTemp(t, f.archive)
	flipByte(t, p, f.layout.tocOff+20)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	var errb bytes.Buffer
	out := &cancelWriter{cancel: cancel2}
	o := verifyOptions{JSON: true, Report: "all", Level: "data", Threads: 2}
	o.globalOptions = globalOptions{Stdout: out, Stderr: &errb}
	err = runVerify(ctx2, &o, []string{p})
	if !errors.Is(err, context.Canceled) || exitcodes.FromError(err) != exitcodes.Interrupted {
		t.Fatalf("salvage: err = %v, want context.Canceled (exit 130)", err)
	}
	files, sum := jsonLines(t, out.String())
	if sum["interrupted"] != true || sum["complete"] != false || sum["archive_check"] != "salvage" ||
		len(files) >= total || sum["exit_code"].(float64) != 130 {
		t.Errorf("salvage: %d files of %d, summary %v", len(files), total, sum)
	}
}
