package manifest

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// ErrInsideStore is returned by CheckOutside for an output path inside a store.
var ErrInsideStore = safeio.ErrInsideStore

// CheckOutside makes sure an output file path lies outside every store
// root by safeio's one rule (docs/safety.md), and that the output's
// folder exists.
func CheckOutside(out string, roots []string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := safeio.CheckOutside(out, roots); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("the folder of %s cannot be used: %w; create it first or choose another path", out, err)
	}
	return nil
}
