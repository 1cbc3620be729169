package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

var snakeKey = regexp.MustCompile(`^[a-z0-9_]+$`)

// jsonValues decodes every JSON value of out: one indented object, or one
// object per line (JSON lines).
func jsonValues(t *testing.T, out string) []any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var vals []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return vals
		}
		if err != nil {
			t.Fatalf("not JSON (%v) after %d values:\n%s", err, len(vals), out)
		}
		vals = append(vals, v)
	}
}

// badKeys walks v and returns every object key (with its path) that is not
// snake_case.
func badKeys(v any, path string, bad map[string]bool, seen map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			seen[k] = true
			if !snakeKey.MatchString(k) {
				bad[path+"."+k] = true
			}
			badKeys(val, path+"."+k, bad, seen)
		}
	case []any:
		for _, e := range x {
			badKeys(e, path+"[]", bad, seen)
		}
	}
}

// Every --json output of every command, over a folder store, a hard-link
// store, a share copy, an archive, a manifest and a USMT.MIG, has
// snake_case keys only ([a-z0-9_]), at every depth, on stdout and in the
// error object on stderr (docs/cli.md).
func TestJSONKeysSnakeCase(t *testing.T) {
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "u4"))
	hl := fixtures.HardLinkStore(t, filepath.Join(dir, "vol"))
	share := fixtures.SMPShare(t, filepath.Join(dir, "smp"))
	copies := filepath.Join(dir, "copies")
	fixtures.Build(t, copies, fixtures.Tree{
		"SMPSTORE_00000000$/x/readme.txt": fixtures.File{Data: []byte("no store")},
		"PC1/USMT/catalog.mig":            fixtures.File{Data: []byte("c")},
		"PC1/USMT/File/C$/a.txt":          fixtures.File{Data: []byte("a")},
		"PC2/USMT.MIG":                    fixtures.File{Data: fixtures.MIGFile(false, nil)},
	})
	mig := filepath.Join(fixtures.MIGStore(t, filepath.Join(dir, "mig"), false), "USMT", "USMT.MIG")
	archive := filepath.Join(dir, "u4.tar.zst")
	manifest := filepath.Join(dir, "u4.manifest")
	if code, _, errs := runCLI(t, "compress", sp, "-o", archive); code != 0 {
		t.Fatalf("compress: %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, "index", sp, "-o", manifest); code != 0 {
		t.Fatalf("index: %d %s", code, errs)
	}
	live := "C=" + hl.Volume

	cases := [][]string{
		{"info", sp}, {"info", hl.StorePath}, {"info", share.Root}, {"info", copies}, {"info", archive}, {"info", mig},
		{"info", filepath.Join(dir, "nothing-here")}, // the error object
		{"ls", "-R", sp}, {"ls", "-R", archive}, {"ls", mig},
		{"index", sp, "-o", filepath.Join(dir, "again.manifest")},
		{"index", archive, "-o", filepath.Join(dir, "archive.manifest")},
		{"verify", sp}, {"verify", sp, "--manifest", manifest}, {"verify", archive}, {"verify", archive, "--manifest", manifest},
		{"verify", mig}, {"verify", "--report", "failureonly", sp},
		{"compress", sp, "-o", filepath.Join(dir, "again.tar.zst")},
		{"salvage", archive, filepath.Join(dir, "salvaged")},
		{"extract", "--dry-run", sp, filepath.Join(dir, "dry")},
		{"extract", sp, filepath.Join(dir, "out")},
		{"extract", archive, filepath.Join(dir, "out-archive")},
		{"hardlinks", hl.StorePath, "--live", live},
		{"rd", hl.StorePath, "--live", live}, // a dry run
	}
	cases = append(cases, fleetJSONCases(t, dir, share.Root, copies, sp, mig)...)
	seen := map[string]bool{}
	for _, args := range cases {
		code, stdout, stderr := runCLI(t, append(append([]string{}, args...), "--json")...)
		vals := jsonValues(t, stdout)
		if code != 0 {
			// The error object is the last line of stderr.
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			vals = append(vals, jsonValues(t, lines[len(lines)-1])...)
		}
		if len(vals) == 0 {
			t.Errorf("%v: exit %d and no JSON at all\nstderr: %s", args, code, stderr)
			continue
		}
		bad := map[string]bool{}
		for _, v := range vals {
			badKeys(v, args[0], bad, seen)
		}
		if len(bad) > 0 {
			var list []string
			for k := range bad {
				list = append(list, k)
			}
			sort.Strings(list)
			t.Errorf("%v: keys not in snake_case: %s", args, strings.Join(list, ", "))
		}
	}
	// The journals those runs wrote (docs/journal.md) have snake_case keys too.
	for _, j := range []string{"fleet.journal", "fleet-index.journal"} {
		raw, err := os.ReadFile(filepath.Join(dir, j))
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]bool{}
		vals := jsonValues(t, string(raw))
		for _, v := range vals {
			badKeys(v, j, bad, seen)
		}
		if len(vals) == 0 || len(bad) > 0 {
			t.Errorf("%s: %d records, keys not in snake_case: %v", j, len(vals), bad)
		}
	}
	// The walk reached the nested objects, not only the top level.
	for _, k := range []string{"stores", "share", "control_files", "store_path", "drives", "exit_code", "first_record_names", "store_id", "not_started"} {
		if !seen[k] {
			t.Errorf("no output had the key %q: the inputs no longer cover it", k)
		}
	}
	if _, err := os.Stat(hl.StorePath); err != nil {
		t.Fatalf("the dry run removed the store: %v", err)
	}
}
