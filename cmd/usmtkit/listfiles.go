package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/internal/verify"
	"github.com/usmtkit/usmtkit/store"
)

// ScanState's /listfiles output as the reference of verify --listfiles
// (docs/verify.md, "--listfiles"): every Windows file path it lists must
// be in the store.

// listFilesSummary is what the --listfiles check found (verify --json
// summary "listfiles").
type listFilesSummary struct {
	File          string `json:"file"`
	Encoding      string `json:"encoding"` // as detected: utf-16le-bom, utf-16be-bom, utf-16le, utf-8-bom, utf-8
	Listed        int64  `json:"listed"`   // lines naming a file
	Present       int64  `json:"present"`
	Missing       int64  `json:"missing"`
	Unreadable    int64  `json:"unreadable"`     // the store could not say (a folder on the way could not be listed)
	NotUnderstood int64  `json:"not_understood"` // lines that are no Windows drive path: not checked (SKIPPED)
	ANSILines     int64  `json:"ansi_lines"`     // lines that were not UTF-8, read as Windows-1252
}

func (l *listFilesSummary) words() string {
	w := fmt.Sprintf("%d files listed in %s (%s): %d present, %d MISSING", l.Listed, l.File, l.Encoding, l.Present, l.Missing)
	if l.Unreadable > 0 {
		w += fmt.Sprintf(", %d could not be looked up", l.Unreadable)
	}
	if l.NotUnderstood > 0 {
		w += fmt.Sprintf(", %d lines not understood (not checked)", l.NotUnderstood)
	}
	if l.ANSILines > 0 {
		w += fmt.Sprintf("; %d lines were not UTF-8 and were read as Windows-1252", l.ANSILines)
	}
	return w
}

// listFile is an open /listfiles output, decoded to UTF-8 lines.
type listFile struct {
	path     string
	f        *os.File
	encoding string
	r        io.Reader
}

// openListFile opens path and works out its encoding from its first bytes:
// a UTF-16 or UTF-8 byte order mark, or, without one, UTF-16LE when the
// text starts with ASCII characters each followed by a zero byte; UTF-8
// otherwise.
func openListFile(path string) (*listFile, error) {
	f, err := safeio.OpenFilePath(path) // it may sit in the store: read it like a source
	if err != nil {
		return nil, fmt.Errorf("opening the --listfiles log: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(512)
	l := &listFile{path: path, f: f}
	switch {
	case bytes.HasPrefix(head, []byte{0xFF, 0xFE}):
		l.encoding = "utf-16le-bom"
		l.r = transform.NewReader(br, unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder())
	case bytes.HasPrefix(head, []byte{0xFE, 0xFF}):
		l.encoding = "utf-16be-bom"
		l.r = transform.NewReader(br, unicode.UTF16(unicode.BigEndian, unicode.ExpectBOM).NewDecoder())
	case bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}):
		l.encoding = "utf-8-bom"
		br.Discard(3)
		l.r = br
	case looksUTF16LE(head):
		l.encoding = "utf-16le"
		l.r = transform.NewReader(br, unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM).NewDecoder())
	default:
		l.encoding = "utf-8"
		l.r = br
	}
	return l, nil
}

// looksUTF16LE: at least two characters, every even byte non-zero ASCII
// and every odd byte zero, as "C\x00:\x00\\\x00" starts.
func looksUTF16LE(b []byte) bool {
	n := len(b) &^ 1
	if n > 64 {
		n = 64
	}
	if n < 4 {
		return false
	}
	for i := 0; i < n; i += 2 {
		if b[i] == 0 || b[i] >= 0x80 || b[i+1] != 0 {
			return false
		}
	}
	return true
}

func (l *listFile) Close() error { return l.f.Close() }

// bracketForm is USMT's "folder [file]" notation (its logs and rules name
// files so); accepted in case /listfiles writes it too (inferred).
var bracketForm = regexp.MustCompile(`^(.*?)\\? \[([^\]]+)\]$`)

// lines calls fn with every non-blank line (line number from 1), CR, a
// stray BOM and surrounding blanks removed. Lines that are not UTF-8 are
// decoded as Windows-1252 and flagged.
func (l *listFile) lines(fn func(n int64, line string, ansi bool) error) error {
	sc := bufio.NewScanner(l.r)
	sc.Buffer(make([]byte, 64<<10), 4<<20) // a Windows path is at most 32,767 UTF-16 units
	var n int64
	for sc.Scan() {
		n++
		b := bytes.TrimRight(sc.Bytes(), "\r")
		b = bytes.TrimPrefix(b, []byte("\uFEFF"))
		ansi := false
		if !utf8.Valid(b) {
			dec, err := charmap.Windows1252.NewDecoder().Bytes(b)
			if err == nil {
				b, ansi = dec, true
			}
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			continue
		}
		if err := fn(n, s, ansi); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading the --listfiles log %s: %w", l.path, err)
	}
	return nil
}

// listedPath turns one line into the Windows path of a file: `C:\dir\file`,
// `"C:\dir\file"`, or `C:\dir [file]`; ok is false for anything else.
func listedPath(line string) (string, bool) {
	s := strings.Trim(line, `"`)
	if m := bracketForm.FindStringSubmatch(s); m != nil {
		s = strings.TrimRight(m[1], `\`) + `\` + m[2]
	}
	if len(s) < 4 || s[1] != ':' || (s[2] != '\\' && s[2] != '/') || !isLetter(s[0]) {
		return "", false
	}
	return s, true
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }

// checkListFile looks up every file the log lists in s. A file that is not
// there is MISSING, a line that names no drive path is SKIPPED; both are
// emitted and counted in sum (so they make the run exit 3).
func checkListFile(ctx context.Context, l *listFile, s store.Store, sum *verify.Summary, emit func(*verify.Result) error) (*listFilesSummary, error) {
	ls := &listFilesSummary{File: l.path, Encoding: l.encoding}
	err := l.lines(func(n int64, line string, ansi bool) error {
		if n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if ansi {
			ls.ANSILines++
		}
		win, ok := listedPath(line)
		if !ok {
			ls.NotUnderstood++
			sum.Files++
			sum.Skipped++
			return emit(&verify.Result{WinPath: line, Type: "file", Status: verify.Skipped,
				Detail: fmt.Sprintf("line %d of %s is not a Windows drive path: not checked", n, l.path)})
		}
		ls.Listed++
		_, rerr := store.ResolveWinPath(s, win)
		switch {
		case rerr == nil, strings.Contains(rerr.Error(), "differ only in case"):
			ls.Present++ // two names differing in case: the file is there under one of them
			return nil
		case errors.Is(rerr, fs.ErrNotExist):
			ls.Missing++
			sum.Files++
			sum.Missing++
			return emit(&verify.Result{WinPath: win, Type: "file", Status: verify.Missing,
				Detail: fmt.Sprintf("listed by ScanState /listfiles (%s line %d), not in the store", l.path, n)})
		default:
			ls.Unreadable++
			sum.Files++
			sum.Unread++
			return emit(&verify.Result{WinPath: win, Type: "file", Status: verify.Unreadable,
				Detail: fmt.Sprintf("listed by ScanState /listfiles (%s line %d); looking it up failed: %v", l.path, n, rerr)})
		}
	})
	return ls, err
}
