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
	// kids indexes the cached folders by their parent's key, so a folder
	// that left the cache can be reopened through the ".." of a cached
	// child (a walk going back up: find on a mount reopens every parent).
	kids map[dirKey]map[*cachedDir]bool
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

// childOf returns a cached folder directly below k, referenced, or nil.
func (c *dirCache) childOf(k dirKey) *cachedDir {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cd := range c.kids[k] {
		cd.refs++
		c.lru.MoveToFront(cd.elem)
		return cd
	}
	return nil
}

// parentKey is the key of the folder holding k (k.path != "").
func parentKey(k dirKey) dirKey {
	p, _ := splitStorePath(k.path)
	return dirKey{k.vol, p}
}

// forget removes an entry from the map and the parent index (mu held).
func (c *dirCache) forget(cd *cachedDir) {
	delete(c.m, cd.key)
	if cd.key.path != "" {
		pk := parentKey(cd.key)
		delete(c.kids[pk], cd)
		if len(c.kids[pk]) == 0 {
			delete(c.kids, pk)
		}
	}
	cd.evicted = true
	if cd.refs == 0 {
		cd.dir.Close()
	}
}

// put adds a folder just opened and returns it referenced; when another
// caller added the same key meanwhile, d is closed and theirs returned.
func (c *dirCache) put(k dirKey, d *safeio.Dir) *cachedDir {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[dirKey]*cachedDir{}
		c.kids = map[dirKey]map[*cachedDir]bool{}
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
	if k.path != "" {
		pk := parentKey(k)
		if c.kids[pk] == nil {
			c.kids[pk] = map[*cachedDir]bool{}
		}
		c.kids[pk][cd] = true
	}
	for el := c.lru.Back(); el != nil && c.lru.Len() > maxCachedDirs; {
		prev := el.Prev()
		c.lru.Remove(el)
		c.forget(el.Value.(*cachedDir))
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
	for _, cd := range c.m {
		c.forget(cd)
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
