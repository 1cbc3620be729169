// Package storetest holds the store-reading helpers that the tests of
// several packages share. Only _test.go files import it.
package storetest

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/usmtkit/usmtkit/store"
)

// UserFiles reads every user file of a store (regular files with a Windows
// path, control files left out): Windows path -> content.
func UserFiles(t testing.TB, s store.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.Walk(context.Background(), func(e *store.Entry, err error) error {
		if err != nil {
			t.Fatalf("%s: %v", e.StorePath, err)
		}
		if e.Type != store.TypeFile || e.Control || e.WinPath == "" {
			return nil
		}
		f, err := s.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.NewSectionReader(f, 0, e.Size))
		if err != nil {
			t.Fatalf("reading %s: %v", e.StorePath, err)
		}
		out[e.WinPath] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CopyToTemp copies a file (an archive a test is about to damage) into a
// fresh temporary folder and returns the copy's path.
func CopyToTemp(t testing.TB, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "damaged.tar.zst")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
