package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

// TestFileVanishingDuringWalk removes a file after its folder was listed
// and before it is examined: the walk reports it, by name, and goes on.
func TestFileVanishingDuringWalk(t *testing.T) {
	sp := fixtures.USMT4(t, t.TempDir())
	const dir = "USMT/File/C$/Users/jdoe/Desktop"
	testHookAfterList = func(p string) {
		if p == dir {
			os.Remove(filepath.Join(sp, dir, "notes.txt"))
		}
	}
	defer func() { testHookAfterList = nil }()
	s, err := Open(sp)
	if err != nil {
		t.Fatal(err)
	}
	var vanished []string
	n := 0
	err = s.Walk(context.Background(), func(e *Entry, err error) error {
		n++
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "vanished") {
				t.Errorf("%s: %v", e.StorePath, err)
			}
			vanished = append(vanished, e.StorePath)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(vanished) != 1 || vanished[0] != dir+"/notes.txt" {
		t.Fatalf("vanished %v", vanished)
	}
	if n < 30 {
		t.Fatalf("the walk stopped early: %d entries", n)
	}
}
