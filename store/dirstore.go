package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/internal/safeio"
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

	dirs *dirCache // folders by store path, for Stat, ReadDir and Open
}

func openDirStore(kind Kind, version, level string, input, roots []string, notes []string) (*dirStore, error) {
	s := &dirStore{roots: roots, dirs: &dirCache{}}
	s.info = Info{Kind: kind, Version: version, Level: level, Input: input, Roots: roots, Notes: notes}
	s.info.Control = s.findControl()
	s.info.MissingData = s.findMissingData()
	// A store nobody closes must not keep its folders open for good.
	runtime.AddCleanup(s, func(c *dirCache) { c.closeAll() }, s.dirs)
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
		names, err := s.listNames(vol, usmt+"/File")
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

// Close closes the folders the store keeps open.
func (s *dirStore) Close() error {
	s.dirs.closeAll()
	return nil
}

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
			cd, err := s.dirAt(vol, d)
			if err != nil {
				continue
			}
			names, err := cd.dir.Names()
			if err != nil {
				s.dirs.release(cd)
				continue
			}
			sort.Strings(names)
			for _, n := range names {
				if !IsControlName(n) {
					continue
				}
				sp := d + "/" + n
				st, err := cd.dir.Stat(n)
				if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
					continue
				}
				out = append(out, ControlFile{Name: strings.ToLower(n), StorePath: sp, Size: int64(st.Size), Volume: vol})
			}
			s.dirs.release(cd)
		}
	}
	return out
}

// dirAt returns the folder at storePath on volume vol, open and
// referenced (release it): from the cache, or opened relative to its
// parent, which is looked up the same way. A lookup below a cached
// folder costs one openat whatever the depth.
func (s *dirStore) dirAt(vol int, storePath string) (*cachedDir, error) {
	k := dirKey{vol, storePath}
	if cd := s.dirs.get(k); cd != nil {
		return cd, nil
	}
	var d *safeio.Dir
	var err error
	if kid := s.dirs.childOf(k); kid != nil {
		// Going back up: one ".." instead of a walk down from an ancestor.
		d, err = kid.dir.Parent()
		s.dirs.release(kid)
		if err == nil {
			d.SetPath(s.full(vol, storePath))
			return s.dirs.put(k, d), nil
		}
	}
	if storePath == "" {
		d, err = safeio.OpenDirPath(s.roots[vol])
	} else {
		parent, name := splitStorePath(storePath)
		var pd *cachedDir
		if pd, err = s.dirAt(vol, parent); err != nil {
			return nil, err
		}
		d, err = pd.dir.OpenDir(name)
		s.dirs.release(pd)
	}
	if err != nil {
		return nil, err
	}
	return s.dirs.put(k, d), nil
}

// listNames lists the names of a folder of one volume.
func (s *dirStore) listNames(vol int, storePath string) ([]string, error) {
	cd, err := s.dirAt(vol, storePath)
	if err != nil {
		return nil, err
	}
	defer s.dirs.release(cd)
	return cd.dir.Names()
}

// statEntry builds the entry of one store path on one volume. Errors are
// bare errnos (the caller names the path).
func (s *dirStore) statEntry(vol int, storePath string) (*Entry, error) {
	e, err := s.statEntry1(vol, storePath)
	return e, unwrapPath(err)
}

func (s *dirStore) statEntry1(vol int, storePath string) (*Entry, error) {
	if storePath == "" {
		cd, err := s.dirAt(vol, "")
		if err != nil {
			return nil, err
		}
		defer s.dirs.release(cd)
		return s.entryAt(cd.dir, "", vol, "", "")
	}
	parent, name := splitStorePath(storePath)
	cd, err := s.dirAt(vol, parent)
	if err != nil {
		return nil, err
	}
	defer s.dirs.release(cd)
	return s.entryAt(cd.dir, name, vol, storePath, "")
}

