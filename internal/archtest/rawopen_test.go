package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Raw opens: every read of a source (a store folder or file, a live
// volume, an archive being read) goes through internal/safeio, which
// opens read-only, with O_NOFOLLOW and O_NOATIME, relative to a held
// folder (docs/safety.md). So the calls below may appear outside safeio
// only where they open something that is not a source — an output, a
// file under /proc or /sys, a FUSE device — and each such place is listed
// in rawOpenAllowed with the reason. A new raw open must either go
// through safeio or be added there, with its reason, in review.

// rawOpenCalls are the forbidden calls: import path -> function names.
var rawOpenCalls = map[string][]string{
	"os":                    {"Open", "OpenFile", "ReadDir", "ReadFile"},
	"syscall":               {"Open", "Openat"},
	"golang.org/x/sys/unix": {"Open", "Openat", "Openat2"},
	"path/filepath":         {"Walk", "WalkDir"},
}

// rawOpenAllowed lists, by "file:function", the places allowed raw opens
// and why. An entry that no longer matches a call fails the test, so the
// list cannot go stale.
var rawOpenAllowed = map[string]string{
	// Outputs: extract's and salvage's DEST. The writer holds DEST by
	// descriptor and creates everything below it with O_EXCL|O_NOFOLLOW.
	"internal/extract/writer.go:openDest":               "opens DEST (an output, checked outside the store)",
	"internal/extract/writer.go:(*writer).lock":         "DEST's lock file (an output)",
	"internal/extract/dirs.go:(*writer).enter":          "creates and enters DEST folders (outputs)",
	"internal/extract/dirs.go:(*writer).openRelDir":     "reopens a DEST folder (an output)",
	"internal/extract/file.go:(*writer).copyIn":         "creates a temporary output file in DEST",
	"internal/extract/links.go:(*writer).writeHardlink": "opens a file extract wrote in DEST to link it",
	"internal/extract/meta.go:(*writer).applyMeta":      "opens a DEST entry to set its times and attributes",
	"internal/extract/target.go:(*Target).probeNames":   "creates and removes a probe file in DEST",
	// Outputs: log files and the resume journal of the commands.
	"cmd/usmtkit/cmd_mount.go:mount":       "--log-file (an output)",
	"cmd/usmtkit/cmd_mount.go:detachStdio": "/dev/null and the --log-file of a background server (outputs)",
	"internal/journal/journal.go:Read":     "the resume journal (usmtkit's own output file)",
	"internal/journal/journal.go:Open":     "the resume journal, opened to append (an output)",
	// rd deletes a store: the one command that changes one, after
	// hardlinkscan.CheckRemovable; it walks with openat to unlinkat.
	"hardlinkscan/remove.go:removeRoot": "opens the folder holding the store root to remove it (rd)",
	"hardlinkscan/sysio.go:openAt":      "rd's fd-relative walk for unlinkat",
	"hardlinkscan/remove.go:homeDirs":   "/etc/passwd, to refuse removing a home directory",
	// Configuration: the S3 client's settings, never a source.
	"objstore/config.go:sharedConfigRegion": "~/.aws/config (or AWS_CONFIG_FILE), for the bucket's region",
	"objstore/requests.go:newTransport":     "the CA bundle given for the object store's TLS",
	// The kernel's own files under /proc and /sys, never a source.
	"fusefs/lifecycle.go:Holders":   "/proc/PID/fd listings to name who keeps a mount busy",
	"fusefs/lifecycle.go:AbortConn": "/sys/fs/fuse/connections (root only)",
}

type rawOpen struct {
	file, fn, call string
	pos            token.Position
}

// findRawOpens parses one Go file and returns its forbidden calls, with
// the enclosing function ("Func" or "(*Recv).Method"; "" at top level).
// Imports are resolved by path, so a renamed import is caught and a local
// variable named os is not.
func findRawOpens(fset *token.FileSet, name string, src any) ([]rawOpen, error) {
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	local := map[string]string{} // local import name -> path
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		if _, watched := rawOpenCalls[p]; !watched {
			continue
		}
		n := p[strings.LastIndexByte(p, '/')+1:]
		if im.Name != nil {
			n = im.Name.Name
		}
		local[n] = p
	}
	var out []rawOpen
	for _, d := range f.Decls {
		fn := ""
		if fd, ok := d.(*ast.FuncDecl); ok {
			fn = fd.Name.Name
			if fd.Recv != nil && len(fd.Recv.List) == 1 {
				fn = "(" + exprString(fd.Recv.List[0].Type) + ")." + fn
			}
		}
		ast.Inspect(d, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			// A local variable named like an import would be reported
			// too (on the safe side); usmtkit has none.
			p, ok := local[id.Name]
			if !ok {
				return true
			}
			for _, c := range rawOpenCalls[p] {
				if sel.Sel.Name == c {
					out = append(out, rawOpen{file: name, fn: fn, call: id.Name + "." + c, pos: fset.Position(sel.Pos())})
				}
			}
			return true
		})
	}
	return out, nil
}

