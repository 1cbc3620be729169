package compress

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"strings"

	"github.com/usmtkit/usmtkit/store"
)

// entry builds the store entry of TOC entry i at path p, filled as the
// source store had it.
func (a *Archive) entry(i uint32, p string) store.Entry {
	t := a.t
	r := t.rec(i)
	le := binary.LittleEndian
	e := store.Entry{
		StorePath: p,
		Mode:      le.Uint32(r[eMode:]),
		Size:      int64(le.Uint64(r[eSize:])),
		MtimeNs:   int64(le.Uint64(r[eMtime:])),
		AtimeNs:   int64(le.Uint64(r[eAtime:])),
		CtimeNs:   int64(le.Uint64(r[eCtime:])),
		Nlink:     1,
		Ino:       uint64(i) + 2,
	}
	fl := r[eFlags]
	if fl&entHasBtime != 0 {
		e.BtimeNs, e.HasBtime = int64(le.Uint64(r[eBtime:])), true
	}
	if fl&entHasAttrs != 0 {
		e.WinAttrs, e.HasWinAttr = le.Uint32(r[eWinAttrs:]), true
	}
	switch r[eType] {
	case tocDir:
		e.Type = store.TypeDir
	case tocSymlink:
		e.Type = store.TypeSymlink
		e.LinkTarget = string(t.symlinkTarget(i))
	default:
		e.Type = store.TypeFile
		g := t.linkTarget(i)
		e.Ino = uint64(g) + 2
		e.LinkID = uint64(g) + 2
		if n := t.nlink[g]; n > 0 {
			e.Nlink = n
		}
	}
	e.WinPath, e.Control = store.MapPath(t.kind, p)
	if e.Control && e.Type != store.TypeFile {
		e.Control = false
	}
	return e
}

// pathOf rebuilds the store path of an entry from its parents.
func (a *Archive) pathOf(i uint32) string {
	var parts []string
	for i != 0 {
		parts = append(parts, string(a.t.name(i)))
		i = a.t.parent(i)
	}
	for l, r := 0, len(parts)-1; l < r; l, r = l+1, r-1 {
		parts[l], parts[r] = parts[r], parts[l]
	}
	return strings.Join(parts, "/")
}

// lookup finds the entry of a store path.
func (a *Archive) lookup(op, storePath string) (uint32, error) {
	p := strings.Trim(storePath, "/")
	if p == "" {
		return 0, nil
	}
	// Walks and mounts look up names in or below the folder they just
	// looked at: start there instead of at the root, so a lookup costs
	// one binary search per new component, not one per component of the
	// path (a 4,096-deep tree took time quadratic in depth).
	// A folder above it is reached through the TOC's parent links (a
	// mount reopens every parent on the way back up).
	cur, rest, base := uint32(0), p, 0
	m := a.lastDir.Load()
	switch {
	case m == nil:
	case p == m.path:
		return m.idx, nil
	case len(p) > len(m.path) && p[len(m.path)] == '/' && p[:len(m.path)] == m.path:
		cur, rest, base = m.idx, p[len(m.path)+1:], len(m.path)+1
	case len(p) < len(m.path) && m.path[len(p)] == '/' && m.path[:len(p)] == p:
		i := m.idx
		for up := strings.Count(m.path[len(p):], "/"); up > 0; up-- {
			i = a.t.parent(i)
		}
		a.lastDir.Store(&dirMemo{path: p, idx: i})
		return i, nil
	}
	parent, parentEnd := cur, base-1
	for off := 0; ; {
		comp := rest[off:]
		i := strings.IndexByte(comp, '/')
		if i >= 0 {
			comp = comp[:i]
		}
		if a.t.typ(cur) != tocDir {
			return 0, &store.PathError{Op: op, Path: storePath, Err: fs.ErrNotExist}
		}
		next, ok := a.t.lookupChild(cur, comp)
		if !ok {
			return 0, &store.PathError{Op: op, Path: storePath, Err: fs.ErrNotExist}
		}
		parent, parentEnd, cur = cur, base+off-1, next
		if i < 0 {
			break
		}
		off += i + 1
	}
	if a.t.typ(cur) == tocDir {
		a.lastDir.Store(&dirMemo{path: p, idx: cur})
	} else if parentEnd > 0 {
		a.lastDir.Store(&dirMemo{path: p[:parentEnd], idx: parent})
	}
	return cur, nil
}

// dirMemo is a folder of the TOC and its store path.
type dirMemo struct {
	path string
	idx  uint32
}

// Stat implements store.Store.
func (a *Archive) Stat(storePath string) (*store.Entry, error) {
	i, err := a.lookup("looking up", storePath)
	if err != nil {
		return nil, err
	}
	e := a.entry(i, strings.Trim(storePath, "/"))
	return &e, nil
}

// ReadDir implements store.Store.
func (a *Archive) ReadDir(storePath string) ([]store.Entry, error) {
	i, err := a.lookup("listing", storePath)
	if err != nil {
		return nil, err
	}
	if a.t.typ(i) != tocDir {
		return nil, &store.PathError{Op: "listing", Path: storePath, Err: errors.New("not a directory")}
	}
	dir := strings.Trim(storePath, "/")
	lo, hi := a.t.children(i)
	out := make([]store.Entry, 0, hi-lo)
	for c := lo; c < hi; c++ {
		out = append(out, a.entry(c, store.JoinPath(dir, string(a.t.name(c)))))
	}
	return out, nil
}

// Walk implements store.Store: depth-first pre-order with children sorted
// bytewise, which is store.ComparePaths order.
func (a *Archive) Walk(ctx context.Context, fn store.WalkFunc) error {
	root := a.entry(0, "")
	if err := fn(&root, nil); err != nil {
		if errors.Is(err, store.SkipDir) {
			return nil
		}
		return err
	}
	type level struct {
		path     string
		next, hi uint32
	}
	lo, hi := a.t.children(0)
	stack := []level{{"", lo, hi}}
	for n := 0; len(stack) > 0; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		top := &stack[len(stack)-1]
		if top.next == top.hi {
			stack = stack[:len(stack)-1]
			continue
		}
		i := top.next
		top.next++
		p := store.JoinPath(top.path, string(a.t.name(i)))
		e := a.entry(i, p)
		err := fn(&e, nil)
		if err != nil && !errors.Is(err, store.SkipDir) {
			return err
		}
		if err == nil && e.Type == store.TypeDir {
			lo, hi := a.t.children(i)
			if lo < hi {
				stack = append(stack, level{p, lo, hi})
			}
		}
	}
	return nil
}
