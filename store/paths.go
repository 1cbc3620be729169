package store

import (
	"strings"
)

// ComparePaths orders two store paths the way Walk yields them: depth-first
// pre-order with the children of a directory sorted bytewise by name. It
// differs from plain string comparison, which would put "a-b" before "a/x".
func ComparePaths(a, b string) int {
	for {
		if a == b {
			return 0
		}
		if a == "" {
			return -1
		}
		if b == "" {
			return 1
		}
		ah, at, _ := strings.Cut(a, "/")
		bh, bt, _ := strings.Cut(b, "/")
		if ah != bh {
			if ah < bh {
				return -1
			}
			return 1
		}
		// When one path ended at this component, the loop's next turn sees
		// it empty: the parent comes before its children.
		a, b = at, bt
	}
}

// JoinPath joins a store directory path and a child name.
func JoinPath(dir, name string) string {
	if name == "" {
		return dir
	}
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// SplitPath splits a store path into its parent directory and name.
func SplitPath(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

// isDriveFolder reports whether name is a USMT drive folder such as "C$".
func isDriveFolder(name string) bool {
	return len(name) == 2 && name[1] == '$' && isASCIILetter(name[0])
}

func isASCIILetter(c byte) bool { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') }

// WinPathFromUSMT maps a path relative to a USMT File folder ("C$/Users/jdoe/a.txt")
// to the Windows path it had ("C:\Users\jdoe\a.txt"). ok is false when the
// first component is not a drive folder.
func WinPathFromUSMT(rel string) (win string, ok bool) {
	drive, rest, _ := strings.Cut(rel, "/")
	if !isDriveFolder(drive) {
		return "", false
	}
	letter := strings.ToUpper(drive[:1])
	if rest == "" {
		return letter + `:\`, true
	}
	return letter + `:\` + strings.ReplaceAll(rest, "/", `\`), true
}

// DriveOf returns the upper-case drive letter of a Windows path ("C"), or "".
func DriveOf(win string) string {
	if len(win) >= 2 && win[1] == ':' && isASCIILetter(win[0]) {
		return strings.ToUpper(win[:1])
	}
	return ""
}

// UserOf returns the profile folder name a Windows path belongs to
// (`C:\Users\jdoe\...` or `C:\Documents and Settings\jdoe\...`), or "".
func UserOf(win string) string {
	if DriveOf(win) == "" {
		return ""
	}
	parts := strings.Split(win[3:], `\`)
	if len(parts) >= 2 && (strings.EqualFold(parts[0], "Users") || strings.EqualFold(parts[0], "Documents and Settings")) {
		return parts[1]
	}
	return ""
}

// controlNames are the store metadata files, matched case-insensitively.
var controlNames = []string{"catalog.mig", "migstate.dat", "status.~lg"}

// IsControlName reports whether a file name is a USMT store metadata file.
func IsControlName(name string) bool {
	for _, c := range controlNames {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	return false
}

// MapPath gives the Windows path of a store path and whether it is a
// control file, for a store of the given kind. It is the one place the
// store layout is turned into Windows names; archive readers use it with
// the kind their source had.
//
//   - usmt-dir:  USMT/File/C$/x/y   -> C:\x\y ; USMT/catalog.mig is control
//   - usmt3-dir: USMT3/File/C$/x/y  -> C:\x\y ; USMT3/catalog.mig, MIGSTATE.DAT, status.~lg are control
//   - plain:     x/y                -> x\y (no drive: a plain tree has none)
func MapPath(kind Kind, storePath string) (win string, control bool) {
	switch kind {
	case KindUSMTDir, KindUSMT3Dir:
		top, rest, _ := strings.Cut(storePath, "/")
		if !strings.EqualFold(top, "USMT") && !strings.EqualFold(top, "USMT3") {
			return "", false
		}
		if rest != "" && !strings.Contains(rest, "/") && IsControlName(rest) {
			return "", true
		}
		file, rel, _ := strings.Cut(rest, "/")
		if !strings.EqualFold(file, "File") || rel == "" {
			return "", false
		}
		w, ok := WinPathFromUSMT(rel)
		if !ok {
			return "", false
		}
		return w, false
	default:
		return strings.ReplaceAll(storePath, "/", `\`), false
	}
}
