package store

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// ResolveWinPath finds the store path of a Windows path typed by a user
// (`C:\Users\jdoe`, `c:/users/JDOE/Documents`, or a store path such as
// `USMT/File/C$/Users`). Components match exactly first and then
// case-insensitively, as Windows would; an ambiguous case-insensitive
// match (two names differing only in case) is an error that names both.
func ResolveWinPath(s Store, win string) (string, error) {
	p := strings.ReplaceAll(strings.TrimSpace(win), `\`, "/")
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	var candidates []string
	if len(p) >= 2 && p[1] == ':' && isASCIILetter(p[0]) {
		rest := strings.TrimLeft(p[2:], "/")
		drive := strings.ToUpper(p[:1]) + "$"
		for _, top := range []string{"USMT", "USMT3"} {
			candidates = append(candidates, JoinPath(top+"/File/"+drive, rest))
		}
	} else {
		candidates = append(candidates, p)
	}
	var firstErr error
	for _, c := range candidates {
		sp, err := resolveFold(s, c)
		if err == nil {
			return sp, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return "", fmt.Errorf("%s is not in the store: %w", win, firstErr)
}

// resolveFold walks a store path component by component with an exact,
// then case-insensitive, match.
func resolveFold(s Store, p string) (string, error) {
	if _, err := s.Stat(p); err == nil {
		return p, nil
	}
	cur := ""
	for _, comp := range strings.Split(p, "/") {
		kids, err := s.ReadDir(cur)
		if err != nil && len(kids) == 0 {
			return "", err
		}
		var match []string
		found := ""
		for i := range kids {
			n := kids[i].Name()
			if n == comp {
				found = n
				break
			}
			if strings.EqualFold(n, comp) {
				match = append(match, n)
			}
		}
		if found == "" {
			switch len(match) {
			case 0:
				return "", fmt.Errorf("no %q in %q: %w", comp, cur, fs.ErrNotExist)
			case 1:
				found = match[0]
			default:
				return "", errors.New("ambiguous: " + strings.Join(match, " and ") + " differ only in case; type the exact name")
			}
		}
		cur = JoinPath(cur, found)
	}
	return cur, nil
}