// entryAt builds the entry of name below dir ("" is dir itself), which is
// storePath on volume vol. parentWin is the Windows path of the folder
// holding it when the caller knows it ("" otherwise): the child's is then
// made by appending its name instead of converting the whole store path
// again, which kept a deep walk quadratic (MapPath of every path).
func (s *dirStore) entryAt(dir *safeio.Dir, name string, vol int, storePath, parentWin string) (*Entry, error) {
	st, err := dir.Stat(name)
	if err != nil {
		return nil, err
	}
	e := &Entry{StorePath: storePath, Volume: vol}
	fillFromStatx(e, st)
	if parentWin != "" && name != "" {
		// Below a mapped folder every name maps, and none is a control
		// file (those sit directly in USMT/, which maps to nothing).
		e.WinPath = parentWin + `\` + name
		if strings.HasSuffix(parentWin, `\`) {
			e.WinPath = parentWin + name // the drive root, "C:\"
		}
	} else {
		e.WinPath, e.Control = MapPath(s.info.Kind, storePath)
	}
	if e.Control && e.Type != TypeFile {
		e.Control = false
	}
	if e.Type == TypeFile || e.Type == TypeDir {
		s.ntfsMeta(dir, name, e.Dev, e)
	}
	if e.Type == TypeSymlink {
		if t, err := dir.Readlink(name); err == nil {
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

// listMerged lists a directory across the given volumes (dirs[i] is the
// folder on vols[i]) and stats each child relative to its folder, in name
// order. A volume whose listing fails gives listErr (the other volumes
// still list).
func (s *dirStore) listMerged(storePath, parentWin string, vols []int, dirs []*safeio.Dir) (kids []child, listErr error) {
	seen := map[string]int{}
	var names []string
	for i, v := range vols {
		ns, err := dirs[i].Names()
		if err != nil {
			listErr = errors.Join(listErr, &PathError{Op: "listing", Path: s.full(v, storePath), Err: describeErrno(unwrapPath(err))})
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
		for i, v := range vols {
			e, err := s.entryAt(dirs[i], n, v, sp, parentWin)
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

// unwrapPath drops an *os.PathError around an errno: PathError already
// names the store path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
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

// Walk implements Store. It holds each folder by descriptor while its
// children are walked and opens every child relative to it (openat), so
// no path is resolved from the root again: the cost is linear in the
// number of entries at any depth, and paths longer than PATH_MAX are
// walked like any other.
func (s *dirStore) Walk(ctx context.Context, fn WalkFunc) error {
	var vols []int
	var dirs []*safeio.Dir
	var openErr error
	for v := range s.roots {
		d, err := safeio.OpenDirPath(s.roots[v])
		if err != nil {
			openErr = errors.Join(openErr, &PathError{Op: "listing", Path: s.roots[v], Err: describeErrno(unwrapPath(err))})
			continue
		}
		vols, dirs = append(vols, v), append(dirs, d)
	}
	defer func() {
		for _, d := range dirs {
			if d != nil {
				d.Close()
			}
		}
	}()
	var root *Entry
	var err error
	if len(vols) > 0 && vols[0] == 0 {
		root, err = s.entryAt(dirs[0], "", 0, "", "")
	} else {
		var st *unix.Statx_t
		if st, err = safeio.LstatPath(s.roots[0]); err == nil {
			root = &Entry{Volume: 0}
			fillFromStatx(root, st)
			root.WinPath, _ = MapPath(s.info.Kind, "")
		}
	}
	if err != nil {
		return &PathError{Op: "reading", Path: s.roots[0], Err: describeErrno(unwrapPath(err))}
	}
	return s.walkDir(ctx, root, vols, dirs, openErr, 0, fn)
}

// maxHeldDepth bounds the folders a walk keeps open: below it, a folder's
// descriptor is closed while its subfolders are walked and reopened
// through the child's ".." afterwards (one call, checked by device and
// inode), so a tree of any depth needs a bounded number of descriptors
// and still costs linear time.
const maxHeldDepth = 128

// walkDir walks dir, whose folder on vols[i] is open as dirs[i]; openErr
// is a failure to open it on some volume. The caller owns dirs and closes
// them afterwards; walkDir may replace an element with a reopened folder.
func (s *dirStore) walkDir(ctx context.Context, dir *Entry, vols []int, dirs []*safeio.Dir, openErr error, depth int, fn WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	kids, listErr := s.listMerged(dir.StorePath, dir.WinPath, vols, dirs)
	if err := fn(dir, errors.Join(openErr, listErr)); err != nil {
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
		if e.Type != TypeDir || c.err != nil {
			if err := fn(e, c.err); err != nil && err != SkipDir {
				return err
			}
			continue
		}
		var subVols []int
		var subDirs []*safeio.Dir
		var subErr error
		for _, v := range dirVols {
			i := indexOf(vols, v)
			var d *safeio.Dir
			var err error
			if dirs[i] == nil {
				err = errors.New("its folder could not be opened again")
			} else {
				d, err = dirs[i].OpenDir(c.name)
			}
			if err != nil {
				subErr = errors.Join(subErr, &PathError{Op: "listing", Path: s.full(v, e.StorePath), Err: describeErrno(unwrapPath(err))})
				continue
			}
			subVols, subDirs = append(subVols, v), append(subDirs, d)
		}
		var held []safeio.FileID
		if depth >= maxHeldDepth && len(subDirs) > 0 {
			held = s.release(dirs)
		}
		err := s.walkDir(ctx, e, subVols, subDirs, subErr, depth+1, fn)
		if held != nil {
			s.reopen(dir.StorePath, vols, dirs, held, subVols, subDirs)
		}
		for _, d := range subDirs {
			if d != nil {
				d.Close()
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// release closes a walk's folders and returns what each one was.
func (s *dirStore) release(dirs []*safeio.Dir) []safeio.FileID {
	ids := make([]safeio.FileID, len(dirs))
	for i, d := range dirs {
		if d == nil {
			continue
		}
		ids[i], _ = d.ID()
		d.Close()
		dirs[i] = nil
	}
	return ids
}

// reopen opens the folders release closed: through the ".." of the
// subfolder just walked where it exists on that volume, else by path
// (components walked from the volume root); a folder that is no longer
// the one that was closed stays nil and its remaining subfolders are
// reported as unreadable.
func (s *dirStore) reopen(storePath string, vols []int, dirs []*safeio.Dir, ids []safeio.FileID, subVols []int, subDirs []*safeio.Dir) {
	for i, v := range vols {
		if ids[i] == (safeio.FileID{}) {
			continue
		}
		var d *safeio.Dir
		var err error
		if j := indexOf(subVols, v); j >= 0 && subDirs[j] != nil {
			d, err = subDirs[j].Parent()
		} else {
			d, err = safeio.OpenDirPath(s.full(v, storePath))
		}
		if err != nil {
			continue
		}
		if id, err := d.ID(); err != nil || id != ids[i] {
			d.Close()
			continue
		}
		dirs[i] = d
	}
}

func indexOf(xs []int, x int) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
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
	var dirs []*safeio.Dir
	var held []*cachedDir
	for v := range s.roots {
		if cd, err := s.dirAt(v, storePath); err == nil {
			vols, dirs, held = append(vols, v), append(dirs, cd.dir), append(held, cd)
		}
	}
	defer func() {
		for _, cd := range held {
			s.dirs.release(cd)
		}
	}()
	if len(vols) == 0 {
		if _, err := s.Stat(storePath); err != nil {
			return nil, err
		}
		return nil, &PathError{Op: "listing", Path: storePath, Err: errors.New("not a directory")}
	}
	kids, listErr := s.listMerged(storePath, "", vols, dirs)
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
	parent, name := splitStorePath(e.StorePath)
	cd, err := s.dirAt(e.Volume, parent)
	var f *os.File
	if err == nil {
		f, err = cd.dir.OpenFile(name)
		s.dirs.release(cd)
	}
	if err != nil {
		err = unwrapPath(err)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) {
			err = ErrChanged // the regular file became a symlink or a FIFO/socket
		}
		if errors.Is(err, unix.EACCES) && IsEFS(e) {
			return nil, &PathError{Op: "opening", Path: e.StorePath, Err: fmt.Errorf("%w: %w", errEFSNoRaw, fs.ErrPermission)}
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
	return &osFile{f: f, size: st.Size, efs: IsEFS(e)}, nil
}

// osFile is an open file of a directory store.
type osFile struct {
	f    *os.File
	size int64
	efs  bool // the file carries the NTFS encrypted attribute
}

func (o *osFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.f.ReadAt(p, off)
	if err != nil && o.efs && errors.Is(err, unix.EACCES) {
		// ntfs-3g opens an encrypted file but refuses to read it
		// without efs_raw: say why instead of a bare EACCES.
		err = fmt.Errorf("%w: %w", errEFSNoRaw, err)
	}
	return n, err
}
func (o *osFile) Close() error { return o.f.Close() }
func (o *osFile) Size() int64  { return o.size }

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
