package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
)

// utf16le encodes s as UTF-16LE, with the byte order mark when bom.
func utf16le(s string, bom bool) []byte {
	var b bytes.Buffer
	if bom {
		b.Write([]byte{0xFF, 0xFE})
	}
	for _, u := range utf16.Encode([]rune(s)) {
		binary.Write(&b, binary.LittleEndian, u)
	}
	return b.Bytes()
}

func utf16be(s string) []byte {
	b := []byte{0xFE, 0xFF}
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

// verify --listfiles: every file ScanState listed and the store lacks is
// MISSING (line, count, exit 3), whatever encoding Windows wrote the list
// in; present files, blank lines and names outside ASCII are fine.
func TestVerifyListFilesEncodings(t *testing.T) {
	dir := t.TempDir()
	sp := filepath.Join(dir, "pc")
	fixtures.Build(t, sp, fixtures.Tree{
		"USMT/catalog.mig":                                   fixtures.File{Data: []byte("catalog")},
		"USMT/File/C$/Users/jdoe/Documents/a.txt":            fixtures.File{Data: []byte("a")},
		"USMT/File/C$/Users/jdoe/Documents/Übersicht ü.docx": fixtures.File{Data: []byte("u")},
		"USMT/File/D$/Data/b.bin":                            fixtures.File{Data: []byte("b")},
	})
	present := []string{`C:\Users\jdoe\Documents\a.txt`, `c:\users\JDOE\documents\Übersicht ü.docx`, `D:\Data\b.bin`}
	missing := []string{`C:\Users\jdoe\Documents\gone.txt`, `C:\Users\jdoe\Desktop\Résumé.pdf`}
	lines := append(append([]string{}, present[:2]...), "", missing[0], "   ", present[2], missing[1], "")
	for _, c := range []struct {
		name     string
		encoding string
		data     func(text string) []byte
		eol      string
	}{
		{"utf16le-bom-crlf", "utf-16le-bom", func(s string) []byte { return utf16le(s, true) }, "\r\n"},
		{"utf16le-nobom-crlf", "utf-16le", func(s string) []byte { return utf16le(s, false) }, "\r\n"},
		{"utf16be-bom-lf", "utf-16be-bom", utf16be, "\n"},
		{"utf8-bom-crlf", "utf-8-bom", func(s string) []byte { return append([]byte{0xEF, 0xBB, 0xBF}, s...) }, "\r\n"},
		{"utf8-lf", "utf-8", func(s string) []byte { return []byte(s) }, "\n"},
		{"utf8-crlf-no-final-eol", "utf-8", func(s string) []byte { return []byte(strings.TrimSuffix(s, "\r\n")) }, "\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := filepath.Join(dir, c.name+".txt")
			if err := os.WriteFile(log, c.data(strings.Join(lines, c.eol)+c.eol), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, stderr := runCLI(t, "verify", sp, "--listfiles", log)
			if code != exitcodes.Partial {
				t.Fatalf("exit %d, want 3\n%s\n%s", code, out, stderr)
			}
			for _, m := range missing {
				if !strings.Contains(out, "MISSING    "+m+": listed by ScanState /listfiles") {
					t.Errorf("no MISSING line for %s:\n%s", m, out)
				}
			}
			want := "listfiles:  5 files listed in " + log + " (" + c.encoding + "): 3 present, 2 MISSING"
			if !strings.Contains(out, want) || strings.Contains(out, "not understood") {
				t.Errorf("lacks %q:\n%s", want, out)
			}
			if strings.Contains(out, "OK: every file") {
				t.Errorf("claims OK:\n%s", out)
			}
			// --json carries the counts.
			_, jout, _ := runCLI(t, "verify", sp, "--listfiles", log, "--json", "--report", "failureonly")
			files, sum := jsonLines(t, jout)
			lf, _ := sum["listfiles"].(map[string]any)
			if len(files) != 2 || lf == nil || lf["missing"] != float64(2) || lf["present"] != float64(3) || lf["encoding"] != c.encoding || sum["missing"] != float64(2) {
				t.Errorf("json: %d files, summary %v", len(files), sum)
			}
		})
	}

	t.Run("all-present", func(t *testing.T) {
		log := filepath.Join(dir, "ok.txt")
		os.WriteFile(log, utf16le(strings.Join(present, "\r\n")+"\r\n", true), 0o644)
		code, out, stderr := runCLI(t, "verify", sp, "--listfiles", log)
		if code != 0 || !strings.Contains(out, "3 present, 0 MISSING") {
			t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
		}
	})
	t.Run("not-understood-and-ansi", func(t *testing.T) {
		// A line that is no drive path is not checked: SKIPPED, counted,
		// exit 3. A Windows-1252 line (not UTF-8) is read as such.
		log := filepath.Join(dir, "odd.txt")
		body := []byte("ScanState file list\r\n" + `C:\Users\jdoe\Documents [a.txt]` + "\r\n")
		body = append(body, []byte(`C:\Users\jdoe\Documents\`)...)
		body = append(body, 0xDC, 'b', 'e', 'r', 's', 'i', 'c', 'h', 't', ' ', 0xFC)
		body = append(body, []byte(".docx\r\n")...)
		os.WriteFile(log, body, 0o644)
		code, out, _ := runCLI(t, "verify", sp, "--listfiles", log)
		if code != exitcodes.Partial || !strings.Contains(out, "2 files listed") || !strings.Contains(out, "2 present, 0 MISSING") ||
			!strings.Contains(out, "1 lines not understood") || !strings.Contains(out, "1 lines were not UTF-8") ||
			!strings.Contains(out, "SKIPPED    ScanState file list: line 1 of") {
			t.Fatalf("exit %d\n%s", code, out)
		}
	})
	t.Run("refused", func(t *testing.T) {
		if code, _, _ := runCLI(t, "verify", sp, "--listfiles", filepath.Join(dir, "none.txt")); code != exitcodes.Failure {
			t.Errorf("a missing list: exit %d, want 1", code)
		}
		mig := fixtures.MIGStore(t, filepath.Join(dir, "mig"), false)
		if code, _, stderr := runCLI(t, "verify", mig, "--listfiles", filepath.Join(dir, "ok.txt")); code != exitcodes.Usage {
			t.Errorf("a MIG with --listfiles: exit %d: %s", code, stderr)
		}
	})
}

// FuzzListFile: any bytes decode to lines without a panic, and every path
// listedPath accepts starts with a drive.
func FuzzListFile(f *testing.F) {
	f.Add(utf16le("C:\\a\\b.txt\r\n\r\nD:\\x [y.z]\r\n", true))
	f.Add(utf16le("C:\\a.txt\r\n", false))
	f.Add([]byte("\xEF\xBB\xBFC:\\Users\\\xfc.txt\n\"C:\\q.txt\"\n"))
	f.Add(utf16be("C:\\b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "l")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		lf, err := openListFile(p)
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		_ = lf.lines(func(_ int64, line string, _ bool) error {
			if line == "" || strings.TrimSpace(line) != line {
				t.Fatalf("line %q not trimmed", line)
			}
			if w, ok := listedPath(line); ok && (len(w) < 4 || w[1] != ':') {
				t.Fatalf("accepted %q as %q", line, w)
			}
			return nil
		})
	})
}
