package extract

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeName(t *testing.T) {
	cases := []struct{ in, want string }{
		{"report.docx", "report.docx"},
		{"a:b", "a%3Ab"},
		{`<>:"/\|?*`, "%3C%3E%3A%22%2F%5C%7C%3F%2A"},
		{"tab\there", "tab%09here"},
		{"trailing.", "trailing%2E"},
		{"trailing ", "trailing%20"},
		{"two..", "two.%2E"},
		{"CON", "%43ON"},
		{"con.txt", "%63on.txt"},
		{"Com1.tar.gz", "%43om1.tar.gz"},
		{"LPT9", "%4CPT9"},
		{"COM10", "COM10"},
		{"CONSOLE", "CONSOLE"},
		{"100%", "100%"},
		{"50% off", "50% off"},
		{"%41", "%2541"},
		{"%4", "%4"},
		{"%4g", "%4g"},
		{"%%41", "%%2541"},
		{"%:", "%%3A"},
		{"%a:", "%a%3A"},
		{"bad\xffname", "bad%FFname"},
		{"Ünïcödé 文件 😀.txt", "Ünïcödé 文件 😀.txt"},
	}
	for _, c := range cases {
		got, esc := EscapeName(c.in)
		if got != c.want {
			t.Errorf("EscapeName(%q) = %q, want %q", c.in, got, c.want)
		}
		if esc != (c.in != c.want) {
			t.Errorf("EscapeName(%q) escaped=%v", c.in, esc)
		}
		if back := UnescapeName(got); back != c.in {
			t.Errorf("UnescapeName(%q) = %q, want %q", got, back, c.in)
		}
	}
}

// windowsLegal checks the escaped name breaks no Windows naming rule.
func windowsLegal(t *testing.T, orig, n string) {
	t.Helper()
	if n == "" {
		t.Fatalf("%q escaped to an empty name", orig)
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x20 || strings.IndexByte(`<>:"/\|?*`, n[i]) >= 0 {
			t.Fatalf("%q escaped to %q, which holds %q", orig, n, n[i])
		}
	}
	if strings.HasSuffix(n, ".") || strings.HasSuffix(n, " ") {
		t.Fatalf("%q escaped to %q, which ends in a dot or space", orig, n)
	}
	if isReservedDevice(n) {
		t.Fatalf("%q escaped to the device name %q", orig, n)
	}
}

func TestEscapeRoundTripRandom(t *testing.T) {
	alphabet := []string{"a", "B", "%", "4", "1", "f", "F", ":", ".", " ", "\\", "*", "?", "\x01", "\xff", "é", "CON", "nul", "COM1", "x"}
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[string]string{}
	for i := 0; i < 50000; i++ {
		var b strings.Builder
		for j := r.IntN(8) + 1; j > 0; j-- {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		in := b.String()
		if in == "." || in == ".." {
			continue
		}
		out, _ := EscapeName(in)
		windowsLegal(t, in, out)
		if back := UnescapeName(out); back != in {
			t.Fatalf("round trip %q -> %q -> %q", in, out, back)
		}
		if prev, ok := seen[out]; ok && prev != in {
			t.Fatalf("%q and %q both escape to %q", prev, in, out)
		}
		seen[out] = in
	}
}

func TestEscapeUniqueCollisions(t *testing.T) {
	taken := map[string]bool{}
	isTaken := func(n string) bool { return taken[foldKey(n)] }
	var outs []string
	for _, in := range []string{"Report.txt", "report.txt", "REPORT.TXT", "rEport.txt", "%72eport.txt", "123", "123"} {
		out, _, collided, ok := escapeUnique(in, false, isTaken)
		if in == "123" && len(outs) == 6 {
			if ok {
				t.Fatalf("a byte-identical name was accepted twice: %q", out)
			}
			continue
		}
		if !ok {
			t.Fatalf("%q: no unique name", in)
		}
		if len(outs) > 0 && in != "123" && in != "%72eport.txt" && !collided {
			t.Errorf("%q: collision not reported", in)
		}
		if back := UnescapeName(out); back != in {
			t.Errorf("%q written as %q, which unescapes to %q", in, out, back)
		}
		taken[foldKey(out)] = true
		outs = append(outs, out)
	}
	if outs[1] != "%72eport.txt" {
		t.Errorf("second name = %q, want %%72eport.txt", outs[1])
	}
	t.Logf("written: %q", outs)
}

func TestEscapeASCIIOnly(t *testing.T) {
	out, _, _, _ := escapeUnique("Ünï 文.txt", true, func(string) bool { return false })
	if out != "%C3%9Cn%C3%AF %E6%96%87.txt" || UnescapeName(out) != "Ünï 文.txt" {
		t.Fatalf("got %q", out)
	}
}

func FuzzEscapeName(f *testing.F) {
	for _, s := range []string{"a", "%41", "CON.txt", "a.", "x:y", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if in == "" || in == "." || in == ".." {
			return
		}
		out, _ := EscapeName(in)
		windowsLegal(t, in, out)
		if back := UnescapeName(out); back != in {
			t.Fatalf("round trip %q -> %q -> %q", in, out, back)
		}
	})
}

