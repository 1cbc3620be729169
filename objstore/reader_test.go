package objstore_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/objstore"
)

// A read across a block boundary costs one GET, a cached read none, and
// a read spanning a cached block fetches the missing blocks around it
// (one GET per run of missing blocks), against a real server.
func TestReaderGETsPerRead(t *testing.T) {
	fixtures.S3Endpoint(t)
	c, err := objstore.NewClient(objstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.EnsureBucket(ctx, "reader"); err != nil {
		t.Fatal(err)
	}
	const bs = 256 << 10
	data := make([]byte, 10*bs+1234)
	rand.NewChaCha8([32]byte{3}).Read(data)
	loc, _ := objstore.ParseURL("s3://reader/blocks.bin")
	up, err := c.Create(ctx, loc, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := c.Open(ctx, loc, objstore.ReaderOptions{BlockSize: bs, CacheBlocks: 16, Ahead: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	read := func(off, n int64, wantGETs int64, why string) {
		t.Helper()
		before := r.GETs()
		got := make([]byte, n)
		if m, err := r.ReadAt(got, off); err != nil || m != int(n) || !bytes.Equal(got, data[off:off+n]) {
			t.Fatalf("%s: read %d at %d: %d bytes, %v", why, n, off, m, err)
		}
		if d := r.GETs() - before; d != wantGETs {
			t.Errorf("%s: %d GETs, want %d", why, d, wantGETs)
		}
	}
	read(bs-100, 64<<10, 1, "a frame across the boundary of blocks 0 and 1")
	read(bs-50, 1000, 0, "the same bytes again (cached)")
	read(4*bs, 100, 1, "inside block 4")
	read(3*bs+10, 2*bs+10, 2, "blocks 3..5 with 4 cached: 3 and 5 apart")
	read(7*bs, 3*bs+1234, 1, "blocks 7..10, the last one short")

	// The archive's frame walk: a Prefetch of the chunk, then header
	// reads of a few bytes across its blocks: one GET in all.
	r2, err := c.Open(ctx, loc, objstore.ReaderOptions{BlockSize: bs, CacheBlocks: 16, Ahead: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	r2.Prefetch(bs+10, 3*bs)
	for _, off := range []int64{bs + 10, 2*bs + 7, 3*bs + 99, 4*bs - 3} {
		got := make([]byte, 3)
		if _, err := r2.ReadAt(got, off); err != nil || !bytes.Equal(got, data[off:off+3]) {
			t.Fatalf("header read at %d: %v", off, err)
		}
	}
	// Small reads stepping from block to block are no sequential reader:
	// nothing is fetched ahead (read-ahead would start within the reads).
	for _, off := range []int64{5*bs + 1, 6*bs + 1} {
		got := make([]byte, 17)
		if _, err := r2.ReadAt(got, off); err != nil || !bytes.Equal(got, data[off:off+17]) {
			t.Fatalf("header read at %d: %v", off, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := r2.GETs(); n != 3 {
		t.Errorf("a prefetched chunk walk and two stepping header reads: %d GETs, want 3", n)
	}
}

// sockets counts this process's open sockets.
func sockets(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// A command over many archives opens each with its own client: closing a
// reader closes its idle connections, so they do not pile up (each an
// open descriptor here and on the server) for the transport's idle
// timeout of a minute.
func TestReaderCloseLeavesNoIdleConnections(t *testing.T) {
	fixtures.S3Endpoint(t)
	ctx := context.Background()
	c, err := objstore.NewClient(objstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBucket(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	loc, _ := objstore.ParseURL("s3://idle/x.bin")
	up, err := c.Create(ctx, loc, true)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("usmtkit "), 300<<10)
	if _, err := up.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	before := sockets(t)
	for range 30 {
		c, err := objstore.NewClient(objstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Open(ctx, loc, objstore.ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if n, err := r.ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		r.Close()
	}
	if after := sockets(t); after-before > 4 {
		t.Errorf("%d sockets open after 30 readers were closed (%d before)", after, before)
	}
	// The same for uploads (up to UploadThreads connections each).
	before = sockets(t)
	for i := range 10 {
		c, err := objstore.NewClient(objstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		up, err := c.Create(ctx, objstore.Location{Bucket: "idle", Key: fmt.Sprintf("up%d.bin", i)}, true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.Write(data); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			up.Abort()
		} else if err := up.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := sockets(t); after-before > 4 {
		t.Errorf("%d sockets open after 10 uploads ended (%d before)", after, before)
	}
}
