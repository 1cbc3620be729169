package store

import (
	"container/list"
	"strings"
	"sync"

	"github.com/usmtkit/usmtkit/internal/safeio"
)

// dirCache keeps the most recently used folders of a directory store open
// so Stat, ReadDir and Open by store path (the mount, ls, extract's
// lookups) resolve a name against its parent's descriptor instead of
// walking the whole path again: a lookup below a folder just listed costs
// one call at any depth. It is bounded (maxCachedDirs descriptors) and a
// descriptor in use is never closed under its user.
//
// A cached folder is the folder that was at its path when it was opened:
// a folder renamed or replaced afterwards keeps answering from the old
// one until it leaves the cache. Stores are read, not changed while read;
// a store that does change shows its changes as ENOENT and ErrChanged the
// same way as before.
type dirCache struct {
	mu  sync.Mutex
	m   map[dirKey]*cachedDir
	lru *list.List // front: most recent; values *cachedDir
}

const maxCachedDirs = 64

type dirKey struct {
	vol  int
	path string // store path; "" is the volume root
}

type cachedDir struct {
	dir     *safeio.Dir
	key     dirKey
	refs    int
	elem    *list.Element // nil once evicted
	evicted bool
}

func (c *dirCache) get(k dirKey) *cachedDir {
	c.mu.Lock()
	defer c.mu.Unlock()
	cd := c.m[k]
	if cd == nil {
		return nil
	}
	cd.refs++
	c.lru.MoveToFront(cd.elem)
	return cd
}

// put adds a folder just opened and returns it referenced; when another
// caller added the same key meanwhile, d is closed and theirs returned.
func (c *dirCache) put(k dirKey, d *safeio.Dir) *cachedDir {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[dirKey]*cachedDir{}
		c.lru = list.New()
	}
	if cd := c.m[k]; cd != nil {
		d.Close()
		cd.refs++
		c.lru.MoveToFront(cd.elem)
		return cd
	}
	cd := &cachedDir{dir: d, key: k, refs: 1}
	cd.elem = c.lru.PushFront(cd)
	c.m[k] = cd
	for el := c.lru.Back(); el != nil && c.lru.Len() > maxCachedDirs; {
		prev := el.Prev()
		old := el.Value.(*cachedDir)
		c.lru.Remove(el)
		delete(c.m, old.key)
		old.evicted = true
		if old.refs == 0 {
			old.dir.Close()
		}
		el = prev
	}
	return cd
}

func (c *dirCache) release(cd *cachedDir) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cd.refs--
	if cd.refs == 0 && cd.evicted {
		cd.dir.Close()
	}
}

// closeAll closes every cached folder not in use (the store is closing).
func (c *dirCache) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cd := range c.m {
		delete(c.m, k)
		cd.evicted = true
		if cd.refs == 0 {
			cd.dir.Close()
		}
	}
	if c.lru != nil {
		c.lru.Init()
	}
}

// splitStorePath splits a non-empty store path into its folder and name.
func splitStorePath(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}
