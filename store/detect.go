package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// Detection is what Detect found at a path a user typed.
type Detection struct {
	Kind    Kind
	Version string
	Level   string // one of the Level* constants
	Input   string // the path as given
	Root    string // the StorePath directory, or the file for file kinds
	Notes   []string
	MIG     *MIGInfo // KindMIG only
	Members []Member // KindSMP only
	// Warnings are problems with a share copy as a whole (an SMPSTORE
	// folder holding no store); each makes info and verify exit 3.
	Warnings []string
	// Archive-like kinds registered by other packages.
	fileKind *FileKind
}

// Member is one store found in a share copy (docs/cli.md, info --json
// "stores"; the keys are part of the contract).
type Member struct {
	Share string `json:"share"` // the SMPSTORE folder name; "" for a store directly under the folder given
	ID    string `json:"id"`    // the store's folder name (a 64-hex id on a real state migration point)
	Path  string `json:"path"`  // the store's folder (the StorePath)
	// Input is the path to give usmtkit to read this store: Path, or the
	// USMT.MIG inside it when the copy holds a bare MIG.
	Input     string `json:"input"`
	Kind      Kind   `json:"kind,omitempty"`
	Size      int64  `json:"size"` // bytes on disk (the MIG file, or the sum of the files; 0 when not measured)
	Encrypted bool   `json:"encrypted"`
	Err       string `json:"error,omitempty"` // why it could not be examined, if so
}

// Detect identifies the store at path, accepting any level a user is
// likely to type: the StorePath, StorePath/USMT, .../USMT/File, a drive
// folder, the USMT.MIG file, an SMP share copy, a usmtkit archive, or a
// plain directory. Nothing is opened for writing.
func Detect(path string) (*Detection, error) {
	return DetectWith(path, DetectOptions{})
}

// DetectPlain is Detect, but a directory without a USMT layout is opened
// as a plain tree even when a store lies one level below it.
func DetectPlain(path string) (*Detection, error) {
	return DetectWith(path, DetectOptions{Plain: true})
}

// DetectOptions change what Detect does.
type DetectOptions struct {
	// Plain: a directory without a USMT layout is a plain tree even when
	// a store lies one level below it.
	Plain bool
	// NoSizes: the folder stores of a share copy are not walked to sum
	// their sizes (Member.Size stays 0); for callers that walk them anyway.
	NoSizes bool
}

// DetectWith is Detect with options.
func DetectWith(path string, opt DetectOptions) (*Detection, error) {
	plainOK := opt.Plain
	if path == "" {
		return nil, fmt.Errorf("%w: empty path", ErrNoStore)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s: the path does not exist; check the drive is mounted and the spelling", ErrNoStore, path)
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot look at %s: permission denied; run as a user who can read it (or as root)", path)
		}
		return nil, fmt.Errorf("looking at %s: %w", path, err)
	}
	d := &Detection{Input: path}
	if fi.Mode().IsRegular() {
		return detectFile(d, abs, fi.Size())
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w at %s: it is neither a file nor a folder", ErrNoStore, path)
	}
	if ok := detectUSMTDir(d, abs); ok {
		return d, nil
	}
	if ok, err := detectSMP(d, abs, !opt.NoSizes); ok || err != nil {
		return d, err
	}
	if !plainOK {
		if hint := storeBelow(abs); hint != "" {
			return nil, fmt.Errorf("%w at %s itself, but %s holds one: run the command on that folder (or pass --plain to read this folder as a plain tree)", ErrNoStore, path, hint)
		}
	}
	if usmt2 := childFold(abs, "USMT2.UNC"); usmt2 != "" {
		return nil, fmt.Errorf("%s holds a USMT 2 / Files and Settings Transfer Wizard store (%s): %w; copy its files with a plain tool or restore it on Windows XP-era tooling", path, usmt2, ErrUnsupported)
	}
	d.Kind, d.Level, d.Root = KindPlain, LevelDirectory, abs
	return d, nil
}

