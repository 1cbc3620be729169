package extract

import (
	"reflect"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/store"
)

func TestSplitPatterns(t *testing.T) {
	got := SplitPatterns([]string{"*.txt,*.pdf", " *.docx ; *.xlsx;", "", "C:\\Users\\jdoe\\*"})
	want := []string{"*.txt", "*.pdf", "*.docx", "*.xlsx", `C:\Users\jdoe\*`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pat, win string
		want     bool
	}{
		{"*.pst", `C:\Users\jdoe\AppData\Outlook\mail.PST`, true},
		{"*.pst", `C:\Users\jdoe\mail.pst.bak`, false},
		{"mail.?st", `C:\x\MAIL.PST`, true},
		{"mail.?st", `C:\x\mail.st`, false},
		{"?", `C:\x\é`, true},
		{`C:\Users\jdoe\Documents\*`, `C:\Users\jdoe\Documents\a.docx`, true},
		{`c:/users/JDOE/documents/*`, `C:\Users\jdoe\Documents\a.docx`, true},
		{`C:\Users\jdoe\Documents\*`, `C:\Users\jdoe\Documents\sub\a.docx`, false}, // * stays in one name; the folder match selects below
		{`C:\Users\jdoe\Documents`, `C:\Users\jdoe\Documents`, true},
		{`C:\Users\*\Documents`, `C:\Users\asmith\Documents`, true},
		{`C:\Users\**\*.pst`, `C:\Users\jdoe\AppData\Local\x.pst`, true},
		{`C:\Users\**\*.pst`, `C:\Users\x.pst`, true},
		{`Users\jdoe`, `D:\Users\jdoe`, true},
		{`Users\jdoe`, `D:\Data\Users\jdoe`, false},
		{`**\Users\jdoe`, `D:\Data\Users\jdoe`, true},
		{`D:\Users\jdoe`, `C:\Users\jdoe`, false},
		{`C:\`, `C:\`, true},
		{"C:", `C:\`, true},
		{"docs", `x\docs`, true}, // plain trees have no drive
		{`x\docs`, `x\docs`, true},
		{"*", `C:\a`, true},
		{"a*b*c", `C:\aXbYc`, true},
		{"a*b*c", `C:\aXbY`, false},
	}
	for _, c := range cases {
		p, err := ParsePattern(c.pat)
		if err != nil {
			t.Fatalf("%q: %v", c.pat, err)
		}
		if got := p.match(makeTarget(c.win)); got != c.want {
			t.Errorf("%q against %q = %v, want %v", c.pat, c.win, got, c.want)
		}
	}
	for _, bad := range []string{`\`, `C:\a\\b`} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// walkEntries builds entries in walk order from Windows-ish store paths
// (a trailing / marks a folder).
func walkEntries(paths ...string) []*store.Entry {
	var out []*store.Entry
	for _, p := range paths {
		e := &store.Entry{Type: store.TypeFile}
		if strings.HasSuffix(p, "/") {
			e.Type = store.TypeDir
			p = strings.TrimSuffix(p, "/")
		}
		e.StorePath = p
		e.WinPath, e.Control = store.MapPath(store.KindUSMTDir, p)
		out = append(out, e)
	}
	return out
}

func decideAll(t *testing.T, s *Selector, es []*store.Entry) []string {
	t.Helper()
	var out []string
	pruned := ""
	for _, e := range es {
		if pruned != "" && strings.HasPrefix(e.StorePath, pruned+"/") {
			continue // the walk does not descend (store.SkipDir)
		}
		d := s.Decide(e)
		if d.Prune {
			pruned = e.StorePath
		}
		if e.Type == store.TypeDir && !d.Prune {
			continue
		}
		out = append(out, d.Action.String()+" "+displayPath(e)+" ("+d.Reason+")")
	}
	return out
}

func TestSelectorIncludeWins(t *testing.T) {
	es := walkEntries("USMT/", "USMT/File/", "USMT/File/C$/", "USMT/File/C$/Proj/",
		"USMT/File/C$/Proj/myProject.exe", "USMT/File/C$/Proj/myProject.txt", "USMT/File/C$/Proj/other.exe", "USMT/File/C$/Proj/other.txt")
	s, err := NewSelector([]string{"myProject.*"}, []string{"*.exe"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	got := decideAll(t, s, es)
	want := []string{
		`include C:\Proj\myProject.exe (matched --include myProject.*)`,
		`include C:\Proj\myProject.txt (matched --include myProject.*)`,
		`exclude C:\Proj\other.exe (matched --exclude *.exe)`,
		`skip C:\Proj\other.txt (no --include matched)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestSelectorFolderAndFilters(t *testing.T) {
	es := walkEntries("USMT/", "USMT/File/", "USMT/File/C$/", "USMT/File/C$/Users/",
		"USMT/File/C$/Users/asmith/", "USMT/File/C$/Users/asmith/a.txt",
		"USMT/File/C$/Users/jdoe/", "USMT/File/C$/Users/jdoe/AppData/", "USMT/File/C$/Users/jdoe/AppData/x.dat",
		"USMT/File/C$/Users/jdoe/Documents/", "USMT/File/C$/Users/jdoe/Documents/sub/", "USMT/File/C$/Users/jdoe/Documents/sub/r.docx",
		"USMT/File/C$/Users/top.ini",
		"USMT/File/D$/", "USMT/File/D$/Data/", "USMT/File/D$/Data/s.xlsx")
	s, _ := NewSelector(nil, []string{"AppData"}, "jdoe", "c:")
	got := decideAll(t, s, es)
	want := []string{
		`skip C:\Users\asmith\ (not in profile jdoe)`,
		`exclude C:\Users\jdoe\AppData\ (matched --exclude AppData)`,
		`include C:\Users\jdoe\Documents\sub\r.docx (no --include given)`,
		`skip C:\Users\top.ini (not in profile jdoe)`,
		`skip D:\ (not on drive C:)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	s, _ = NewSelector([]string{`C:\Users\jdoe\Documents`}, nil, "", "")
	got = decideAll(t, s, es)
	if n := strings.Count("\n"+strings.Join(got, "\n"), "\ninclude "); n != 1 || !strings.Contains(got[2], `include C:\Users\jdoe\Documents\sub\r.docx (matched --include C:\Users\jdoe\Documents)`) {
		t.Fatalf("folder pattern: %q", got)
	}
	if _, err := NewSelector(nil, nil, "", "CD"); err == nil {
		t.Fatal("--drive CD accepted")
	}
}
