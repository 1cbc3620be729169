// Package archtest enforces the package boundaries the design relies on:
// only fusefs may import go-fuse, only cmd/usmtkit may import urfave/cli,
// only objstore and cmd/usmtkit may import the S3 client,
// store, compress and hardlinkscan stay free of the front ends, and (in
// rawopen_test.go) sources are opened only through internal/safeio.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/usmtkit/usmtkit/"

func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	rules := []struct {
		importer  string // package path prefix (relative to the module)
		forbidden string // import path prefix
		why       string
	}{
		{"", "github.com/hanwen/go-fuse", "only fusefs (and the mount command) may use go-fuse"},
		{"", "github.com/urfave/cli", "only cmd/usmtkit may use the CLI library"},
		{"", "github.com/minio/minio-go", "only objstore (and the commands) may use the S3 client"},
		{"compress", mod + "objstore", "compress reads and writes through io interfaces, not S3"},
		{"store", mod + "compress", "store must not know the archive reader (it registers itself)"},
		{"store", mod + "fusefs", "store has no FUSE"},
		{"store", mod + "cmd", "store has no CLI"},
		{"compress", mod + "fusefs", "compress has no FUSE"},
		{"compress", mod + "internal/extract", "compress must not depend on the extract front end"},
		{"hardlinkscan", mod + "fusefs", "hardlinkscan has no FUSE"},
		{"fixtures", mod + "store", "fixtures build stores on disk without the reader under test"},
	}
	allowed := map[string][]string{
		"github.com/hanwen/go-fuse": {"fusefs", "cmd/usmtkit"},
		"github.com/urfave/cli":     {"cmd/usmtkit"},
		"github.com/minio/minio-go": {"objstore", "cmd/usmtkit"},
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], mod)
		for _, imp := range fields[1:] {
			for _, r := range rules {
				if !strings.HasPrefix(pkg, r.importer) || !strings.HasPrefix(imp, r.forbidden) {
					continue
				}
				ok := false
				for _, a := range allowed[r.forbidden] {
					if pkg == a || strings.HasPrefix(pkg, a+"/") {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d packages listed", checked)
	}
}