// detectFile identifies a single-file store.
func detectFile(d *Detection, abs string, size int64) (*Detection, error) {
	head, err := readHead(abs, 4096)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.Input, err)
	}
	if IsMIGSignature(head) {
		info, err := WalkMIG(abs)
		if err != nil {
			return nil, err
		}
		d.Kind, d.Level, d.Root, d.MIG = KindMIG, LevelMIGFile, abs, info
		d.Version = "USMT 4+"
		if strings.EqualFold(filepath.Base(abs), "USMT3.MIG") {
			d.Version = "USMT 3"
		}
		return d, nil
	}
	for _, k := range registeredFileKinds() {
		if k.Sniff(head, size) {
			k := k
			d.Kind, d.Level, d.Root, d.fileKind = k.Kind, LevelArchive, abs, &k
			return d, nil
		}
	}
	base := filepath.Base(abs)
	if IsControlName(base) {
		dir := filepath.Dir(abs)
		if detectUSMTDir(d, dir) {
			d.Notes = append(d.Notes, fmt.Sprintf("%s is a store control file; opened the store it belongs to", base))
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w at %s: it is a file, but not a USMT.MIG or a usmtkit archive", ErrNoStore, d.Input)
}

// detectUSMTDir recognises the USMT 4+ and USMT 3 layouts at any level.
func detectUSMTDir(d *Detection, abs string) bool {
	try := func(storePath, level string) bool {
		for _, v := range []struct {
			folder, mig, version string
			kind                 Kind
		}{{"USMT", "USMT.MIG", "USMT 4+", KindUSMTDir}, {"USMT3", "USMT3.MIG", "USMT 3", KindUSMT3Dir}} {
			folder := childFold(storePath, v.folder)
			if folder == "" {
				continue
			}
			hasTree := childFold(folder, "File") != "" || childFold(folder, "catalog.mig") != ""
			if mig := childFold(folder, v.mig); mig != "" && !hasTree {
				info, err := WalkMIG(mig)
				if err != nil {
					continue
				}
				d.Kind, d.Version, d.Level, d.Root, d.MIG = KindMIG, v.version, level, mig, info
				d.Notes = append(d.Notes, "compressed store: "+mig)
				return true
			}
			if hasTree {
				d.Kind, d.Version, d.Level, d.Root = v.kind, v.version, level, storePath
				return true
			}
		}
		return false
	}
	base := filepath.Base(abs)
	parent := filepath.Dir(abs)
	switch {
	case try(abs, LevelStorePath):
	case (strings.EqualFold(base, "USMT") || strings.EqualFold(base, "USMT3")) && try(parent, LevelUSMTFolder):
	case strings.EqualFold(base, "File") && isUSMTName(filepath.Base(parent)) && try(filepath.Dir(parent), LevelFileFolder):
	case isDriveFolder(base) && strings.EqualFold(filepath.Base(parent), "File") &&
		isUSMTName(filepath.Base(filepath.Dir(parent))) && try(filepath.Dir(filepath.Dir(parent)), LevelDriveFolder):
	default:
		return false
	}
	if d.Level != LevelStorePath {
		d.Notes = append(d.Notes, fmt.Sprintf("%s is the %s of a store; opened the whole store at %s", d.Input, levelWords(d.Level), d.Root))
	}
	return true
}

func isUSMTName(s string) bool { return strings.EqualFold(s, "USMT") || strings.EqualFold(s, "USMT3") }

func levelWords(level string) string {
	switch level {
	case LevelUSMTFolder:
		return "USMT folder"
	case LevelFileFolder:
		return "File folder"
	case LevelDriveFolder:
		return "drive folder"
	}
	return level
}

// childFold finds a child of dir by case-insensitive name (stores come
// from Windows, and copies keep whatever case the copier chose).
func childFold(dir, name string) string {
	p := filepath.Join(dir, name)
	if _, err := os.Lstat(p); err == nil {
		return p
	}
	ents, err := safeio.ListDirPath(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name, name) {
			return filepath.Join(dir, e.Name)
		}
	}
	return ""
}

func readHead(path string, n int) ([]byte, error) {
	r := &fsReader{}
	f, err := r.openRead(path, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	m, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return buf[:m], nil
}

// storeBelow returns the first child folder that is itself a store, so a
// path one level too high gets a helpful hint instead of a plain listing.
func storeBelow(abs string) string {
	ents, err := safeio.ListDirPath(abs)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(abs, e.Name)
		var d Detection
		if detectUSMTDir(&d, p) && d.Level == LevelStorePath {
			return p
		}
	}
	return ""
}

