package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// dirStore reads a store that is a directory tree: a USMT 4+ or USMT 3
// uncompressed or hard-link store on one or several volumes, or a plain
// directory. Several roots are merged into one tree: directories are
// unions, and a file path found on more than one volume is a clash (the
// first volume's copy is used, the clash is reported).
type dirStore struct {
	fsReader
	info  Info
	roots []string

	clashMu sync.Mutex
	clashes map[string]bool // store paths found as non-directories on several volumes
}

func openDirStore(kind Kind, version, level string, input, roots []string, notes []string) (*dirStore, error) {
	s := &dirStore{roots: roots}
	s.info = Info{Kind: kind, Version: version, Level: level, Input: input, Roots: roots, Notes: notes}
	s.info.Control = s.findControl()
	s.info.MissingData = s.findMissingData()
	return s, nil
}

// findMissingData checks the File folder of a USMT layout on every volume
// holding a catalog: ScanState hides File, so a copy made by a tool that
// skips hidden items keeps catalog.mig alone; and children of File that
// are not drive folders (C$, D$, ...) map to no Windows path, so no
// listing shows them.
func (s *dirStore) findMissingData() []string {
	var usmt string
	switch s.info.Kind {
	case KindUSMTDir:
		usmt = "USMT"
	case KindUSMT3Dir:
		usmt = "USMT3"
	default:
		return nil
	}
	var out []string
	for vol := range s.roots {
		hasCatalog := false
		for _, c := range s.info.Control {
			if c.Volume == vol && c.Name == "catalog.mig" {
				hasCatalog = true
			}
		}
		fileDir := s.full(vol, usmt+"/File")
		names, err := s.readDirNames(fileDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if hasCatalog || len(s.roots) == 1 {
				out = append(out, fmt.Sprintf("File folder missing: %s does not exist (a copy that skipped hidden folders keeps catalog.mig alone)", fileDir))
			}
			continue
		case err != nil:
			out = append(out, fmt.Sprintf("File folder unreadable: %s: %v", fileDir, err))
			continue
		case len(names) == 0:
			out = append(out, fmt.Sprintf("File folder empty: %s holds no drive folder", fileDir))
			continue
		}
		sort.Strings(names)
		for _, n := range names {
			if !isDriveFolder(n) {
				out = append(out, fmt.Sprintf("not a drive folder: %s/%s is left out of the store (only drive folders such as C$ map to Windows paths)", fileDir, n))
			}
		}
	}
	return out
}

// Info implements Store. Clashes are filled as walks discover them.
func (s *dirStore) Info() *Info {
	s.clashMu.Lock()
	defer s.clashMu.Unlock()
	info := s.info
	info.Clashes = make([]string, 0, len(s.clashes))
	for p := range s.clashes {
		info.Clashes = append(info.Clashes, p)
	}
	sort.Slice(info.Clashes, func(i, j int) bool { return ComparePaths(info.Clashes[i], info.Clashes[j]) < 0 })
	return &info
}

func (s *dirStore) noteClash(p string) {
	s.clashMu.Lock()
	defer s.clashMu.Unlock()
	if s.clashes == nil {
		s.clashes = map[string]bool{}
	}
	s.clashes[p] = true
}
func (s *dirStore) Close() error { return nil }

func (s *dirStore) full(vol int, storePath string) string {
	if storePath == "" {
		return s.roots[vol]
	}
	return s.roots[vol] + "/" + storePath
}

// findControl looks for the control files where the layout puts them.
func (s *dirStore) findControl() []ControlFile {
	var dirs []string
	switch s.info.Kind {
	case KindUSMTDir:
		dirs = []string{"USMT"}
	case KindUSMT3Dir:
		dirs = []string{"USMT3"}
	default:
		return nil
	}
	var out []ControlFile
	for vol := range s.roots {
		for _, d := range dirs {
			names, err := s.readDirNames(s.full(vol, d))
			if err != nil {
				continue
			}
			sort.Strings(names)
			for _, n := range names {
				if !IsControlName(n) {
					continue
				}
				sp := d + "/" + n
				st, err := statPath(s.full(vol, sp))
				if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
					continue
				}
				out = append(out, ControlFile{Name: strings.ToLower(n), StorePath: sp, Size: int64(st.Size), Volume: vol})
			}
		}
	}
	return out
}

