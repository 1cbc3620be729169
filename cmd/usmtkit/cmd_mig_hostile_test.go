package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

// capped keeps the first 1 MiB written to it (ls of a million records).
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := 1<<20 - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// runBinary runs the built usmtkit under /usr/bin/time and returns its
// exit status, its output (stdout then stderr) and its peak resident
// memory in MiB. The rusage of a child started straight from the test
// would count the test process's own memory (a vfork child's peak starts
// from its parent's), hence time(1).
func runBinary(t *testing.T, args ...string) (int, string, int64) {
	t.Helper()
	fixtures.RequireTool(t, "time")
	tm, _ := fixtures.LookTool("time")
	rssFile := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command(tm, append([]string{"-f", "%M", "-o", rssFile, buildBinary(t)}, args...)...)
	var out, errb capped
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	b, err := os.ReadFile(rssFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kb, perr := strconv.ParseInt(lines[len(lines)-1], 10, 64)
	if err != nil || perr != nil {
		t.Fatalf("reading the peak RSS from time(1): %v %v %q", err, perr, b)
	}
	return code, out.String() + errb.String(), kb >> 10
}

// TestHostileMIGs runs every hostile USMT.MIG of the fixtures catalogue
// through the built binary: info, ls, verify and extract --experimental-mig
// give the catalogue's exit statuses and messages, never a panic, and
// verify stays under 64 MiB of memory whatever the file holds (a 4 GiB
// record, a 1 GiB zlib bomb, a million records).
func TestHostileMIGs(t *testing.T) {
	for _, h := range fixtures.HostileMIGs() {
		t.Run(h.Name, func(t *testing.T) {
			if h.Big && testing.Short() {
				t.Skip("large fixture (-short)")
			}
			dir := t.TempDir()
			p := filepath.Join(dir, "USMT.MIG")
			if err := h.Write(p); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				args   []string
				code   int
				says   string
				maxRSS int64 // MiB
			}{
				{[]string{"info", p}, h.Info, "", 64},
				{[]string{"ls", p}, h.Ls, "", 64},
				{[]string{"verify", p}, h.Verify, h.VerifySays, 64},
				// The index of a million records is about 80 MiB (docs/stores.md).
				{append(append([]string{"extract", "--experimental-mig"}, h.ExtractArgs...), p, filepath.Join(dir, "out")), h.Extract, h.ExtractSays, 400},
			} {
				code, out, rss := runBinary(t, c.args...)
				if code != c.code || !strings.Contains(out, c.says) {
					t.Errorf("%s: exit %d (want %d), output lacks %q:\n%.3000s", c.args[0], code, c.code, c.says, out)
				}
				if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
					t.Errorf("%s panicked:\n%.3000s", c.args[0], out)
				}
				if code != 0 && !strings.Contains(out, "usmtkit: ") {
					t.Errorf("%s: exit %d without a message", c.args[0], code)
				}
				if rss > c.maxRSS {
					t.Errorf("%s: peak RSS %d MiB, over %d MiB", c.args[0], rss, c.maxRSS)
				}
				t.Logf("%s %s: exit %d, peak RSS %d MiB", h.Name, c.args[0], code, rss)
			}
		})
	}
}
