package extract

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/usmtkit/usmtkit/store"
)

// Pattern is one --include or --exclude pattern, parsed.
//
// Matching rules (docs/extract.md):
//   - Case-insensitive, as on Windows.
//   - `*` matches any run of characters within one name (not `\`); `?`
//     matches exactly one character; `**` as a whole component matches any
//     number of folders (`C:\Users\**\*.pst`). `/` may be typed for `\`.
//   - A pattern without `\` (`*.pst`, `AppData`) is a NAME pattern: it is
//     matched against the name of the entry and of every folder above it.
//   - A pattern with `\` or a drive (`C:\Users\jdoe\Documents\*`) is a PATH
//     pattern, matched against the full Windows path of the entry and of
//     every folder above it. A path pattern without a drive letter
//     (`Users\jdoe\Desktop`) is matched from the root of any drive.
//   - So a pattern that matches a folder selects everything below it.
type Pattern struct {
	Raw   string   // as the user typed it (trimmed)
	path  bool     // a path pattern
	drive bool     // a path pattern that starts with a drive letter
	segs  []string // upper-cased components (path) or the one upper-cased name
}

// SplitPatterns splits flag values into single patterns: several patterns
// may share one value separated by `,` or `;` (as usmtutils /i: and /e:
// accept). Blank pieces are dropped.
func SplitPatterns(values []string) []string {
	var out []string
	for _, v := range values {
		for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ';' }) {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// ParsePattern parses one pattern.
func ParsePattern(raw string) (*Pattern, error) {
	raw = strings.TrimSpace(raw)
	p := &Pattern{Raw: raw}
	s := strings.ReplaceAll(raw, "/", `\`)
	if len(s) >= 2 && s[1] == ':' && isLetter(s[0]) {
		p.path, p.drive = true, true
		rest := strings.Trim(s[2:], `\`)
		p.segs = []string{strings.ToUpper(s[:1]) + ":"}
		if rest != "" {
			p.segs = append(p.segs, splitSegs(rest)...)
		}
	} else if strings.Contains(s, `\`) {
		p.path = true
		s = strings.Trim(s, `\`)
		if s == "" {
			return nil, fmt.Errorf("pattern %q names no file or folder; use * for everything", raw)
		}
		p.segs = splitSegs(s)
	} else {
		if s == "" {
			return nil, fmt.Errorf("empty pattern")
		}
		p.segs = []string{strings.ToUpper(s)}
	}
	for _, g := range p.segs {
		if g == "" {
			return nil, fmt.Errorf("pattern %q has an empty folder name (two backslashes in a row)", raw)
		}
	}
	return p, nil
}

func splitSegs(s string) []string {
	parts := strings.Split(strings.ToUpper(s), `\`)
	out := parts[:0]
	for i, g := range parts {
		if g == "**" && i > 0 && out[len(out)-1] == "**" {
			continue // a run of ** is one **
		}
		out = append(out, g)
	}
	return out
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// target is what one entry is matched as: its upper-cased name and its
// upper-cased Windows path components (drive first, as "C:").
type target struct {
	name  string
	segs  []string // full path, drive component first when there is one
	drive bool
}

func makeTarget(win string) target {
	win = strings.TrimRight(win, `\`)
	up := strings.ToUpper(win)
	t := target{segs: strings.Split(up, `\`)}
	t.name = t.segs[len(t.segs)-1]
	t.drive = len(up) >= 2 && up[1] == ':' && isLetter(up[0])
	return t
}

// Match reports whether the pattern matches the entry itself (not its
// folders: the Selector handles inheritance).
func (p *Pattern) match(t target) bool {
	if !p.path {
		return matchName(p.segs[0], t.name)
	}
	segs := t.segs
	if !p.drive && t.drive {
		segs = segs[1:] // a driveless path pattern starts at any drive's root
	}
	return matchSegs(p.segs, segs)
}

func matchSegs(ps, ss []string) bool {
	for len(ps) > 0 {
		if ps[0] == "**" {
			for i := 0; i <= len(ss); i++ {
				if matchSegs(ps[1:], ss[i:]) {
					return true
				}
			}
			return false
		}
		if len(ss) == 0 || !matchName(ps[0], ss[0]) {
			return false
		}
		ps, ss = ps[1:], ss[1:]
	}
	return len(ss) == 0
}

// matchName matches one name against one wildcard component (`*`, `?`),
// both already upper-cased. It is the linear-time greedy algorithm with
// one backtrack point, on UTF-8 characters.
func matchName(pat, name string) bool {
	px, nx := 0, 0
	nextPx, nextNx := 0, -1
	for px < len(pat) || nx < len(name) {
		if px < len(pat) {
			switch c := pat[px]; c {
			case '*':
				nextPx, nextNx = px, nx+runeLen(name, nx)
				px++
				continue
			case '?':
				if nx < len(name) {
					px++
					nx += runeLen(name, nx)
					continue
				}
			default:
				if nx < len(name) && name[nx] == c {
					px++
					nx++
					continue
				}
			}
		}
		if nextNx > 0 && nextNx <= len(name) {
			px, nx = nextPx, nextNx
			continue
		}
		return false
	}
	return true
}

func runeLen(s string, i int) int {
	if i >= len(s) {
		return 1
	}
	_, w := utf8.DecodeRuneInString(s[i:])
	return w
}

// Action is what happens to an entry.
type Action int

const (
	Include Action = iota // extracted
	Exclude               // left out by an --exclude pattern
	Skip                  // left out for another reason (no --include matched, --user, --drive, kind)
)

func (a Action) String() string {
	switch a {
	case Include:
		return "include"
	case Exclude:
		return "exclude"
	}
	return "skip"
}

// Decision is why an entry is or is not extracted.
type Decision struct {
	Action Action
	Reason string // "matched --include *.pst", "no --include matched", ...
	// Prune is set on folders whose whole subtree gets the same decision
	// (nothing below can be selected): the walk does not descend.
	Prune bool
}

// Selector decides, entry by entry in walk order, what is extracted.
// Folder matches are inherited by everything below the folder.
type Selector struct {
	include, exclude []*Pattern
	user, drive      string
	// stack of the folders above the current entry with what matched them.
	stack []selFrame
}

type selFrame struct {
	path    string // store path
	inc     *Pattern
	exc     *Pattern
	userOK  bool
	driveOK bool
}

// NewSelector parses the patterns and filters. user is a profile folder
// name (Users\NAME), drive a letter ("D" or "D:").
func NewSelector(include, exclude []string, user, drive string) (*Selector, error) {
	s := &Selector{user: user, drive: strings.ToUpper(strings.TrimSuffix(drive, ":"))}
	for _, raw := range SplitPatterns(include) {
		p, err := ParsePattern(raw)
		if err != nil {
			return nil, fmt.Errorf("--include: %w", err)
		}
		s.include = append(s.include, p)
	}
	for _, raw := range SplitPatterns(exclude) {
		p, err := ParsePattern(raw)
		if err != nil {
			return nil, fmt.Errorf("--exclude: %w", err)
		}
		s.exclude = append(s.exclude, p)
	}
	if s.drive != "" && (len(s.drive) != 1 || !isLetter(s.drive[0])) {
		return nil, fmt.Errorf("--drive takes one letter, like --drive C (got %q)", drive)
	}
	return s, nil
}

// HasInclude reports whether any --include pattern was given.
func (s *Selector) HasInclude() bool { return len(s.include) > 0 }

func firstMatch(ps []*Pattern, t target) *Pattern {
	for _, p := range ps {
		if p.match(t) {
			return p
		}
	}
	return nil
}

// Decide returns the decision for the entry e, which must come in walk
// order (parents before children). Entries without a Windows path (the
// store's own folders, control files) are decided by the caller; Decide
// only tracks them as folders.
func (s *Selector) Decide(e *store.Entry) Decision {
	// Pop the frames of folders the walk has left.
	for len(s.stack) > 0 {
		top := s.stack[len(s.stack)-1].path
		if top == "" || strings.HasPrefix(e.StorePath, top+"/") {
			break
		}
		s.stack = s.stack[:len(s.stack)-1]
	}
	var parent selFrame
	if len(s.stack) > 0 {
		parent = s.stack[len(s.stack)-1]
	} else {
		parent = selFrame{userOK: s.user == "", driveOK: s.drive == ""}
	}
	f := selFrame{path: e.StorePath, inc: parent.inc, exc: parent.exc, userOK: parent.userOK, driveOK: parent.driveOK}
	d := s.decide(e, &f, parent)
	if e.Type == store.TypeDir {
		s.stack = append(s.stack, f)
	}
	return d
}

func (s *Selector) decide(e *store.Entry, f *selFrame, parent selFrame) Decision {
	if e.WinPath == "" {
		return Decision{Action: Skip, Reason: "not user data (no Windows path)"}
	}
	dir := e.Type == store.TypeDir
	if !f.driveOK {
		if store.DriveOf(e.WinPath) != s.drive {
			return Decision{Action: Skip, Reason: "not on drive " + s.drive + ":", Prune: dir}
		}
		f.driveOK = true
	}
	if !f.userOK {
		u := store.UserOf(e.WinPath)
		if u != "" && !strings.EqualFold(u, s.user) {
			return Decision{Action: Skip, Reason: "not in profile " + s.user, Prune: dir}
		}
		if u == "" {
			// A file outside the profiles, or a folder above them
			// (C:\, C:\Users): a folder is walked on down (its frame keeps
			// userOK false), nothing is extracted here.
			return Decision{Action: Skip, Reason: "not in profile " + s.user}
		}
		f.userOK = true
	}
	if f.inc == nil && len(s.include) > 0 {
		f.inc = firstMatch(s.include, makeTarget(e.WinPath))
	}
	if f.inc != nil {
		return Decision{Action: Include, Reason: "matched --include " + f.inc.Raw}
	}
	if f.exc == nil && len(s.exclude) > 0 {
		f.exc = firstMatch(s.exclude, makeTarget(e.WinPath))
	}
	if f.exc != nil {
		// Include wins: only prune when no include pattern could still
		// select something below this folder.
		return Decision{Action: Exclude, Reason: "matched --exclude " + f.exc.Raw, Prune: dir && len(s.include) == 0}
	}
	if len(s.include) > 0 {
		return Decision{Action: Skip, Reason: "no --include matched"}
	}
	return Decision{Action: Include, Reason: "no --include given"}
}