// isStoreID reports whether name is a 64-hex SMP store id (the naming of
// the one public example, docs/stores.md; not required of a member).
func isStoreID(name string) bool {
	if len(name) != 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isShareFolderName(name string) bool {
	return strings.HasPrefix(strings.ToUpper(name), "SMPSTORE")
}

// memberAt tells whether dir is a store at one of the depths a share copy
// can hold one (docs/stores.md, "Share copies"): dir holds USMT/ or USMT3/
// with File or catalog.mig, or USMT/USMT.MIG (USMT3/USMT3.MIG), or a bare
// USMT.MIG / USMT3.MIG (a copy that flattened the USMT folder). found is
// false when none of them is there; m.Err is set when one is there but
// cannot be read (a MIG without its signature).
func memberAt(share, dir string, measure bool) (m Member, found bool) {
	m = Member{Share: share, ID: filepath.Base(dir), Path: dir, Input: dir}
	var md Detection
	md.Input = dir
	switch {
	case detectUSMTDir(&md, dir) && md.Level == LevelStorePath:
		m.Kind = md.Kind
		if md.MIG != nil {
			m.Size, m.Encrypted = md.MIG.Size, md.MIG.Encrypted
			return m, true
		}
		if measure {
			m.Size = treeSize(dir)
		}
		return m, true
	}
	// A USMT folder whose MIG is not readable, or a bare MIG.
	for _, v := range []struct{ folder, mig string }{{"USMT", "USMT.MIG"}, {"USMT3", "USMT3.MIG"}, {"", "USMT.MIG"}, {"", "USMT3.MIG"}} {
		base := dir
		if v.folder != "" {
			if base = childFold(dir, v.folder); base == "" {
				continue
			}
		}
		mig := childFold(base, v.mig)
		if mig == "" {
			continue
		}
		if fi, err := os.Stat(mig); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		m.Kind = KindMIG
		if v.folder == "" {
			m.Input = mig // the folder alone is no store: give the file
		}
		info, err := WalkMIG(mig)
		if err != nil {
			m.Err = err.Error()
			return m, true
		}
		m.Size, m.Encrypted = info.Size, info.Encrypted
		return m, true
	}
	return m, false
}

// treeSize sums the regular files under dir (bytes on disk as listed).
// Folders are opened relative to their parent (safeio), symlinks never
// followed.
func treeSize(dir string) int64 {
	d, err := safeio.OpenDirPath(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	return dirSize(d)
}

func dirSize(d *safeio.Dir) int64 {
	var n int64
	var subs []string
	_ = d.ReadDirents(func(e safeio.Dirent) error {
		switch e.Type {
		case unix.DT_DIR:
			subs = append(subs, e.Name)
		case unix.DT_REG, unix.DT_UNKNOWN:
			if st, err := d.Stat(e.Name); err == nil {
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFREG:
					n += int64(st.Size)
				case unix.S_IFDIR:
					subs = append(subs, e.Name)
				}
			}
		}
		return nil
	})
	for _, name := range subs {
		if c, err := d.OpenDir(name); err == nil {
			n += dirSize(c)
			c.Close()
		}
	}
	return n
}

// detectSMP recognises a copy of a state migration point share, or any
// folder of store copies (docs/stores.md, "Share copies"):
//   - a folder holding SMPSTORE* folders, each holding store folders;
//   - one SMPSTORE* folder;
//   - a folder holding store folders directly: two or more, or one named
//     as a 64-hex store id or holding a bare USMT.MIG. A single store
//     folder under any other name is a path given one level too high, and
//     is left to storeBelow's hint.
//
// Store folders may have any name. Inside an SMPSTORE folder a child folder
// holding no store is listed as a member with its error; an SMPSTORE
// folder holding no store at all is a warning. Both make info and verify
// exit 3. Folders at the top holding no store are named in a note.
func detectSMP(d *Detection, abs string, measure bool) (bool, error) {
	ents, err := safeio.ListDirPath(abs)
	if err != nil {
		return false, nil
	}
	var shares []string
	var direct []Member
	var others []string
	hexOrBare := false
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p := filepath.Join(abs, e.Name)
		if isShareFolderName(e.Name) {
			shares = append(shares, p)
			continue
		}
		m, ok := memberAt("", p, measure)
		if !ok {
			others = append(others, e.Name)
			continue
		}
		if isStoreID(e.Name) || m.Input != m.Path {
			hexOrBare = true
		}
		direct = append(direct, m)
	}
	self := isShareFolderName(filepath.Base(abs))
	switch {
	case self && len(shares) == 0:
		// One SMPSTORE folder given: its children are the members.
		d.Kind, d.Level, d.Root = KindSMP, LevelShare, abs
		direct = nil
		shares = []string{abs}
		others = nil
	case len(shares) > 0, len(direct) > 1, len(direct) == 1 && hexOrBare:
		d.Kind, d.Level, d.Root = KindSMP, LevelShare, abs
	default:
		return false, nil
	}
	d.Members = append(d.Members, direct...)
	for _, sh := range shares {
		name := filepath.Base(sh)
		kids, err := safeio.ListDirPath(sh)
		if err != nil {
			d.Members = append(d.Members, Member{Share: name, Path: sh, Input: sh, Err: err.Error()})
			continue
		}
		found := 0
		for _, k := range kids {
			if !k.IsDir() {
				continue
			}
			m, ok := memberAt(name, filepath.Join(sh, k.Name), measure)
			if !ok {
				m.Err = "no USMT store inside (no USMT/ or USMT3/ with File or catalog.mig, no USMT.MIG): an incomplete copy?"
			} else {
				found++
			}
			d.Members = append(d.Members, m)
		}
		if found == 0 {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s holds no store (no folder with USMT/, USMT3/ or a USMT.MIG): the copy of this share may be incomplete", sh))
		}
	}
	sort.SliceStable(d.Members, func(i, j int) bool {
		a, b := d.Members[i], d.Members[j]
		if a.Share != b.Share {
			return a.Share < b.Share
		}
		return a.ID < b.ID
	})
	if len(others) > 0 {
		sort.Strings(others)
		list := others
		if len(list) > 10 {
			list = list[:10]
		}
		more := ""
		if len(others) > len(list) {
			more = fmt.Sprintf(" and %d more", len(others)-len(list))
		}
		d.Notes = append(d.Notes, fmt.Sprintf("%d folder(s) of %s hold no store and were left out: %s%s", len(others), abs, strings.Join(list, ", "), more))
	}
	return true, nil
}