func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return "*" + exprString(x.X)
	case *ast.Ident:
		return x.Name
	case *ast.IndexExpr:
		return exprString(x.X)
	case *ast.IndexListExpr:
		return exprString(x.X)
	}
	return "?"
}

// moduleRoot is two folders up from this package.
func moduleRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// skipDir: internal/safeio is the layer itself; the rest are not
// usmtkit's runtime code: fixtures and internal/storetest build and copy
// stores for tests (they write them on purpose), the benchmark tools are
// programs of their own.
func skipDir(rel string) bool {
	for _, p := range []string{"fixtures", "scripts", "compress/internal/benchtool", "internal/storetest", "internal/safeio"} {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return strings.HasPrefix(filepath.Base(rel), ".") || filepath.Base(rel) == "testdata"
}

func TestNoRawOpensOutsideSafeio(t *testing.T) {
	root := moduleRoot(t)
	fset := token.NewFileSet()
	used := map[string]bool{}
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." && skipDir(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		files++
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		opens, err := findRawOpens(fset, rel, src)
		if err != nil {
			return err
		}
		for _, o := range opens {
			key := filepath.ToSlash(rel) + ":" + o.fn
			if _, ok := rawOpenAllowed[key]; ok {
				used[key] = true
				continue
			}
			t.Errorf("%s: %s in %s: open sources through internal/safeio (docs/safety.md), or add %q to rawOpenAllowed with the reason it is not a source", o.pos, o.call, o.fn, key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d Go files scanned under %s", files, root)
	}
	var stale []string
	for k := range rawOpenAllowed {
		if !used[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	for _, k := range stale {
		t.Errorf("rawOpenAllowed[%q] matches no raw open any more: remove it", k)
	}
}

func TestFindRawOpens(t *testing.T) {
	const src = `package x

import (
	"os"
	sys "golang.org/x/sys/unix"
	"path/filepath"
	"fmt"
)

func top() { os.Open("a") }

type T struct{}

func (t *T) m() {
	_, _ = sys.Openat(0, "b", 0, 0)
	filepath.WalkDir(".", nil)
	fmt.Println(os.Getpid())
}

var v = func() { os.ReadDir("c") }
`
	got, err := findRawOpens(token.NewFileSet(), "x.go", src)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, o := range got {
		s = append(s, o.fn+" "+o.call)
	}
	want := "top os.Open|(*T).m sys.Openat|(*T).m filepath.WalkDir| os.ReadDir"
	if strings.Join(s, "|") != want {
		t.Errorf("found %q, want %q", strings.Join(s, "|"), want)
	}
	// A file that imports none of the packages has nothing to report.
	got, _ = findRawOpens(token.NewFileSet(), "y.go", "package y\nfunc Open() {}\nfunc f() { Open() }\n")
	if len(got) != 0 {
		t.Errorf("false positives: %v", got)
	}
}
