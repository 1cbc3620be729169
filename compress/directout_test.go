package compress

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestDirectOut: bytes written in pieces of every size through directOut
// (direct blocks, the unaligned tail at Flush, buffered writes after it)
// come out exactly, on the test's file system and on tmpfs (which may
// refuse O_DIRECT: the writes then go through the page cache).
func TestDirectOut(t *testing.T) {
	dirs := []string{t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "usmtkit-directout-")
		if err == nil {
			defer os.RemoveAll(d)
			dirs = append(dirs, d)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	pool := make([]byte, 2*directBlock)
	rand.NewChaCha8([32]byte{1}).Read(pool)
	for _, dir := range dirs {
		for _, total := range []int{0, 1, directBlock - 1, directBlock, 3*directBlock + 12345, earlySyncStep + directBlock + 7} {
			path := filepath.Join(dir, "out")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			d, ok := newDirectOut(f)
			if !ok {
				t.Logf("%s: O_DIRECT refused at open; the writer uses bufio there", dir)
				f.Close()
				continue
			}
			want := make([]byte, 0, total+100)
			for len(want) < total {
				n := min(total-len(want), r.IntN(3*directBlock/2)+1)
				start := r.IntN(len(pool) - n + 1)
				p := pool[start : start+n]
				if k, err := d.Write(p); k != n || err != nil {
					t.Fatalf("%s: Write(%d) = %d, %v", dir, n, k, err)
				}
				want = append(want, p...)
			}
			if err := d.Flush(); err != nil {
				t.Fatalf("%s %d: Flush: %v", dir, total, err)
			}
			tail := []byte("footer written after the flush")
			d.Write(tail)
			want = append(want, tail...)
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			d.stop()
			f.Close()
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s %d bytes: the file (%d bytes) differs from what was written", dir, total, len(got))
			}
		}
	}
}

// TestDirectOutError: a write the kernel refuses fails the next Write or
// the Flush, never silently.
func TestDirectOutError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path) // read-only: every pwrite fails with EBADF
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, ok := newDirectOut(f)
	if !ok {
		t.Skip("O_DIRECT refused on this file system")
	}
	defer d.stop()
	p := make([]byte, directBlock)
	var werr error
	for i := 0; i < 2*directBufs && werr == nil; i++ {
		_, werr = d.Write(p)
	}
	if ferr := d.Flush(); werr == nil && ferr == nil {
		t.Fatal("writes to a read-only descriptor reported no error")
	}
}
