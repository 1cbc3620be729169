package hardlinkscan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

// LiveRoot maps a drive letter of the captured machine onto the directory
// where that volume is mounted now (C -> /mnt/c). For a plain directory
// store Drive is "" and the store's relative paths are mapped onto Path.
type LiveRoot struct {
	Drive string `json:"drive,omitempty"`
	Path  string `json:"path"`
}

// ParseLive turns --live arguments into live roots. An argument is either
// DRIVE=PATH (C=/mnt/c, d:=/mnt/d) or a bare PATH, which means C: — or the
// only drive the store has, when it has exactly one. drives are the drive
// letters the store holds (StoreDrives); plain is true for stores without
// drive folders, which take exactly one bare PATH.
func ParseLive(args []string, drives []string, plain bool) ([]LiveRoot, error) {
	var out []LiveRoot
	seen := map[string]string{}
	for _, a := range args {
		drive, path := "", a
		if i := strings.IndexByte(a, '='); i > 0 {
			d := strings.TrimSuffix(a[:i], ":")
			if len(d) == 1 && isLetter(d[0]) {
				drive, path = strings.ToUpper(d), a[i+1:]
			}
		}
		if path == "" {
			return nil, fmt.Errorf("--live %q names no folder; give the folder the volume is mounted at, like --live C=/mnt/c", a)
		}
		if plain {
			if drive != "" {
				return nil, fmt.Errorf("--live %s: this store is a plain folder without drive letters; give one folder without a letter, like --live /mnt/c/Users", a)
			}
		} else if drive == "" {
			drive = "C"
			if len(drives) == 1 {
				drive = drives[0]
			}
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("--live %s: %w", a, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("--live %s: %v; mount the volume (ntfs-3g -o ro DEVICE %s) and try again", a, errors.Unwrap(err), abs)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("--live %s: not a folder; give the folder the volume is mounted at", a)
		}
		if prev, dup := seen[drive]; dup {
			if plain {
				return nil, fmt.Errorf("--live given twice (%s and %s); a plain folder maps onto one live folder", prev, a)
			}
			return nil, fmt.Errorf("--live for drive %s: given twice (%s and %s); give one --live per drive", drive, prev, a)
		}
		seen[drive] = a
		out = append(out, LiveRoot{Drive: drive, Path: filepath.Clean(abs)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Drive < out[j].Drive })
	return out, nil
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }

// StoreDrives lists the drive letters a USMT store holds (its
// USMT/File/<X>$ folders), upper-case and sorted.
func StoreDrives(s store.Store) []string {
	seen := map[string]bool{}
	for _, top := range []string{"USMT/File", "USMT3/File"} {
		sp, err := store.ResolveWinPath(s, top)
		if err != nil {
			continue
		}
		kids, _ := s.ReadDir(sp)
		for i := range kids {
			n := kids[i].Name()
			if kids[i].Type == store.TypeDir && len(n) == 2 && n[1] == '$' && isLetter(n[0]) {
				seen[strings.ToUpper(n[:1])] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// liveRel returns the path of a store file relative to its live root and
// the drive it belongs to, taken from the store path itself (not from the
// WinPath) so names keep their exact bytes. ok is false when the entry has
// no place on a live volume (control files, files outside USMT/File).
func liveRel(kind store.Kind, sp string) (drive, rel string, ok bool) {
	switch kind {
	case store.KindUSMTDir, store.KindUSMT3Dir:
		parts := strings.SplitN(sp, "/", 4)
		if len(parts) != 4 || !strings.EqualFold(parts[1], "File") {
			return "", "", false
		}
		d := parts[2]
		if len(d) != 2 || d[1] != '$' || !isLetter(d[0]) {
			return "", "", false
		}
		return strings.ToUpper(d[:1]), parts[3], true
	default:
		return "", sp, sp != ""
	}
}

// lstatLive looks the live path up without following symlinks: exactly
// first, then component by component case-insensitively, because Windows
// names are case-insensitive and a store keeps the case seen at capture.
// It returns the path found (which may differ in case from root/rel).
// The component walk holds each folder by descriptor (safeio), so no
// symlink below root is followed and depth costs nothing extra.
func lstatLive(root, rel string) (string, *unix.Stat_t, error) {
	p := root + "/" + rel
	var st unix.Stat_t
	// root has its symlinks resolved (Scan); nothing below it is followed.
	sp, err := safeio.LstatNoSymlinks(p)
	switch {
	case err == nil:
		return p, sp, nil
	case errors.Is(err, unix.ELOOP):
		return p, nil, unix.ENOTDIR // a symlink where a folder was: not followed
	case errors.Is(err, unix.ENOSYS):
		// No openat2 (Linux < 5.6): the component walk below decides.
	case !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENAMETOOLONG):
		return p, nil, err
	}
	d, err := safeio.OpenDirPath(root)
	if err != nil {
		return p, nil, err
	}
	defer func() { d.Close() }()
	cur := root
	comps := strings.Split(rel, "/")
	for i, comp := range comps {
		name := comp
		if _, err := d.Stat(comp); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				return p, nil, err
			}
			names, err := d.Names()
			if err != nil {
				return p, nil, unix.ENOENT
			}
			name = ""
			for _, n := range names {
				if strings.EqualFold(n, comp) {
					if name != "" {
						return p, nil, unix.ENOENT // ambiguous: two names differ only in case
					}
					name = n
				}
			}
			if name == "" {
				return p, nil, unix.ENOENT
			}
		}
		cur = cur + "/" + name
		if i == len(comps)-1 {
			if err := unix.Fstatat(d.Fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return p, nil, err
			}
			return cur, &st, nil
		}
		next, err := d.OpenDir(name)
		if err != nil {
			if errors.Is(err, unix.ELOOP) {
				err = unix.ENOTDIR // a symlink where a folder was: not followed
			}
			return p, nil, err
		}
		d.Close()
		d = next
	}
	return p, nil, unix.ENOENT
}