// statEntry builds the entry of one store path on one volume.
func (s *dirStore) statEntry(vol int, storePath string) (*Entry, error) {
	full := s.full(vol, storePath)
	st, err := statPath(full)
	if err != nil {
		return nil, err
	}
	e := &Entry{StorePath: storePath, Volume: vol}
	fillFromStatx(e, st)
	e.WinPath, e.Control = MapPath(s.info.Kind, storePath)
	if e.Control && e.Type != TypeFile {
		e.Control = false
	}
	if e.Type == TypeFile || e.Type == TypeDir {
		s.ntfsMeta(full, e.Dev, e)
	}
	if e.Type == TypeSymlink {
		if t, err := readLink(full); err == nil {
			e.LinkTarget = t
		}
	}
	return e, nil
}

// testHookAfterList lets a test change the tree between a directory's
// listing and the stat of its children, where a live store changes.
var testHookAfterList func(storePath string)

// child is one name of a merged directory: the entry found on each volume.
type child struct {
	name    string
	entries []*Entry // in volume order; only volumes where the name exists
	err     error    // stat failure on some volume
}

// listMerged lists a directory across the given volumes and stats each
// child, in name order. A volume whose listing fails gives listErr (the
// other volumes still list).
func (s *dirStore) listMerged(storePath string, vols []int) (kids []child, listErr error) {
	seen := map[string]int{}
	var names []string
	for _, v := range vols {
		ns, err := s.readDirNames(s.full(v, storePath))
		if err != nil {
			listErr = errors.Join(listErr, &PathError{Op: "listing", Path: s.full(v, storePath), Err: err})
			continue
		}
		for _, n := range ns {
			if _, ok := seen[n]; !ok {
				seen[n] = len(names)
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	if testHookAfterList != nil {
		testHookAfterList(storePath)
	}
	kids = make([]child, 0, len(names))
	for _, n := range names {
		c := child{name: n}
		sp := JoinPath(storePath, n)
		for _, v := range vols {
			e, err := s.statEntry(v, sp)
			if err != nil {
				if errors.Is(err, unix.ENOENT) && len(vols) > 1 {
					continue // absent on this volume; present on another
				}
				c.err = errors.Join(c.err, &PathError{Op: "reading", Path: s.full(v, sp), Err: describeErrno(err)})
				continue
			}
			c.entries = append(c.entries, e)
		}
		kids = append(kids, c)
	}
	return kids, listErr
}

// describeErrno turns the errnos a walk meets into errors that say what
// happened in words a technician understands.
func describeErrno(err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("vanished while the store was read: %w", fs.ErrNotExist)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("permission denied: %w", fs.ErrPermission)
	case errors.Is(err, unix.ENAMETOOLONG):
		return fmt.Errorf("name too long for this system: %w", err)
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("symlink loop: %w", err)
	}
	return err
}

// resolve merges a child's per-volume entries: the first volume wins,
// directories on several volumes are merged (their volumes returned), and
// anything else found twice is a clash.
func resolve(c child) (e *Entry, dirVols []int, clash bool) {
	if len(c.entries) == 0 {
		return nil, nil, false
	}
	e = c.entries[0]
	if e.Type == TypeDir {
		for _, x := range c.entries {
			if x.Type == TypeDir {
				dirVols = append(dirVols, x.Volume)
			} else {
				clash = true
			}
		}
		return e, dirVols, clash
	}
	return e, nil, len(c.entries) > 1
}

func (s *dirStore) allVols() []int {
	v := make([]int, len(s.roots))
	for i := range v {
		v[i] = i
	}
	return v
}

// Walk implements Store.
func (s *dirStore) Walk(ctx context.Context, fn WalkFunc) error {
	root, err := s.statEntry(0, "")
	if err != nil {
		return &PathError{Op: "reading", Path: s.roots[0], Err: describeErrno(err)}
	}
	return s.walkDir(ctx, root, s.allVols(), fn)
}

func (s *dirStore) walkDir(ctx context.Context, dir *Entry, vols []int, fn WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kids, listErr := s.listMerged(dir.StorePath, vols)
	if err := fn(dir, listErr); err != nil {
		if err == SkipDir {
			return nil
		}
		return err
	}
	for _, c := range kids {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, dirVols, clash := resolve(c)
		if e == nil {
			if err := fn(&Entry{StorePath: JoinPath(dir.StorePath, c.name)}, c.err); err != nil && err != SkipDir {
				return err
			}
			continue
		}
		if clash {
			s.noteClash(e.StorePath)
		}
		if e.Type == TypeDir {
			if c.err != nil {
				if err := fn(e, c.err); err != nil && err != SkipDir {
					return err
				}
				continue
			}
			if err := s.walkDir(ctx, e, dirVols, fn); err != nil {
				return err
			}
			continue
		}
		if err := fn(e, c.err); err != nil && err != SkipDir {
			return err
		}
	}
	return nil
}

// Stat implements Store.
func (s *dirStore) Stat(storePath string) (*Entry, error) {
	storePath, err := cleanStorePath(storePath)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for v := range s.roots {
		e, err := s.statEntry(v, storePath)
		if err == nil {
			return e, nil
		}
		if firstErr == nil || !errors.Is(err, unix.ENOENT) {
			firstErr = err
		}
	}
	return nil, &PathError{Op: "reading", Path: storePath, Err: describeErrno(firstErr)}
}

// ReadDir implements Store.
func (s *dirStore) ReadDir(storePath string) ([]Entry, error) {
	storePath, err := cleanStorePath(storePath)
	if err != nil {
		return nil, err
	}
	var vols []int
	for v := range s.roots {
		if st, err := statPath(s.full(v, storePath)); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			vols = append(vols, v)
		}
	}
	if len(vols) == 0 {
		if _, err := s.Stat(storePath); err != nil {
			return nil, err
		}
		return nil, &PathError{Op: "listing", Path: storePath, Err: errors.New("not a directory")}
	}
	kids, listErr := s.listMerged(storePath, vols)
	out := make([]Entry, 0, len(kids))
	var errs error = listErr
	for _, c := range kids {
		e, _, _ := resolve(c)
		if c.err != nil {
			errs = errors.Join(errs, c.err)
		}
		if e != nil {
			out = append(out, *e)
		}
	}
	return out, errs
}

// Open implements Store.
func (s *dirStore) Open(e *Entry) (File, error) {
	if e.Type != TypeFile {
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: errors.New("not a regular file")}
	}
	if e.Volume < 0 || e.Volume >= len(s.roots) {
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: errors.New("no such volume")}
	}
	full := s.full(e.Volume, e.StorePath)
	f, err := s.openRead(full, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) {
			err = ErrChanged // the regular file became a symlink or a FIFO/socket
		}
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: describeErrno(err)}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: err}
	}
	// The same inode number can come back for a new file (ext4 reuses
	// them), so size and mtime are compared too.
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (e.Ino != 0 && st.Ino != e.Ino) ||
		st.Size != e.Size || st.Mtim.Sec*1e9+int64(st.Mtim.Nsec) != e.MtimeNs {
		f.Close()
		return nil, &PathError{Op: "opening", Path: e.StorePath, Err: fmt.Errorf("no longer the file that was listed: %w", ErrChanged)}
	}
	return &osFile{f: f, size: st.Size}, nil
}

// osFile is an open file of a directory store.
type osFile struct {
	f    *os.File
	size int64
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error) { return o.f.ReadAt(p, off) }
func (o *osFile) Close() error                            { return o.f.Close() }
func (o *osFile) Size() int64                             { return o.size }

// Fd exposes the descriptor for FUSE passthrough and zero-copy readers.
func (o *osFile) Fd() uintptr { return o.f.Fd() }

// cleanStorePath checks that a store path is relative, clean and slash-separated.
func cleanStorePath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" || p == "." {
		return "", nil
	}
	if filepath.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
		return "", &PathError{Op: "resolving", Path: p, Err: errors.New("not a clean store path")}
	}
	return p, nil
}
