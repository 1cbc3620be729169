package extract

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// enter makes the writer's current folder DEST/comps..., creating folders
// as needed. metas[i] (may be nil) is the store folder comps[i] came from.
// winPaths[i] is its Windows path, for messages.
func (w *writer) enter(comps []string, metas []*store.Entry, winPaths []string) (*wdir, error) {
	// Keep the common prefix of the stack.
	keep := 1
	for keep < len(w.stack) && keep-1 < len(comps) && w.stack[keep].orig == comps[keep-1] {
		keep++
	}
	for len(w.stack) > keep {
		w.pop()
	}
	for i := keep - 1; i < len(comps); i++ {
		parent := w.stack[len(w.stack)-1]
		name, err := w.outName(parent, comps[i], winPaths[i], true)
		if err != nil {
			return nil, err
		}
		rel := joinRel(parent.rel, name)
		created := true
		if err := unix.Mkdirat(parent.fd, name, 0o755); err != nil {
			if !errors.Is(err, unix.EEXIST) {
				if isFatalWriteErr(err) {
					return nil, &fatalError{fmt.Errorf("creating folder %s/%s: %w", w.dest, rel, err)}
				}
				return nil, problem("failed", "%s: cannot create folder %s/%s: %v", winPaths[i], w.dest, rel, err)
			}
			created = false
		}
		fd, err := retryEINTR(func() (int, error) {
			return unix.Openat(parent.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return nil, problem("conflict", "%s: %s/%s already exists and is not a folder (a file or a symlink): nothing is written through it; move it away and rerun", winPaths[i], w.dest, rel)
			}
			return nil, problem("failed", "%s: cannot open folder %s/%s: %v", winPaths[i], w.dest, rel, err)
		}
		if created {
			w.res.Dirs++
		} else if !w.seen[rel] {
			// Only once per folder: the temporary files of this run (pending
			// or in flight) are not stale.
			w.cleanStale(fd, rel)
		}
		if w.seen == nil {
			w.seen = map[string]bool{}
		}
		w.seen[rel] = true
		w.stack = append(w.stack, &wdir{orig: comps[i], name: name, rel: rel, fd: fd, meta: metas[i]})
	}
	// A folder entered again (resumed run) still gets its metadata.
	top := w.stack[len(w.stack)-1]
	if len(comps) > 0 && top.meta == nil {
		top.meta = metas[len(metas)-1]
	}
	return top, nil
}

// isTmpName reports whether a name is one of our temporary files.
func isTmpName(n string) bool {
	i := strings.LastIndex(n, tmpMarker)
	if !strings.HasPrefix(n, ".") || i < 0 || len(n)-i-len(tmpMarker) != 8 {
		return false
	}
	for _, c := range []byte(n[i+len(tmpMarker):]) {
		if !isHex(c) {
			return false
		}
	}
	return true
}

// cleanStale removes temporary files a killed run left in a folder that
// already existed. It is safe because the lock in DEST keeps a second
// extract out.
func (w *writer) cleanStale(fd int, rel string) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(dup), w.dest+"/"+rel)
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if !isTmpName(n) {
			continue
		}
		var st unix.Stat_t
		if unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if unix.Unlinkat(fd, n, 0) == nil {
			w.res.StaleTempsRemoved++
		}
	}
}

func tmpNameFor(name string) string {
	base := name
	if len(base) > 200 {
		cut := 200
		for cut > 0 && base[cut]&0xC0 == 0x80 {
			cut-- // do not split a UTF-8 sequence
		}
		base = base[:cut]
	}
	return fmt.Sprintf(".%s%s%08x", base, tmpMarker, rand.Uint32())
}

func splitRel(rel string) (dir, base string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// openRelDir opens a folder below DEST one component at a time, never
// following a symlink.
func (w *writer) openRelDir(rel string) (int, error) {
	fd, err := unix.Dup(w.stack[0].fd)
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return fd, nil
	}
	for _, c := range strings.Split(rel, "/") {
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = nfd
	}
	return fd, nil
}
