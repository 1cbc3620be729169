package fusefs

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fixtures"
)

// TestMountArchiveRawFrameDamage: an incompressible file is stored in raw
// zstd frames, which the reader reads into place without the decoder
// (compress/reader_raw.go). A byte flipped inside one of them makes a
// random read of that frame fail with EIO through a real mount, while a
// random read of an intact frame of the same file returns the right
// bytes; the intact archive reads back whole.
func TestMountArchiveRawFrameDamage(t *testing.T) {
	requireFUSE(t)
	noise := make([]byte, 600<<10)
	r := rand.New(rand.NewPCG(11, 12))
	for i := range noise {
		noise[i] = byte(r.Uint32())
	}
	dir := filepath.Join(t.TempDir(), "src")
	if err := (fixtures.Tree{
		"clip.bin":  fixtures.File{Data: noise},
		"notes.txt": fixtures.File{Data: fixtures.Text("n", 5000)},
	}).Build(dir); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "good.tar.zst")
	if _, err := compress.CreateFile(context.Background(), good, openStore(t, dir), compress.WriteOptions{}, false); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// Frames hold 128 KiB: bytes 300000.. lie in the file's third frame,
	// stored as they are.
	const badOff, okOff = 300000, 20000
	at := bytes.Index(b, noise[badOff:badOff+64])
	if at < 0 {
		t.Fatal("the incompressible file is not stored raw")
	}
	bad := filepath.Join(t.TempDir(), "bad.tar.zst")
	b[at+10] ^= 0x20
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path    string
		damaged bool
	}{{good, false}, {bad, true}} {
		a, err := compress.Open(c.path, compress.ReaderOptions{CacheBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		f := adapt(t, a, Options{View: ViewStore, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())})
		mnt, _ := mountFS(t, f)
		h, err := os.Open(filepath.Join(mnt, "clip.bin"))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		if n, err := h.ReadAt(buf, okOff); err != nil || !bytes.Equal(buf[:n], noise[okOff:okOff+4096]) {
			t.Fatalf("%s: read of an intact frame: %d, %v", c.path, n, err)
		}
		_, err = h.ReadAt(buf, badOff+8)
		h.Close()
		if c.damaged {
			if !isErrno(err, syscall.EIO) {
				t.Fatalf("read of the damaged raw frame: %v, want EIO", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("read of an intact raw frame: %v", err)
		}
		got, err := os.ReadFile(filepath.Join(mnt, "clip.bin"))
		if err != nil || !bytes.Equal(got, noise) {
			t.Fatalf("whole read: %d bytes, %v", len(got), err)
		}
	}
}
