package fusefs

import (
	"sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The kernel keeps an inode it has looked up until it forgets it, and it
// forgets only under memory pressure (names stay valid for CacheTimeout,
// but that does not drop them). Each inode it keeps costs this process
// about 1 KB (go-fuse's Inode and our node: measured 195 MB after `find`
// over 200,000 files). A walk of a store of millions of files would hold
// gigabytes, so the number of inodes is kept near Options.MaxInodes: past
// it, the oldest inodes are handed back to the kernel (NOTIFY_PRUNE on
// Linux 6.16+, else an entry invalidation of each one's name), which
// forgets those it is not using (open files, current folders and folders
// with remembered children stay) and sends FORGET, which frees them here.
// A name asked for again is looked up again.

// DefaultMaxInodes is the default of Options.MaxInodes: about 64 MB.
const DefaultMaxInodes = 65536

// pruneBatch is the most inodes handed back at once.
const pruneBatch = 4096

// inodeCap is the list of live inodes, oldest first. Its links live in
// the nodes (capPrev, capNext) and are guarded by mu.
type inodeCap struct {
	limit int // 0: no limit

	mu         sync.Mutex
	head, tail *node
	live       int
	pruned     int64 // inodes handed back to the kernel (tests, logs)
	kick       chan struct{}
}

func newInodeCap(limit int) *inodeCap {
	return &inodeCap{limit: limit, kick: make(chan struct{}, 1)}
}

// add records a new live inode and wakes the pruner when there are too
// many. It never waits for the pruner: handlers must not (the kernel
// holds a folder's lock while it waits for a LOOKUP's answer, and taking
// an inode back needs that lock).
func (c *inodeCap) add(n *node) {
	c.mu.Lock()
	n.capPrev, n.capNext = c.tail, nil
	if c.tail != nil {
		c.tail.capNext = n
	} else {
		c.head = n
	}
	c.tail = n
	n.capLive = true
	c.live++
	over := c.limit > 0 && c.live > c.limit
	c.mu.Unlock()
	if over {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// forget removes a node the kernel has forgotten.
func (c *inodeCap) forget(n *node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !n.capLive {
		return
	}
	n.capLive = false
	if n.capPrev != nil {
		n.capPrev.capNext = n.capNext
	} else {
		c.head = n.capNext
	}
	if n.capNext != nil {
		n.capNext.capPrev = n.capPrev
	} else {
		c.tail = n.capPrev
	}
	n.capPrev, n.capNext = nil, nil
	c.live--
}

// Live is the number of inodes the kernel holds (besides the root).
func (c *inodeCap) Live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// Pruned is how many inodes were handed back to the kernel so far.
func (c *inodeCap) Pruned() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pruned
}

// oldest takes up to max of the oldest inodes and moves them to the end
// of the list: those the kernel keeps (in use) are tried again later,
// after younger ones.
func (c *inodeCap) oldest(max int) []*node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node
	for len(out) < max && c.head != nil && c.head != c.tail {
		n := c.head
		c.head = n.capNext
		c.head.capPrev = nil
		n.capPrev, n.capNext = c.tail, nil
		c.tail.capNext = n
		c.tail = n
		out = append(out, n)
	}
	return out
}

// prune runs until done is closed. Woken when there are more than limit
// inodes, it hands back the oldest (pruneBatch at a time, with a moment
// between batches for the kernel's FORGETs) until a tenth under the
// limit, or until it has offered every inode once. Still over the limit
// then (FORGETs not in yet, or inodes the kernel is using), it tries
// again after 100 ms, doubling up to 5 s while that goes on, so that an
// end of lookups does not leave it above the limit for good.
func (c *inodeCap) prune(srv *fuse.Server, done <-chan struct{}) {
	canPrune := srv.KernelSettings().SupportsNotify(fuse.NOTIFY_PRUNE)
	target := c.limit - c.limit/10
	var retry time.Duration
	for {
		var again <-chan time.Time
		if retry > 0 {
			again = time.After(retry)
		}
		select {
		case <-done:
			return
		case <-c.kick:
		case <-again:
		}
		for offered := 0; ; {
			live := c.Live()
			if live <= target || offered >= live {
				break
			}
			batch := c.oldest(min(live-target, pruneBatch))
			if len(batch) == 0 {
				break
			}
			offered += len(batch)
			c.handBack(batch, canPrune)
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		switch {
		case c.Live() <= c.limit:
			retry = 0
		case retry == 0:
			retry = 100 * time.Millisecond
		default:
			retry = min(2*retry, 5*time.Second)
		}
	}
}

// handBack asks the kernel to forget the nodes of batch.
func (c *inodeCap) handBack(batch []*node, canPrune bool) {
	c.mu.Lock()
	c.pruned += int64(len(batch))
	c.mu.Unlock()
	if canPrune {
		ins := make([]*gofs.Inode, len(batch))
		for i, n := range batch {
			ins[i] = &n.Inode
		}
		batch[0].NotifyPrune(ins)
		return
	}
	for _, n := range batch {
		if name, parent := n.Parent(); parent != nil {
			parent.NotifyEntry(name)
		}
	}
}
