package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

// A store copied without its hidden File folder, or with an empty one, or
// with a File child that is not a drive folder, never verifies as OK and
// info names each case (exit 3).
func TestVerifyMissingFileFolder(t *testing.T) {
	for _, c := range []struct {
		name, want string
		damage     func(file string) error
	}{
		{"missing", "File folder missing", os.RemoveAll},
		{"empty", "File folder empty", func(file string) error {
			if err := os.RemoveAll(file); err != nil {
				return err
			}
			return os.Mkdir(file, 0o755)
		}},
		{"stray", "not a drive folder", func(file string) error {
			return os.Mkdir(filepath.Join(file, "stray"), 0o755)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := fixtures.USMT4(t, t.TempDir())
			if err := c.damage(filepath.Join(sp, "USMT", "File")); err != nil {
				t.Fatal(err)
			}
			stdout, _, err := verifyFor(t, context.Background(), verifyOptions{}, sp)
			if exitcodes.FromError(err) != exitcodes.Partial || !errors.Is(err, exitcodes.ErrPartial) {
				t.Fatalf("verify err = %v\n%s", err, stdout)
			}
			if strings.Contains(stdout, "OK: every file checked") || !strings.Contains(stdout, c.want) {
				t.Fatalf("verify output lacks %q or claims OK:\n%s", c.want, stdout)
			}
			var out, errb bytes.Buffer
			o := &infoOptions{}
			o.globalOptions = globalOptions{Stdout: &out, Stderr: &errb}
			ierr := runInfo(context.Background(), o, []string{sp})
			if exitcodes.FromError(ierr) != exitcodes.Partial || !strings.Contains(out.String(), c.want) {
				t.Fatalf("info err = %v, output:\n%s", ierr, out.String())
			}
		})
	}
}
