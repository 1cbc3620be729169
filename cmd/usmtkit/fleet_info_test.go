package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

// info on a share copy whose store folders are not 64-hex ids lists them;
// an SMPSTORE folder holding no store is a warning and exit 3.
func TestInfoShareCopyAnyNames(t *testing.T) {
	root := filepath.Join(t.TempDir(), "share")
	tree := fixtures.Tree{
		"SMPSTORE_1A2B3C4D$/PC042/USMT/catalog.mig":   fixtures.File{Data: []byte("c")},
		"SMPSTORE_1A2B3C4D$/PC042/USMT/File/C$/a.txt": fixtures.File{Data: []byte("a")},
		"SMPSTORE_1A2B3C4D$/PC043/USMT.MIG":           fixtures.File{Data: fixtures.MIGFile(true, nil)},
	}
	fixtures.Build(t, root, tree)
	code, out, stderr := runCLI(t, "info", "--json", root)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Stores []map[string]any `json:"stores"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Stores) != 2 {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Stores[0]["id"] != "PC042" || rep.Stores[0]["kind"] != "usmt-dir" || rep.Stores[1]["kind"] != "usmt-mig" || rep.Stores[1]["encrypted"] != true {
		t.Fatalf("stores: %v", rep.Stores)
	}

	fixtures.Build(t, root, fixtures.Tree{"SMPSTORE_5E6F7A8B$/junk/readme.txt": fixtures.File{Data: []byte("x")}})
	code, out, stderr = runCLI(t, "info", root)
	if code != exitcodes.Partial {
		t.Fatalf("exit %d, want 3: %s %s", code, out, stderr)
	}
	for _, want := range []string{"SMPSTORE_5E6F7A8B$/junk  PROBLEM: no USMT store inside", "WARNING:     " + filepath.Join(root, "SMPSTORE_5E6F7A8B$") + " holds no store"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
}
