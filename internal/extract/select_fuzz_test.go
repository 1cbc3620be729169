package extract

import (
	"testing"

	"github.com/usmtkit/usmtkit/store"
)

// FuzzPatterns feeds arbitrary --include/--exclude values and paths to the
// selector: parsing and matching must never panic or hang, and include
// must win over exclude for the same pattern.
func FuzzPatterns(f *testing.F) {
	for _, s := range []string{`*.pst`, `C:\Users\jdoe\Documents\*`, `**\*.docx`, `a?c;*.txt,*.pdf`, `C:`, `\\`, `[*`, ``} {
		f.Add(s, `C:\Users\jdoe\Documents\a.pst`)
	}
	f.Fuzz(func(t *testing.T, pattern, win string) {
		pats := SplitPatterns([]string{pattern})
		sel, err := NewSelector(pats, pats, "", "")
		if err != nil {
			return
		}
		e := &store.Entry{StorePath: "USMT/File/C$/x", WinPath: win, Type: store.TypeFile}
		d := sel.Decide(e)
		if d.Action == Exclude {
			t.Fatalf("pattern %q excluded %q although the same pattern includes it", pattern, win)
		}
	})
}