// checkShort checks rule 7 on the name written for in.
func checkShort(t *testing.T, in, out string) {
	t.Helper()
	if len(out) > maxName {
		t.Fatalf("%q (%d bytes) written as %d bytes", in, len(in), len(out))
	}
	if utf8.ValidString(in) && !utf8.ValidString(out) {
		t.Fatalf("%q: shortening cut a character: %q", in, out)
	}
	if len(in) <= maxName && out != render(tokenize(in, false)) && len(render(tokenize(in, false))) <= maxName {
		t.Fatalf("%q shortened although it fits", in)
	}
}

// Rule 7: a name over 255 bytes is shortened, keeps its extension, never
// ends cut inside a %XX or a character, and two long names that share
// their start stay apart.
func TestShortenName(t *testing.T) {
	long := strings.Repeat("n", 300) + ".txt"
	other := strings.Repeat("n", 300) + "x.txt"
	a, b := shortenName(long, long), shortenName(other, other)
	if len(a) != maxName || !strings.HasSuffix(a, ".txt") || !strings.Contains(a, "~") || a == b {
		t.Fatalf("%q / %q", a, b)
	}
	if shortenName(long, long) != a {
		t.Fatal("not deterministic")
	}
	if n := "short.txt"; shortenName(n, n) != n {
		t.Fatal("a short name changed")
	}
	// Escapes and multi-byte characters at the cut.
	for pad := 0; pad < 6; pad++ {
		for _, fill := range []string{":", "é", "文", "a:"} {
			in := strings.Repeat("x", pad) + strings.Repeat(fill, 200) + ".doc"
			out, _, _, ok := escapeUnique(in, false, func(string) bool { return false })
			if !ok {
				t.Fatal(in)
			}
			checkShort(t, in, out)
			stem := out[:strings.LastIndexByte(out, '~')]
			if i := strings.LastIndexByte(stem, '%'); i >= 0 && i > len(stem)-3 {
				t.Fatalf("%q: cut inside a %%XX: %q", in, out)
			}
			if !strings.HasSuffix(out, ".doc") {
				t.Fatalf("%q: extension lost: %q", in, out)
			}
		}
	}
	// A long extension is not kept whole.
	in := strings.Repeat("y", 100) + "." + strings.Repeat("z", 250)
	checkShort(t, in, shortenName(in, in))
}

func FuzzShortenName(f *testing.F) {
	for _, s := range []string{strings.Repeat("a", 300), strings.Repeat("é", 200) + ".txt", strings.Repeat(":", 120), "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if in == "" || in == "." || in == ".." {
			return
		}
		out, _, _, ok := escapeUnique(in, false, func(string) bool { return false })
		if !ok {
			t.Fatal("no name")
		}
		checkShort(t, in, out)
		windowsLegal(t, in, out)
	})
}
