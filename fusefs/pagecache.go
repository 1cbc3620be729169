package fusefs

import (
	"syscall"
)

// Giving decoded archive data to the kernel's page cache.
//
// An archive decodes a whole chunk (4 MiB by default) to serve any byte of
// it, or the part of it up to the read's end. The kernel asked for at most
// 1 MiB of it; the rest would stay only in the archive's own cache, which
// is bounded and counts against this process's memory, and the next read
// in that range would cost a FUSE request (and a decode once the chunk
// has left that cache). So the adapter hands the decoded bytes outside the
// request to the kernel with FUSE_NOTIFY_STORE (Inode.WriteCache): they
// become page cache of the file, which FOPEN_KEEP_CACHE keeps across opens
// and which the kernel reclaims under memory pressure like any cache.
//
// The store happens in the background, never inside the READ handler:
// the kernel locks the pages of the requests in flight until they are
// answered, and a store into them from the handler answering one of them
// would wait on itself. At most maxFeeders stores run at once; data that
// arrives while they are busy is dropped (the kernel will ask for it, and
// the archive cache may still hold it).

// maxFeeders bounds the goroutines writing to the page cache.
const maxFeeders = 2

// pageSize is the unit of the page cache: stores start and end on it
// except at the end of the file.
const pageSize = 4096

// feedCache gives the decoded bytes data at file offset off of node n to
// the kernel's page cache, except the request [reqOff, reqEnd) being
// answered (the kernel fills those pages from the reply).
func (f *FS) feedCache(n *node, off int64, data []byte, reqOff, reqEnd int64) {
	if f.feedOff.Load() || len(data) == 0 {
		return
	}
	size := n.e.Size
	var spans [2][2]int64
	ns := 0
	end := off + int64(len(data))
	if s, e := off, min(end, reqOff); s < e {
		spans[ns] = [2]int64{s, e}
		ns++
	}
	if s, e := max(off, reqEnd), end; s < e {
		spans[ns] = [2]int64{s, e}
		ns++
	}
	for i := range ns {
		s, e := spans[i][0], spans[i][1]
		s = (s + pageSize - 1) &^ (pageSize - 1)
		if e < size {
			e &^= pageSize - 1
		}
		if e <= s {
			continue
		}
		select {
		case f.feeding <- struct{}{}:
		default:
			return
		}
		chunk := data[s-off : e-off]
		go func() {
			defer func() { <-f.feeding }()
			switch errno := n.WriteCache(s, chunk); errno {
			case 0:
				f.fed.Add(int64(len(chunk)))
			case syscall.ENOENT:
				// The kernel has forgotten the inode: nothing to cache.
			default:
				if !f.feedOff.Swap(true) {
					f.logf("the kernel refused cached data (%v): archive reads go through usmtkit only", errno)
				}
			}
		}()
	}
}

// FedBytes is the number of decoded bytes given to the kernel's page cache.
func (f *FS) FedBytes() int64 { return f.fed.Load() }
