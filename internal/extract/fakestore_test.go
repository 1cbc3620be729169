package extract

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/usmtkit/usmtkit/store"
)

// fakeStore is a test double for input the real stores cannot produce:
// store paths with "..", absolute paths, names with slashes, and reads
// that fail part-way. It yields its entries in the order given.
type fakeStore struct {
	entries []*store.Entry
	data    map[string][]byte
	// failAt makes reads of a path fail with store.ErrCorrupt at or after
	// this offset.
	failAt map[string]int64
}

func newFake() *fakeStore {
	return &fakeStore{data: map[string][]byte{}, failAt: map[string]int64{}}
}

func (f *fakeStore) dir(sp string) *fakeStore {
	win, _ := store.MapPath(store.KindUSMTDir, sp)
	f.entries = append(f.entries, &store.Entry{StorePath: sp, WinPath: win, Type: store.TypeDir, MtimeNs: 1_700_000_000_123_456_789, AtimeNs: 1_700_000_000_000_000_001})
	return f
}

func (f *fakeStore) file(sp, win, content string) *fakeStore {
	if win == "" {
		win, _ = store.MapPath(store.KindUSMTDir, sp)
	}
	f.entries = append(f.entries, &store.Entry{StorePath: sp, WinPath: win, Type: store.TypeFile, Size: int64(len(content)),
		MtimeNs: 1_600_000_000_987_654_321, AtimeNs: 1_600_000_001_000_000_007, Nlink: 1, LinkID: uint64(len(f.entries) + 1)})
	f.data[sp] = []byte(content)
	return f
}

func (f *fakeStore) Info() *store.Info {
	return &store.Info{Kind: store.KindUSMTDir, Roots: []string{"/nonexistent/fake-store"}}
}

func (f *fakeStore) Walk(ctx context.Context, fn store.WalkFunc) error {
	if err := fn(&store.Entry{Type: store.TypeDir}, nil); err != nil && err != store.SkipDir {
		return err
	}
	skip := ""
	for _, e := range f.entries {
		if skip != "" && strings.HasPrefix(e.StorePath, skip+"/") {
			continue
		}
		skip = ""
		if err := ctx.Err(); err != nil {
			return err
		}
		c := *e
		err := fn(&c, nil)
		if err == store.SkipDir && e.Type == store.TypeDir {
			skip = e.StorePath
			continue
		}
		if err != nil && err != store.SkipDir {
			return err
		}
	}
	return nil
}

func (f *fakeStore) Stat(p string) (*store.Entry, error) {
	for _, e := range f.entries {
		if e.StorePath == p {
			c := *e
			return &c, nil
		}
	}
	return nil, fs.ErrNotExist
}

func (f *fakeStore) ReadDir(string) ([]store.Entry, error) { return nil, errors.New("not implemented") }
func (f *fakeStore) Close() error                          { return nil }

func (f *fakeStore) Open(e *store.Entry) (store.File, error) {
	d, ok := f.data[e.StorePath]
	if !ok {
		return nil, fmt.Errorf("opening %s: %w", e.StorePath, fs.ErrNotExist)
	}
	fail, bad := f.failAt[e.StorePath]
	if !bad {
		fail = -1
	}
	return &fakeFile{d: d, failAt: fail, path: e.StorePath}, nil
}

type fakeFile struct {
	d      []byte
	failAt int64
	path   string
}

func (f *fakeFile) ReadAt(p []byte, off int64) (int, error) {
	if f.failAt >= 0 && off+int64(len(p)) > f.failAt {
		n := 0
		if off < f.failAt {
			n = copy(p, f.d[off:f.failAt])
		}
		return n, &store.PathError{Op: "reading", Path: f.path, Err: fmt.Errorf("chunk at offset %d: %w", f.failAt, store.ErrCorrupt)}
	}
	if off >= int64(len(f.d)) {
		return 0, io.EOF
	}
	n := copy(p, f.d[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (f *fakeFile) Size() int64  { return int64(len(f.d)) }
func (f *fakeFile) Close() error { return nil }
