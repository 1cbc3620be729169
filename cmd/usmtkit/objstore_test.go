package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/objstore"
)

// s3Bucket points the AWS variables at a real S3 server
// (fixtures.S3Endpoint) and returns a fresh bucket on it.
func s3Bucket(t *testing.T, name string) *objstore.Client {
	t.Helper()
	fixtures.S3Endpoint(t)
	c, err := objstore.NewClient(objstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBucket(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	return c
}

// putFile uploads a local file as s3://BUCKET/KEY.
func putFile(t *testing.T, c *objstore.Client, file, name string) {
	t.Helper()
	loc, err := objstore.ParseURL(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	up, err := c.Create(context.Background(), loc, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(up, f); err != nil {
		up.Abort()
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
}

// Every reading command gives the same result on an archive in a bucket
// as on the same archive on disk, and compress -o s3:// makes an archive
// that reads like the local one.
func TestObjectStoreCommandsMatchDisk(t *testing.T) {
	c := s3Bucket(t, "same")
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	local := filepath.Join(dir, "pc.tar.zst")
	if code, _, stderr := runCLI(t, "compress", sp, "-o", local, "--chunk-size", "64KiB", "--level", "fastest"); code != 0 {
		t.Fatalf("compress: %d %s", code, stderr)
	}
	remote := "s3://same/copies/pc.tar.zst"
	putFile(t, c, local, remote)

	for _, args := range [][]string{{"ls", "-R"}, {"ls", "-R", "--json"}, {"verify"}} {
		lc, lout, lerr := runCLI(t, append(args, local)...)
		rc, rout, rerr := runCLI(t, append(args, remote)...)
		rout = strings.ReplaceAll(rout, remote, local)
		lout, rout = dropTimes(lout), dropTimes(rout)
		if lc != 0 || rc != lc || rout != lout {
			t.Errorf("%v: disk exit %d, bucket exit %d (%s %s)\n%s\n---\n%s", args, lc, rc, lerr, rerr, lout, rout)
		}
	}
	for _, args := range [][]string{{"info"}, {"info", "--json"}} {
		_, lout, _ := runCLI(t, append(args, local)...)
		code, rout, stderr := runCLI(t, append(args, remote)...)
		var ri infoReport
		if code != 0 || strings.ReplaceAll(rout, remote, local) != lout || !strings.Contains(rout, remote) {
			t.Errorf("%v: exit %d %s\n%s\n---\n%s", args, code, stderr, lout, rout)
		} else if args[len(args)-1] == "--json" && (json.Unmarshal([]byte(rout), &ri) != nil || ri.StoreType != "archive") {
			t.Errorf("info --json: %+v", ri)
		}
	}

	m := filepath.Join(dir, "m.ndjson")
	if code, _, stderr := runCLI(t, "index", sp, "-o", m); code != 0 {
		t.Fatalf("index: %d %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "verify", remote, "--manifest", m); code != 0 {
		t.Errorf("verify --manifest of the bucket's archive: exit %d %s", code, stderr)
	}

	for _, cmd := range []string{"extract", "salvage"} {
		ld, rd := filepath.Join(dir, cmd+"-disk"), filepath.Join(dir, cmd+"-bucket")
		if code, _, stderr := runCLI(t, cmd, local, ld); code != 0 {
			t.Fatalf("%s from disk: %d %s", cmd, code, stderr)
		}
		if code, _, stderr := runCLI(t, cmd, remote, rd); code != 0 {
			t.Fatalf("%s from the bucket: %d %s", cmd, code, stderr)
		}
		if a, b := osTree(t, ld), osTree(t, rd); !reflect.DeepEqual(a, b) || len(a) < 5 {
			t.Errorf("%s: the trees differ (%d vs %d entries)", cmd, len(a), len(b))
		}
	}

	// compress straight into the bucket: the object lists like the store.
	direct := "s3://same/direct/pc.tar.zst"
	code, stdout, stderr := runCLI(t, "compress", sp, "-o", direct, "--chunk-size", "64KiB", "--level", "fastest", "--verify", "--force")
	if code != 0 || !strings.Contains(stdout, "verified:") {
		t.Fatalf("compress -o s3://: exit %d\n%s\n%s", code, stdout, stderr)
	}
	_, fromStore, _ := runCLI(t, "ls", "-R", sp)
	if code, fromObject, stderr := runCLI(t, "ls", "-R", direct); code != 0 || fromObject != fromStore {
		t.Errorf("ls of the uploaded archive differs from the store (exit %d %s)", code, stderr)
	}
	if code, _, stderr := runCLI(t, "compress", sp, "-o", direct); code != exitcodes.Usage && !strings.Contains(stderr, "already exists") {
		t.Errorf("compress over an existing object: exit %d %s", code, stderr)
	}
}

// Wrong credentials, a missing bucket and a missing key each give one
// clear line and their exit code.
func TestObjectStoreErrors(t *testing.T) {
	s3Bucket(t, "errs")
	for _, tc := range []struct {
		name, url string
		env       []string
		code      int
		msg       string
	}{
		{"missing key", "s3://errs/none.tar.zst", nil, exitcodes.NoStore, "no such object"},
		{"missing bucket", "s3://no-such-bucket/x.tar.zst", nil, exitcodes.NoStore, "bucket no-such-bucket does not exist"},
		{"wrong credentials", "s3://errs/none.tar.zst", []string{"AWS_SECRET_ACCESS_KEY", "wrong"}, exitcodes.Failure, "refused the credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(tc.env[0], tc.env[1])
			}
			for _, cmd := range []string{"info", "ls"} {
				code, _, stderr := runCLI(t, cmd, tc.url)
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if code != tc.code || len(lines) != 1 || !strings.Contains(stderr, tc.msg) {
					t.Errorf("%s %s: exit %d, want %d with one line saying %q:\n%s", cmd, tc.url, code, tc.code, tc.msg, stderr)
				}
			}
		})
	}
}

// A mount of an archive in a bucket gives EIO to readers within the GET
// timeout while the server is down, and reads work again when it returns.
func TestObjectStoreMountServerDown(t *testing.T) {
	requireMount(t)
	srv := fixtures.StartS3Server(t)
	c, err := objstore.NewClient(objstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBucket(context.Background(), "down"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	big := make([]byte, 6<<20)
	rand.NewChaCha8([32]byte{1}).Read(big)
	if err := os.WriteFile(filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	remote := "s3://down/pc.tar.zst"
	if code, _, stderr := runCLI(t, "compress", sp, "-o", remote, "--chunk-size", "64KiB", "--level", "fastest"); code != 0 {
		t.Fatalf("compress -o s3://: %d %s", code, stderr)
	}
	// Small caches, no read-ahead and a short timeout, so reads after the
	// stop reach the server.
	const timeout = 3 * time.Second
	objReaderOptions = objstore.ReaderOptions{BlockSize: 64 << 10, CacheBlocks: 2, Ahead: -1, Timeout: timeout}
	t.Cleanup(func() { objReaderOptions = objstore.ReaderOptions{} })
	mnt := emptyDir(t)
	s := startMount(t, &mountOptions{CacheSize: 1}, remote, mnt)
	f, err := os.Open(filepath.Join(mnt, "C/Users/jdoe/Documents/big.bin"))
	if err != nil {
		t.Fatalf("open through the mount: %v\n%s", err, s.out)
	}
	defer f.Close()
	half := len(big) / 2
	got := make([]byte, len(big))
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(half)), got[:half]); err != nil || !bytes.Equal(got[:half], big[:half]) {
		t.Fatalf("first half: %v", err)
	}

	srv.Stop()
	start := time.Now()
	_, err = f.ReadAt(got[half:], int64(half))
	took := time.Since(start)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("read with the server down: %v, want EIO", err)
	}
	// The read (split by the kernel into 128 KiB reads) needs many
	// GETs: the first failure makes the others fail at once.
	t.Logf("with the server down, the read failed in %v", took)
	if took > 4*timeout {
		t.Errorf("the failing read took %v (timeout per GET %v)", took, timeout)
	}

	// Once the server is back, reads work again within one timeout (a
	// failed GET makes reads fail at once for one timeout, so a dead
	// server is not asked again by every read).
	srv.Restart()
	back := time.Now()
	for {
		n, err := f.ReadAt(got[half:], int64(half))
		if (err == nil || err == io.EOF) && n == len(big)-half && bytes.Equal(got, big) {
			break
		}
		if time.Since(back) > 2*timeout {
			t.Fatalf("read %v after the server returned: %d bytes, %v", time.Since(back), n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bigStore is the USMT4 fixture with an incompressible file of n bytes.
func bigStore(t *testing.T, dir string, n int) (string, []byte) {
	t.Helper()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	big := make([]byte, n)
	rand.NewChaCha8([32]byte{1}).Read(big)
	if err := os.WriteFile(filepath.Join(sp, "USMT/File/C$/Users/jdoe/Documents/big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	return sp, big
}

// compress -o s3:// that is interrupted, or whose server dies, leaves no
// object under the key; the interrupted one leaves no parts either.
func TestObjectStoreUploadFailures(t *testing.T) {
	srv := fixtures.StartS3Server(t)
	c, err := objstore.NewClient(objstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.EnsureBucket(ctx, "upl"); err != nil {
		t.Fatal(err)
	}
	sp, _ := bigStore(t, t.TempDir(), 96<<20)

	// Ctrl-C once the first part is on its way: the upload is aborted.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(400*time.Millisecond, cancel)
	var out, errb bytes.Buffer
	code := run(cctx, []string{"usmtkit", "compress", sp, "-o", "s3://upl/int.tar.zst", "--level", "fastest", "--threads", "1"}, &out, &errb)
	if code != exitcodes.Interrupted {
		t.Errorf("interrupted compress: exit %d, want %d: %s", code, exitcodes.Interrupted, errb.String())
	}
	loc, _ := objstore.ParseURL("s3://upl/int.tar.zst")
	if ok, err := c.Exists(ctx, loc); ok || err != nil {
		t.Errorf("an object appeared under the key after the interrupt (%v)", err)
	}
	if n, err := c.IncompleteUploads(ctx, loc); n != 0 || err != nil {
		t.Errorf("%d incomplete uploads left after the interrupt (%v)", n, err)
	}

	// The server is killed mid-upload: the command fails, and once the
	// server is back there is no object under the key.
	objReaderOptions = objstore.ReaderOptions{Timeout: 5 * time.Second}
	t.Cleanup(func() { objReaderOptions = objstore.ReaderOptions{} })
	time.AfterFunc(400*time.Millisecond, srv.Kill)
	out.Reset()
	errb.Reset()
	code = run(ctx, []string{"usmtkit", "compress", sp, "-o", "s3://upl/killed.tar.zst", "--level", "fastest", "--threads", "1"}, &out, &errb)
	if code == exitcodes.OK || !strings.Contains(errb.String(), "s3://upl/killed.tar.zst") {
		t.Errorf("compress with the server killed: exit %d: %s", code, errb.String())
	}
	srv.Restart()
	loc, _ = objstore.ParseURL("s3://upl/killed.tar.zst")
	if ok, err := c.Exists(ctx, loc); ok || err != nil {
		t.Errorf("an object appeared under the key after the server was killed (%v)", err)
	}
}

// dropTimes removes verify's "checked: ... in 2ms" line (a duration).
func dropTimes(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "checked:") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// localArchive compresses the USMT4 fixture into DIR/pc.tar.zst (64 KiB
// chunks, fastest) and returns the archive's path.
func localArchive(t *testing.T, dir string) string {
	t.Helper()
	sp := fixtures.USMT4(t, filepath.Join(dir, "src"))
	local := filepath.Join(dir, "pc.tar.zst")
	if code, _, stderr := runCLI(t, "compress", sp, "-o", local, "--chunk-size", "64KiB", "--level", "fastest"); code != 0 {
		t.Fatalf("compress: %d %s", code, stderr)
	}
	return local
}

// USMTKIT_S3_REQUESTS prints what a command sent, and the counts are the
// ones docs/object-storage.md promises: opening an archive with a small
// TOC is 1 HEAD and 1 GET, and info and ls need nothing more.
func TestObjectStoreRequestCounts(t *testing.T) {
	c := s3Bucket(t, "counts")
	local := localArchive(t, t.TempDir())
	remote := "s3://counts/pc.tar.zst"
	putFile(t, c, local, remote)
	t.Setenv(requestsEnv, "1")
	for _, cmd := range []string{"info", "ls"} {
		code, _, stderr := runCLI(t, cmd, remote)
		if want := "usmtkit: s3 requests: 1 HEAD, 1 GET, 0 PUT, 0 POST, 0 DELETE, 0 other;"; code != 0 || !strings.Contains(stderr, want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", cmd, code, stderr, want)
		}
	}
	// The archive is under 1 MiB: verify reads it all from the same block.
	if code, _, stderr := runCLI(t, "verify", remote); code != 0 || !strings.Contains(stderr, "1 HEAD, 1 GET,") {
		t.Errorf("verify: exit %d, stderr %q", code, stderr)
	}
	// Nothing is printed for a local archive, nor without the variable.
	if _, _, stderr := runCLI(t, "info", local); strings.Contains(stderr, "s3 requests") {
		t.Errorf("info of a local archive printed requests: %q", stderr)
	}
	t.Setenv(requestsEnv, "")
	if _, _, stderr := runCLI(t, "info", remote); strings.Contains(stderr, "s3 requests") {
		t.Errorf("requests printed without %s: %q", requestsEnv, stderr)
	}
}

// verify of an archive in a bucket whose footer is damaged runs the
// salvage walk by ranged GETs, with the same verdict as on disk.
func TestObjectStoreVerifyDamagedIndex(t *testing.T) {
	c := s3Bucket(t, "damaged")
	local := localArchive(t, t.TempDir())
	fi, err := os.Stat(local)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, local, fi.Size()-2) // the footer's magic
	remote := "s3://damaged/pc.tar.zst"
	putFile(t, c, local, remote)
	lc, lout, _ := runCLI(t, "verify", local)
	rc, rout, rerr := runCLI(t, "verify", remote)
	if lc != exitcodes.Partial || rc != lc {
		t.Fatalf("verify of a damaged footer: disk exit %d, bucket exit %d: %s", lc, rc, rerr)
	}
	if !strings.Contains(rout, "salvage walk") || dropTimes(strings.ReplaceAll(rout, remote, local)) != dropTimes(lout) {
		t.Errorf("the bucket's verify differs from the disk's:\n%s\n---\n%s", lout, rout)
	}
}

// An https endpoint's certificate is checked: a server whose authority is
// unknown is refused with one line; AWS_CA_BUNDLE makes it trusted;
// --no-verify-tls reads it with a warning. The server is the real one
// behind a TLS proxy with a certificate of its own.
func TestObjectStoreTLS(t *testing.T) {
	c := s3Bucket(t, "tls")
	dir := t.TempDir()
	local := localArchive(t, dir)
	remote := "s3://tls/pc.tar.zst"
	putFile(t, c, local, remote)
	target, err := url.Parse(os.Getenv("AWS_ENDPOINT_URL"))
	if err != nil || target.Host == "" {
		t.Fatalf("the test server's endpoint %q: %v", os.Getenv("AWS_ENDPOINT_URL"), err)
	}
	proxy := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
	defer proxy.Close()
	t.Setenv("AWS_ENDPOINT_URL", proxy.URL)
	_, want, _ := runCLI(t, "ls", "-R", local)

	code, _, stderr := runCLI(t, "ls", "-R", remote)
	t.Logf("unknown authority: %s", stderr)
	if code != exitcodes.Failure || !strings.Contains(stderr, "certificate") || strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
		t.Errorf("unknown authority: exit %d, stderr %q", code, stderr)
	}
	bundle := filepath.Join(dir, "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw})
	if err := os.WriteFile(bundle, cert, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CA_BUNDLE", bundle)
	if code, out, stderr := runCLI(t, "ls", "-R", remote); code != 0 || strings.ReplaceAll(out, remote, local) != want {
		t.Errorf("with AWS_CA_BUNDLE: exit %d %s", code, stderr)
	}
	// A trusted certificate for another host name (the proxy's is for
	// 127.0.0.1 and example.com, not localhost) is refused at once too:
	// minio-go would retry it for about 9 s.
	t.Setenv("AWS_ENDPOINT_URL", strings.Replace(proxy.URL, "127.0.0.1", "localhost", 1))
	for _, cmd := range []string{"ls", "compress"} {
		args := []string{cmd, remote}
		if cmd == "compress" {
			args = []string{cmd, filepath.Join(dir, "src", "store"), "-o", "s3://tls/new.tar.zst"}
		}
		start := time.Now()
		code, _, stderr = runCLI(t, args...)
		took := time.Since(start)
		t.Logf("wrong host name, %v: %s", took, stderr)
		if code != exitcodes.Failure || !strings.Contains(stderr, "the server's certificate was refused") ||
			strings.Count(strings.TrimSpace(stderr), "\n") > 1 || took > 5*time.Second {
			t.Errorf("%s, wrong host name: exit %d after %v, stderr %q", cmd, code, took, stderr)
		}
	}
	t.Setenv("AWS_ENDPOINT_URL", proxy.URL)
	t.Setenv("AWS_CA_BUNDLE", "")
	code, out, stderr := runCLI(t, "--no-verify-tls", "ls", "-R", remote)
	if code != 0 || strings.ReplaceAll(out, remote, local) != want || !strings.Contains(stderr, "warning: --no-verify-tls") {
		t.Errorf("--no-verify-tls: exit %d %s", code, stderr)
	}
}

// The region comes from AWS_REGION, else the shared config file's profile.
func TestObjectStoreRegion(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, []byte("[default]\nregion = us-west-2\n\n[profile site12]\n# a comment\nregion=eu-west-3\noutput = json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_CONFIG_FILE", cfg)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
	for _, c := range []struct{ region, profile, want string }{
		{"", "", "us-west-2"}, {"", "site12", "eu-west-3"}, {"ap-south-1", "site12", "ap-south-1"}, {"", "nosuch", "us-east-1"},
	} {
		t.Setenv("AWS_REGION", c.region)
		t.Setenv("AWS_DEFAULT_REGION", "")
		t.Setenv("AWS_PROFILE", c.profile)
		cl, err := objstore.NewClient(objstore.Config{})
		if err != nil || cl.Region() != c.want {
			t.Errorf("AWS_REGION=%q AWS_PROFILE=%q: region %q (%v), want %q", c.region, c.profile, cl.Region(), err, c.want)
		}
	}
}