// Problems lists what makes a share listing partial: its warnings and the
// members that could not be examined. Empty for other kinds.
func (d *Detection) Problems() []string {
	p := append([]string{}, d.Warnings...)
	for _, m := range d.Members {
		if m.Err != "" {
			p = append(p, m.Path+": "+m.Err)
		}
	}
	return p
}

// Open detects and opens a store. Several paths are opened together as one
// multi-volume store (the same store path on several volumes); they must
// all be directory stores of the same kind.
func Open(paths ...string) (Store, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("%w: no path given", ErrNoStore)
	}
	var ds []*Detection
	for _, p := range paths {
		d, err := Detect(p)
		if err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	return OpenDetected(ds)
}

// OpenDetected opens what Detect found.
func OpenDetected(ds []*Detection) (Store, error) {
	d := ds[0]
	switch d.Kind {
	case KindSMP:
		return nil, fmt.Errorf("%w: %s is a copy of a state migration point share holding %d stores; run `usmtkit info %s` to list them, then pass one store's folder", ErrNoStore, d.Input, len(d.Members), d.Input)
	case KindMIG:
		return nil, d.MIG.openError(d.Root)
	}
	if d.fileKind != nil {
		if len(ds) > 1 {
			return nil, fmt.Errorf("%s is a single-file store: open it alone, not with other paths", d.Input)
		}
		return d.fileKind.Open(d.Root)
	}
	var roots, inputs, notes []string
	seen := map[string]bool{}
	for _, x := range ds {
		if x.Kind != d.Kind {
			return nil, fmt.Errorf("%s is a %s store but %s is a %s store: only volumes of one store can be opened together", d.Input, d.Kind, x.Input, x.Kind)
		}
		real, err := filepath.EvalSymlinks(x.Root)
		if err != nil {
			real = x.Root
		}
		if seen[real] {
			return nil, fmt.Errorf("%s was given twice (as %s)", x.Root, x.Input)
		}
		seen[real] = true
		roots = append(roots, x.Root)
		inputs = append(inputs, x.Input)
		notes = append(notes, x.Notes...)
	}
	if len(roots) > 1 {
		notes = append(notes, fmt.Sprintf("%d volumes merged into one store", len(roots)))
	}
	s, err := openDirStore(d.Kind, d.Version, d.Level, inputs, roots, notes)
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		if m, bad := AccessTimeHazard(r); bad {
			s.info.Warnings = append(s.info.Warnings, HazardNote(m))
		}
	}
	return s, nil
}
