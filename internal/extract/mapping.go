package extract

import (
	"fmt"
	"strings"
)

// Restore mapping: where a user's files go when they are restored into a
// new profile or onto another drive, as LoadState's /mu:OLD:NEW and
// /md:OLD:NEW do (docs/extract.md, Restore mapping). It applies to the
// windows layout only: DEST/<drive>/<path>.

// UserMap moves the profile folder of user Old to Users\New.
type UserMap struct{ Old, New string }

// DriveMap moves the files of drive From to drive To.
type DriveMap struct{ From, To string }

// ParseUserMap reads OLD=NEW (--map-user). A DOMAIN\ prefix on either side
// is dropped: the profile folder is named by the account name alone.
func ParseUserMap(s string) (UserMap, error) {
	old, new, ok := strings.Cut(s, "=")
	old, new = strings.TrimSpace(accountName(old)), strings.TrimSpace(accountName(new))
	if !ok || old == "" || new == "" {
		return UserMap{}, usagef("--map-user takes OLD=NEW, two profile folder names (got %q)", s)
	}
	if err := validName(new); err != nil || strings.ContainsAny(new, `\/:*?"<>|`) {
		return UserMap{}, usagef("--map-user: %q is not a usable profile folder name", new)
	}
	return UserMap{Old: old, New: new}, nil
}

// accountName drops a DOMAIN\ prefix.
func accountName(s string) string {
	if i := strings.LastIndexByte(s, '\\'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// ParseDriveMap reads D=C (--map-drive); a trailing colon is accepted.
func ParseDriveMap(s string) (DriveMap, error) {
	from, to, ok := strings.Cut(s, "=")
	from, to = strings.TrimSuffix(strings.TrimSpace(from), ":"), strings.TrimSuffix(strings.TrimSpace(to), ":")
	if !ok || len(from) != 1 || len(to) != 1 || !isLetter(from[0]) || !isLetter(to[0]) {
		return DriveMap{}, usagef("--map-drive takes FROM=TO, two drive letters such as D=C (got %q)", s)
	}
	return DriveMap{From: strings.ToUpper(from), To: strings.ToUpper(to)}, nil
}

// checkMappings refuses mappings that contradict each other: one source
// sent to two places.
func checkMappings(users []UserMap, drives []DriveMap) error {
	seenU := map[string]string{}
	for _, m := range users {
		k := strings.ToLower(m.Old)
		if prev, ok := seenU[k]; ok && !strings.EqualFold(prev, m.New) {
			return usagef("--map-user maps %s twice (to %s and to %s)", m.Old, prev, m.New)
		}
		seenU[k] = m.New
	}
	seenD := map[string]string{}
	for _, m := range drives {
		if prev, ok := seenD[m.From]; ok && prev != m.To {
			return usagef("--map-drive maps %s: twice (to %s: and to %s:)", m.From, prev, m.To)
		}
		seenD[m.From] = m.To
	}
	return nil
}

// mapComps applies the mappings to windows-layout components
// [drive, folder, ...]; it changes c in place. Names compare without
// case, as Windows does. The drive is mapped first, then the profile
// folder: Users\OLD or Documents and Settings\OLD becomes Users\NEW.
func mapComps(c []string, users []UserMap, drives []DriveMap) {
	if len(c) == 0 {
		return
	}
	for _, m := range drives {
		if strings.EqualFold(c[0], m.From) {
			c[0] = m.To
			break
		}
	}
	if len(c) < 3 || !(strings.EqualFold(c[1], "Users") || strings.EqualFold(c[1], "Documents and Settings")) {
		return
	}
	for _, m := range users {
		if strings.EqualFold(c[2], m.Old) {
			c[1], c[2] = "Users", m.New
			return
		}
	}
}

// mappingNote describes the mappings for the summary ("" when none).
func mappingNote(users []UserMap, drives []DriveMap) string {
	var parts []string
	for _, m := range users {
		parts = append(parts, fmt.Sprintf(`profile %s -> Users\%s`, m.Old, m.New))
	}
	for _, m := range drives {
		parts = append(parts, fmt.Sprintf("drive %s: -> %s:", m.From, m.To))
	}
	return strings.Join(parts, ", ")
}

// mappedAway reports whether the folder comps is a Documents and Settings
// folder whose profiles a --map-user moves to Users: it is not created
// for itself (an unmapped profile below it still creates it).
func mappedAway(c []string, users []UserMap) bool {
	return len(users) > 0 && len(c) == 2 && strings.EqualFold(c[1], "Documents and Settings")
}
