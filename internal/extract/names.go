package extract

import (
	"fmt"
	"hash/fnv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Name escaping for targets that follow Windows naming rules (FAT, exFAT,
// NTFS, SMB shares).
//
// The rule, applied to one path component (a file or folder name):
//
//  1. Each of these bytes becomes %XX (two upper-case hex digits):
//     the reserved characters < > : " / \ | ? *, the control characters
//     0x00-0x1F, and every byte that is not part of a valid UTF-8
//     sequence.
//  2. A trailing dot or space becomes %2E or %20 (only the last character:
//     once it is escaped the name no longer ends in a dot or space).
//  3. A reserved device name — CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9,
//     in any case, alone or followed by an extension ("nul.txt",
//     "Com1.tar.gz") — has its first character escaped: CON.txt -> %43ON.txt.
//  4. A % is escaped as %25 only when it would otherwise be ambiguous: when
//     the two characters that follow it in the output are hex digits
//     (0-9, A-F, a-f). "100%" and "50% off" stay as they are; "%41" becomes
//     "%2541".
//  5. On a target that refuses names outside ASCII (fusefat), every
//     byte of a non-ASCII character is escaped too: é -> %C3%A9.
//  6. On a case-insensitive target, a name that differs only in case from
//     a name already written in the same folder gets its cased letters
//     escaped one by one, from the left, until it is unique: the second of
//     "Report.txt" and "report.txt" is written "%72eport.txt".
//
//  7. On every target (Windows rules or not), a name longer than 255 bytes
//     once escaped (NAME_MAX on Linux file systems; NTFS and FAT allow 255
//     UTF-16 units, never fewer than 255 bytes) is shortened: its extension
//     (from the last dot, when that part is at most 32 bytes) is kept, the
//     rest is cut on a character boundary, never inside a %XX, and
//     "~" + 8 hex digits of the FNV-1a hash of the store name are put
//     between them, so that the whole is 255 bytes at most:
//     "nnnn…n~1f2e3d4c.txt". Two long names that share their first 240
//     bytes get different hashes.
//
// UnescapeName reverses rules 1-6: every %XX with two hex digits becomes
// the byte XX; anything else is kept. Escaped output only ever contains
// %-sequences and characters that were legal as they stood, so the mapping
// is injective and UnescapeName(escape(n)) == n for every byte string n
// that rule 7 leaves alone. A shortened name cannot be reversed from the
// name: the run's summary lists it with the store path (escaped_names).

// tok is one character of a name being escaped: the bytes of one UTF-8
// sequence (or one invalid byte), and whether it is written as %XX.
type tok struct {
	s   string
	esc bool
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

var reservedDevices = map[string]bool{"CON": true, "PRN": true, "AUX": true, "NUL": true}

func init() {
	for i := '1'; i <= '9'; i++ {
		reservedDevices["COM"+string(i)] = true
		reservedDevices["LPT"+string(i)] = true
	}
}

// isReservedDevice reports whether a name is a DOS device name, with or
// without an extension (Windows ignores everything from the first dot).
func isReservedDevice(name string) bool {
	stem, _, _ := strings.Cut(name, ".")
	stem = strings.TrimRight(stem, " ")
	return reservedDevices[strings.ToUpper(stem)]
}

// tokenize splits a name into characters and marks those rules 1-3 (and 5
// when ascii) escape.
func tokenize(name string, ascii bool) []tok {
	toks := make([]tok, 0, len(name))
	for i := 0; i < len(name); {
		r, w := utf8.DecodeRuneInString(name[i:])
		t := tok{s: name[i : i+w]}
		if r == utf8.RuneError && w == 1 || ascii && r >= 0x80 {
			t.esc = true
		} else if r < 0x20 || strings.ContainsRune(`<>:"/\|?*`, r) {
			t.esc = true
		}
		toks = append(toks, t)
		i += w
	}
	if n := len(toks); n > 0 && (toks[n-1].s == "." || toks[n-1].s == " ") {
		toks[n-1].esc = true
	}
	if len(toks) > 0 && isReservedDevice(name) {
		toks[0].esc = true
	}
	return toks
}

// render writes the tokens out, applying rule 4 to literal % signs.
func render(toks []tok) string {
	var b strings.Builder
	literalHex := func(i int) bool {
		return i < len(toks) && !toks[i].esc && len(toks[i].s) == 1 && isHex(toks[i].s[0])
	}
	for i, t := range toks {
		esc := t.esc || (t.s == "%" && literalHex(i+1) && literalHex(i+2))
		if !esc {
			b.WriteString(t.s)
			continue
		}
		for j := 0; j < len(t.s); j++ {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[t.s[j]>>4])
			b.WriteByte("0123456789ABCDEF"[t.s[j]&15])
		}
	}
	return b.String()
}

// EscapeName returns name as it is written on a target with Windows naming
// rules (rules 1-4 above) and whether anything was escaped.
func EscapeName(name string) (string, bool) {
	out := render(tokenize(name, false))
	return out, out != name
}

// UnescapeName reverses EscapeName (and the collision escapes): every %XX
// with two hex digits becomes the byte XX. Apply it to each component of a
// tree extracted with Windows name rules to get the original names back.
func UnescapeName(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// foldKey is how a case-insensitive target compares names. Windows (and
// FAT/exFAT/NTFS) upper-case each character with a per-character table;
// simple upper-casing is the same for every character Windows folds.
func foldKey(s string) string {
	return strings.ToUpper(s)
}

// maxName is the longest name written (bytes): NAME_MAX.
const maxName = 255

// shortenName applies rule 7 to out, the escaped form of the store name
// orig.
func shortenName(out, orig string) string {
	if len(out) <= maxName {
		return out
	}
	h := fnv.New32a()
	h.Write([]byte(orig))
	tag := fmt.Sprintf("~%08x", h.Sum32())
	ext := ""
	if i := strings.LastIndexByte(out, '.'); i > 0 && len(out)-i <= 32 {
		ext = out[i:]
	}
	stem := out[:len(out)-len(ext)]
	cut := maxName - len(tag) - len(ext)
	for cut > 0 && !utf8.RuneStart(stem[cut]) {
		cut-- // not inside a UTF-8 sequence
	}
	switch {
	case cut >= 1 && stem[cut-1] == '%':
		cut-- // not inside a %XX
	case cut >= 2 && stem[cut-2] == '%' && isHex(stem[cut-1]):
		cut -= 2
	}
	return stem[:cut] + tag + ext
}

// escapeUnique escapes name (rules 1-4) and then, while taken reports the
// result as already used (case-insensitively), escapes one more cased
// letter from the left (rule 5). It returns the name to write, whether it
// differs from name, and whether a collision forced extra escapes. When
// every letter is escaped and the name is still taken (it is byte for byte
// a name already written), ok is false.
func escapeUnique(name string, ascii bool, taken func(string) bool) (out string, escaped, collided, ok bool) {
	toks := tokenize(name, ascii)
	out = shortenName(render(toks), name)
	if !taken(out) {
		return out, out != name, false, true
	}
	for i := range toks {
		if toks[i].esc {
			continue
		}
		r, _ := utf8.DecodeRuneInString(toks[i].s)
		if unicode.ToUpper(r) == unicode.ToLower(r) {
			continue // no case: escaping it changes nothing about the collision
		}
		toks[i].esc = true
		out = shortenName(render(toks), name)
		if !taken(out) {
			return out, true, true, true
		}
	}
	return out, out != name, true, false
}
