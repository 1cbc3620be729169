package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/journal"
	"github.com/usmtkit/usmtkit/objstore"
)

// compress of a share copy to s3://BUCKET/PREFIX/: one object per store,
// each reading like its store, a journal a re-run resumes from.
func TestCompressFleetToBucket(t *testing.T) {
	c := s3Bucket(t, "fleet")
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 4, 2000)
	j := filepath.Join(dir, "compress.journal")
	// A prefix of this run's own: the server may be shared between runs.
	prefix := fmt.Sprintf("s3://fleet/run%d/", time.Now().UnixNano())
	code, out, stderr := runCLI(t, "compress", root, "-o", prefix, "--jobs", "2", "--journal", j, "--level", "fastest")
	if code != 0 || linesStarting(out, "OK ") != len(stores) || !strings.Contains(out, "every store archived and read back") {
		t.Fatalf("compress SHARE -o %s: exit %d\n%s\n%s", prefix, code, out, stderr)
	}
	recs, notes, err := journal.Read(j)
	if err != nil || len(notes) != 0 || len(recs) != 2*len(stores) {
		t.Fatalf("journal: %v %v %d records (want a started and an ok record per store)", err, notes, len(recs))
	}
	for i, sp := range stores {
		name := fmt.Sprintf("%sSMPSTORE_1A2B3C4D$_PC%03d.tar.zst", prefix, i)
		loc, _ := objstore.ParseURL(name)
		if ok, err := c.Exists(context.Background(), loc); !ok || err != nil {
			t.Fatalf("%s: no object (%v)", name, err)
		}
		_, fromStore, _ := runCLI(t, "ls", "-R", sp)
		if code, fromObject, stderr := runCLI(t, "ls", "-R", name); code != 0 || fromObject != fromStore {
			t.Errorf("%s lists unlike its store (exit %d %s)", name, code, stderr)
		}
	}
	for _, r := range journal.Latest(recs, "compress") {
		if r.Status != journal.StatusOK || r.Fields["verified"] != true || !strings.HasPrefix(r.Fields["archive"].(string), prefix) {
			t.Errorf("record %+v", r)
		}
	}

	// Again: every store is skipped and nothing is sent but the journal's
	// word (no HEAD, no PUT).
	t.Setenv(requestsEnv, "1")
	code, out, stderr = runCLI(t, "compress", root, "-o", prefix, "--journal", j)
	if code != 0 || linesStarting(out, "SKIPPED ") != len(stores) || strings.Contains(stderr, "s3 requests") {
		t.Fatalf("re-run: exit %d\n%s\n%s", code, out, stderr)
	}
	// --redo without --force: the objects exist, each store fails.
	code, out, _ = runCLI(t, "compress", root, "-o", prefix, "--journal", j, "--redo")
	if code == 0 || linesStarting(out, "FAILED ") != len(stores) || !strings.Contains(out, "already exists") {
		t.Fatalf("--redo over existing objects: exit %d\n%s", code, out)
	}

	// A local folder works the same way.
	local := filepath.Join(dir, "archives")
	if code, out, stderr := runCLI(t, "compress", root, "-o", local+"/", "--level", "fastest"); code != 0 {
		t.Fatalf("compress SHARE -o DIR/: exit %d\n%s\n%s", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(local, "SMPSTORE_1A2B3C4D$_PC002.tar.zst")); err != nil {
		t.Error(err)
	}

	// A prefix must end in /; a folder inside a store is refused.
	if code, _, stderr := runCLI(t, "compress", root, "-o", "s3://fleet/site12"); code != exitcodes.Usage || !strings.Contains(stderr, "ending in /") {
		t.Errorf("prefix without /: exit %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "compress", root, "-o", filepath.Join(stores[0], "out")+"/"); code != exitcodes.Usage {
		t.Errorf("a folder inside a store: exit %d %s", code, stderr)
	}
}

// A run killed after a store's archive was complete but before its "ok"
// reached the journal left the store's "started" record: the re-run knows
// that archive as its own and replaces it without --force; so does a
// record "interrupted" after the archive was written (Ctrl-C while it was
// read back). An archive the journal knows nothing of is still kept
// (FAILED, "already exists").
func TestCompressFleetResumesItsOwnArchive(t *testing.T) {
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 3, 1000)
	out := filepath.Join(dir, "archives") + "/"
	j := filepath.Join(dir, "compress.journal")
	if code, o, e := runCLI(t, "compress", root, "-o", out, "--journal", j, "--level", "fastest"); code != 0 {
		t.Fatalf("compress: exit %d\n%s\n%s", code, o, e)
	}
	// Store 0 as if killed between its archive and its "ok"; store 1 as if
	// its archive were someone else's: the journal has nothing of it;
	// store 2 as if interrupted while its archive was read back.
	b, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		cut0 := strings.Contains(l, `"key":"`+stores[0]+`"`) && strings.Contains(l, `"status":"ok"`)
		if l == "" || cut0 || strings.Contains(l, `"key":"`+stores[1]+`"`) {
			continue
		}
		if strings.Contains(l, `"key":"`+stores[2]+`"`) && strings.Contains(l, `"status":"ok"`) {
			l = strings.Replace(l, `"status":"ok"`, `"status":"interrupted"`, 1)
			l = strings.Replace(l, `"fields":{`, `"fields":{"written":true,`, 1)
		}
		keep = append(keep, l)
	}
	if err := os.WriteFile(j, []byte(strings.Join(keep, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, o, e := runCLI(t, "compress", root, "-o", out, "--journal", j, "--level", "fastest")
	if code == 0 || linesStarting(o, "OK ") != 2 || linesStarting(o, "FAILED ") != 1 ||
		!strings.Contains(o, "already exists") {
		t.Fatalf("re-run: exit %d\n%s\n%s", code, o, e)
	}
	recs, _, err := journal.Read(j)
	if err != nil {
		t.Fatal(err)
	}
	latest := journal.Latest(recs, "compress")
	if latest[stores[0]].Status != journal.StatusOK || latest[stores[1]].Status != journal.StatusFailed || latest[stores[2]].Status != journal.StatusOK {
		t.Errorf("journal after the re-run: %+v", latest)
	}
	if code, _, e := runCLI(t, "verify", filepath.Join(out, "SMPSTORE_1A2B3C4D$_PC000.tar.zst")); code != 0 {
		t.Errorf("the replaced archive: verify exit %d %s", code, e)
	}
}

// The server killed while stores are being uploaded: the stores not done
// are FAILED in the journal and no object appears under their keys; once
// the server is back, a re-run with the journal does only those.
func TestCompressFleetServerKilled(t *testing.T) {
	srv := fixtures.StartS3Server(t)
	c, err := objstore.NewClient(objstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.EnsureBucket(ctx, "killed"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, stores := fleetShare(t, dir, 3, 1000)
	// Big incompressible files, so the uploads are under way when the
	// server dies.
	big := make([]byte, 48<<20)
	rand.NewChaCha8([32]byte{2}).Read(big)
	for _, sp := range stores {
		if err := os.WriteFile(filepath.Join(sp, "USMT/File/C$/Users/big.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objReaderOptions = objstore.ReaderOptions{Timeout: 5 * time.Second}
	t.Cleanup(func() { objReaderOptions = objstore.ReaderOptions{} })
	j := filepath.Join(dir, "compress.journal")
	time.AfterFunc(700*time.Millisecond, srv.Kill)
	var out, errb bytes.Buffer
	code := run(ctx, []string{"usmtkit", "compress", root, "-o", "s3://killed/p/", "--jobs", "3", "--journal", j, "--level", "fastest", "--threads", "1"}, &out, &errb)
	if code == exitcodes.OK {
		t.Fatalf("compress with the server killed: exit 0\n%s\n%s", out.String(), errb.String())
	}
	srv.Restart()
	recs, _, err := journal.Read(j)
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	for _, r := range recs {
		done[r.Key] = journal.Done(r.Status)
	}
	redo := 0
	for i, sp := range stores {
		loc, _ := objstore.ParseURL(fmt.Sprintf("s3://killed/p/SMPSTORE_1A2B3C4D$_PC%03d.tar.zst", i))
		ok, err := c.Exists(ctx, loc)
		if err != nil {
			t.Fatal(err)
		}
		if ok != done[sp] {
			t.Errorf("store %d: object there %v, journal done %v", i, ok, done[sp])
		}
		if !done[sp] {
			redo++
		}
	}
	if redo == 0 {
		t.Fatalf("every store finished before the server was killed: nothing tested\n%s", out.String())
	}
	code, o2, e2 := runCLI(t, "compress", root, "-o", "s3://killed/p/", "--journal", j, "--level", "fastest")
	if code != 0 || linesStarting(o2, "OK ") != redo || linesStarting(o2, "SKIPPED ") != len(stores)-redo {
		t.Fatalf("re-run after the server returned: exit %d (redo %d)\n%s\n%s", code, redo, o2, e2)
	}
}
