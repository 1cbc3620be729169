package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
)

// An s3:// prefix names every archive under it, as a share copy names its
// stores: info lists them with their users, index and verify run over
// them with the manifest names index gave the share copy's stores, and
// what is no archive, a cut archive, an empty prefix, a missing bucket and
// a command that reads one store each get their line and exit code.
func TestObjectStorePrefix(t *testing.T) {
	c := s3Bucket(t, "prefix")
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 3, 3000)
	prefix := fmt.Sprintf("s3://prefix/run%d/site12/", time.Now().UnixNano())
	shareManifests := filepath.Join(dir, "share-manifests")
	if code, out, stderr := runCLI(t, "index", root, "-o", shareManifests); code != 0 {
		t.Fatalf("index SHARE: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, out, stderr := runCLI(t, "compress", root, "-o", prefix, "--level", "fastest"); code != 0 ||
		!strings.Contains(out, fmt.Sprintf("-> '%sSMPSTORE_1A2B3C4D$_PC000.tar.zst' (", prefix)) {
		t.Fatalf("compress SHARE -o PREFIX (each archive named ready to paste): exit %d\n%s\n%s", code, out, stderr)
	}
	readme := filepath.Join(dir, "README.txt")
	if err := os.WriteFile(readme, []byte("site 12, closed 2026-12\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	putFile(t, c, readme, prefix+"README.txt")

	// info: every archive, its users, what was not read.
	code, out, stderr := runCLI(t, "info", prefix)
	if code != 0 {
		t.Fatalf("info PREFIX: exit %d\n%s\n%s", code, out, stderr)
	}
	for i := range stores {
		// Quoted for the shell: $_PC000 would be a variable.
		for _, want := range []string{fmt.Sprintf("'%sSMPSTORE_1A2B3C4D$_PC%03d.tar.zst'\n", prefix, i), fmt.Sprintf(`user C:\Users\u%03d`, i)} {
			if !strings.Contains(out, want) {
				t.Errorf("info PREFIX lacks %q:\n%s", want, out)
			}
		}
	}
	if !strings.Contains(out, "1 object(s) whose keys do not end in .tar.zst were not read") {
		t.Errorf("info PREFIX does not count the README:\n%s", out)
	}
	// Its requests: one list, then each archive's index (1 HEAD, 1 GET).
	t.Setenv(requestsEnv, "1")
	if _, _, stderr := runCLI(t, "info", prefix); !strings.Contains(stderr, fmt.Sprintf("s3 requests: %d HEAD, %d GET, 0 PUT", len(stores), len(stores)+1)) {
		t.Errorf("info PREFIX requests: %s", stderr)
	}
	// One client for the run: the archives, one after another, reuse its
	// connection (a client per archive opened one each: 4 here). Another
	// AWS_PROFILE makes a fresh client, whose first request connects.
	t.Setenv("AWS_PROFILE", "fresh-client")
	if _, _, stderr := runCLI(t, "verify", prefix, "--jobs", "1"); !strings.Contains(stderr, "; 1 connections opened") {
		t.Errorf("verify PREFIX --jobs 1: %s", stderr)
	}
	t.Setenv(requestsEnv, "")
	code, out, stderr = runCLI(t, "info", "--json", prefix)
	var rep prefixReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Kind != kindPrefix || rep.StoreType != "prefix" || len(rep.Archives) != len(stores) {
		t.Fatalf("info --json PREFIX: exit %d %s\n%s", code, stderr, out)
	}
	for i, a := range rep.Archives {
		if a.ID != fmt.Sprintf("SMPSTORE_1A2B3C4D$_PC%03d", i) || a.Source != "usmt-dir" || len(a.Users) != 1 ||
			a.Users[0].Path != fmt.Sprintf(`C:\Users\u%03d`, i) || a.Users[0].Files != int64(i%7+1) || a.Size == 0 || a.Modified.IsZero() {
			t.Errorf("archive %d: %+v", i, a)
		}
	}
	bad := map[string]bool{}
	badKeys(jsonValues(t, out)[0], "", bad, map[string]bool{})
	if len(bad) > 0 {
		t.Errorf("keys not snake_case: %v", bad)
	}

	// verify over the prefix against the share copy's manifests, with a
	// journal keyed by the objects; index over it names its manifests the
	// same way.
	j := filepath.Join(dir, "verify.journal")
	code, out, stderr = runCLI(t, "verify", prefix, "--manifest", shareManifests, "--journal", j)
	if code != 0 || linesStarting(out, "OK ") != len(stores) {
		t.Fatalf("verify PREFIX --manifest: exit %d\n%s\n%s", code, out, stderr)
	}
	recs, _, err := journal.Read(j)
	if err != nil || len(recs) != len(stores) || !strings.HasPrefix(recs[0].Key, prefix) || recs[0].Fields["manifest"] == nil {
		t.Fatalf("journal: %v %+v", err, recs)
	}
	if !strings.Contains(stderr, "1 object(s) whose keys do not end in .tar.zst") {
		t.Errorf("verify PREFIX does not count the README:\n%s", stderr)
	}
	// A prefix among --from's lines, and the JSON error of an empty one.
	from := filepath.Join(dir, "from.txt")
	if err := os.WriteFile(from, []byte("# site 12\r\n"+prefix+"\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runCLI(t, "verify", "--from", from); code != 0 || linesStarting(out, "OK ") != len(stores) {
		t.Errorf("verify --from with a prefix: exit %d\n%s\n%s", code, out, stderr)
	}
	prefixManifests := filepath.Join(dir, "prefix-manifests")
	if code, out, stderr := runCLI(t, "index", prefix, "-o", prefixManifests); code != 0 {
		t.Fatalf("index PREFIX: exit %d\n%s\n%s", code, out, stderr)
	}
	for i := range stores {
		if _, err := os.Stat(filepath.Join(prefixManifests, fmt.Sprintf("SMPSTORE_1A2B3C4D$_PC%03d.manifest", i))); err != nil {
			t.Error(err)
		}
	}

	// A cut archive: info and verify say which and exit 3.
	local := filepath.Join(dir, "pc.tar.zst")
	if code, _, stderr := runCLI(t, "compress", stores[0], "-o", local, "--level", "fastest"); code != 0 {
		t.Fatalf("compress: %d %s", code, stderr)
	}
	whole, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.tar.zst")
	if err := os.WriteFile(cut, whole[:len(whole)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	putFile(t, c, cut, prefix+"cut.tar.zst")
	code, out, _ = runCLI(t, "info", prefix)
	t.Logf("info PREFIX:\n%s", out)
	if code != exitcodes.Partial || !strings.Contains(out, "  "+prefix+"cut.tar.zst\n    PROBLEM: ") {
		t.Errorf("info PREFIX with a cut archive: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "verify", prefix)
	t.Logf("verify PREFIX:\n%s", out)
	if code != exitcodes.Partial || linesStarting(out, "OK ") != len(stores) || !strings.Contains(out, prefix+"cut.tar.zst") {
		t.Errorf("verify PREFIX with a cut archive: exit %d\n%s", code, out)
	}

	// Nothing there, no bucket, one-store commands.
	empty := strings.TrimSuffix(prefix, "site12/") + "nothing/"
	if code, _, stderr := runCLI(t, "info", "--json", empty); code != exitcodes.NoStore || !strings.Contains(stderr, `"exit_code":10`) || !strings.Contains(stderr, `"type":"error"`) {
		t.Errorf("info --json of an empty prefix: exit %d\n%s", code, stderr)
	}
	for _, args := range [][]string{{"info", empty}, {"verify", empty}, {"info", "s3://no-such-bucket-here/x/"}} {
		if code, _, stderr := runCLI(t, args...); code != exitcodes.NoStore || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitcodes.NoStore, stderr)
		}
	}
	t.Run("wrong credentials", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
		for _, cmd := range []string{"info", "verify"} {
			if code, _, stderr := runCLI(t, cmd, prefix); code != exitcodes.Failure || !strings.Contains(stderr, "refused the credentials") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("%s PREFIX: exit %d: %s", cmd, code, stderr)
			}
		}
	})
	if err := os.Mkdir(filepath.Join(dir, "m"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The prefix's name without its final /, and a bucket alone.
	if code, _, stderr := runCLI(t, "ls", strings.TrimSuffix(prefix, "/")); code != exitcodes.NoStore || !strings.Contains(stderr, "site12/ is a prefix with objects under it") {
		t.Errorf("ls PREFIX without /: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "ls", "s3://prefix"); code != exitcodes.Usage || !strings.Contains(stderr, "names a prefix") {
		t.Errorf("ls BUCKET: exit %d: %s", code, stderr)
	}
	for _, args := range [][]string{{"ls", prefix}, {"extract", prefix, filepath.Join(dir, "x")}, {"salvage", prefix, filepath.Join(dir, "y")}, {"mount", prefix, filepath.Join(dir, "m")}} {
		if code, _, stderr := runCLI(t, args...); code != exitcodes.Usage || !strings.Contains(stderr, "names a prefix") {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"s3://b/site12/pc042.tar.zst":              "s3://b/site12/pc042.tar.zst",
		"s3://b/site12/SMPSTORE_1A$_PC042.tar.zst": "'s3://b/site12/SMPSTORE_1A$_PC042.tar.zst'",
		"s3://b/it's here.tar.zst":                 `'s3://b/it'\''s here.tar.zst'`,
		"":                                         "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
