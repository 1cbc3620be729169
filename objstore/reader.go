package objstore

import (
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
)

// ReaderOptions bound a Reader's memory and the time one GET may take.
type ReaderOptions struct {
	// BlockSize is the unit of ranged GETs and of the cache: 0 means
	// DefaultBlockSize.
	BlockSize int64
	// CacheBlocks bounds the blocks kept: 0 means DefaultCacheBlocks.
	CacheBlocks int
	// Ahead is how many blocks are fetched ahead of a sequential reader:
	// 0 means DefaultAhead, negative none.
	Ahead int
	// Timeout bounds one GET (with its retries): 0 means DefaultTimeout.
	// A read that cannot be served by then fails (EIO through a mount).
	Timeout time.Duration
}

// Defaults: 1 MiB blocks (a chunk of the archive is at most a few MiB, so
// a random read costs one GET), 64 MiB of cache, 4 blocks ahead.
const (
	DefaultBlockSize   = 1 << 20
	DefaultCacheBlocks = 64
	DefaultAhead       = 4
	DefaultTimeout     = 30 * time.Second
)

// seqMinRead is the size from which a read near the last big one counts
// as sequential; the frame walk's header reads (3 to 18 bytes) never do.
const seqMinRead = 32 << 10

// Reader is an object read by ranged GETs: an io.ReaderAt with Size. It is
// safe for concurrent use.
type Reader struct {
	c       *Client
	loc     Location
	size    int64
	etag    string
	opts    ReaderOptions
	ctx     context.Context
	cancel  context.CancelFunc
	gets    atomic.Int64
	aheadCh chan struct{}

	mu sync.Mutex
	// downErr and downUntil: after a failed GET, reads fail at once with
	// the same error for one Timeout, so a mount whose server is down
	// answers EIO to every read within about one Timeout instead of one
	// Timeout per read; then GETs are tried again.
	downErr   error
	downUntil time.Time
	blocks    map[int64]*block
	lru       *list.List // of *block, most recent first
	// nextOff is where the last read ended: a read starting there is
	// sequential and gets blocks fetched ahead. (Block adjacency is no
	// sign: the archive's frame walk reads a few bytes of each frame
	// header, stepping over blocks without reading them through.)
	nextOff int64
	// lastBig is the last block of the last read of seqMinRead bytes or
	// more: a big read in that block or the next is sequential too (the
	// chunks of a parallel verify arrive a little out of order).
	lastBig int64
}

type block struct {
	idx  int64
	done chan struct{}
	data []byte
	err  error
	elem *list.Element
}

// Open stats the object and returns a Reader of it.
func (c *Client) Open(ctx context.Context, loc Location, opts ReaderOptions) (*Reader, error) {
	if opts.BlockSize <= 0 {
		opts.BlockSize = DefaultBlockSize
	}
	if opts.CacheBlocks <= 0 {
		opts.CacheBlocks = DefaultCacheBlocks
	}
	if opts.Ahead == 0 {
		opts.Ahead = DefaultAhead
	}
	if opts.Ahead > opts.CacheBlocks/2 {
		opts.Ahead = opts.CacheBlocks / 2
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	tctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	sctx, abort := withCertAbort(tctx)
	defer abort(nil)
	oi, err := c.mc.StatObject(sctx, loc.Bucket, loc.Key, minio.StatObjectOptions{})
	if cerr := certRefused(sctx); cerr != nil {
		return nil, classify(loc, cerr)
	}
	if err != nil {
		_, err = c.Stat(sctx, loc) // the same question, classified
		return nil, c.prefixHint(sctx, loc, err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	r := &Reader{c: c, loc: loc, size: oi.Size, etag: oi.ETag, opts: opts, ctx: rctx, cancel: rcancel,
		blocks: map[int64]*block{}, lru: list.New(), lastBig: -2}
	if opts.Ahead > 0 {
		r.aheadCh = make(chan struct{}, opts.Ahead)
	}
	return r, nil
}

// Size is the object's size in bytes.
func (r *Reader) Size() int64 { return r.size }

// Name is s3://BUCKET/KEY.
func (r *Reader) Name() string { return r.loc.String() }

// GETs counts the ranged GETs sent so far (for scripts/bench/s3.sh).
func (r *Reader) GETs() int64 { return r.gets.Load() }

// Close stops read-ahead and closes the client's idle connections (see
// Client.closeIdle; a client shared with other readers dials again when
// it needs to); reads after Close fail.
func (r *Reader) Close() error {
	r.cancel()
	r.c.closeIdle()
	return nil
}

// ReadAt reads len(p) bytes at off from cached or fetched blocks.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset", r.loc)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	first, last := off/r.opts.BlockSize, (min(off+int64(len(p)), r.size)-1)/r.opts.BlockSize
	if last > first {
		r.fetchMissing(first, last)
	}
	r.mu.Lock()
	big := len(p) >= seqMinRead
	sequential := off == r.nextOff || big && (first == r.lastBig || first == r.lastBig+1)
	r.nextOff = off + int64(len(p))
	if big {
		r.lastBig = last
	}
	r.mu.Unlock()
	if sequential {
		r.readAhead(last)
	}
	n := 0
	for n < len(p) && off < r.size {
		idx := off / r.opts.BlockSize
		b, err := r.get(idx)
		if err != nil {
			return n, err
		}
		c := copy(p[n:], b.data[off-idx*r.opts.BlockSize:])
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// get returns block idx, fetching it (once, shared by concurrent readers)
// when it is not cached. A failed fetch is not cached: the next read
// tries again, so reads work again when the server returns.
func (r *Reader) get(idx int64) (*block, error) {
	r.mu.Lock()
	b, ok := r.blocks[idx]
	if ok {
		r.lru.MoveToFront(b.elem)
	} else {
		b = &block{idx: idx, done: make(chan struct{})}
		b.elem = r.lru.PushFront(b)
		r.blocks[idx] = b
		r.evictLocked()
		go r.fetch([]*block{b})
	}
	r.mu.Unlock()
	select {
	case <-b.done:
	case <-r.ctx.Done():
		return nil, fmt.Errorf("%s: %w", r.loc, r.ctx.Err())
	}
	if b.err != nil {
		return nil, b.err
	}
	return b, nil
}

// readAhead starts fetches of the blocks after idx, at most opts.Ahead at
// a time in the background.
func (r *Reader) readAhead(idx int64) {
	if r.opts.Ahead <= 0 {
		return
	}
	last := (r.size - 1) / r.opts.BlockSize
	for i := idx + 1; i <= idx+int64(r.opts.Ahead) && i <= last; i++ {
		r.mu.Lock()
		_, ok := r.blocks[i]
		r.mu.Unlock()
		if ok {
			continue
		}
		select {
		case r.aheadCh <- struct{}{}:
		default:
			return // enough in flight
		}
		go func(i int64) {
			defer func() { <-r.aheadCh }()
			_, _ = r.get(i)
		}(i)
	}
}

// Prefetch starts fetching the bytes off..off+n that are not cached, in
// one GET per run of missing blocks, and returns at once; reads of them
// then wait for that GET instead of sending their own.
func (r *Reader) Prefetch(off, n int64) {
	if off < 0 || n <= 0 || off >= r.size {
		return
	}
	r.fetchMissing(off/r.opts.BlockSize, (min(off+n, r.size)-1)/r.opts.BlockSize)
}

// fetchMissing starts the fetch of the blocks first..last that are neither
// cached nor on their way, one GET per run of adjacent missing blocks: a
// read that straddles a block boundary (a frame of the archive across two
// 1 MiB blocks) costs one GET, not two.
func (r *Reader) fetchMissing(first, last int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var run []*block
	flush := func() {
		if len(run) > 0 {
			go r.fetch(run)
			run = nil
		}
	}
	for i := first; i <= last; i++ {
		if b, ok := r.blocks[i]; ok {
			r.lru.MoveToFront(b.elem)
			flush()
			continue
		}
		b := &block{idx: i, done: make(chan struct{})}
		b.elem = r.lru.PushFront(b)
		r.blocks[i] = b
		run = append(run, b)
	}
	flush()
	r.evictLocked()
}

func (r *Reader) evictLocked() {
	for r.lru.Len() > r.opts.CacheBlocks {
		e := r.lru.Back()
		b := e.Value.(*block)
		r.lru.Remove(e)
		delete(r.blocks, b.idx)
	}
}

// fetch gets the adjacent blocks of run with one ranged GET and closes
// their done channels. On failure every block of the run carries the error
// and is forgotten (not cached), so the next read tries again.
func (r *Reader) fetch(run []*block) {
	defer func() {
		for _, b := range run {
			close(b.done)
		}
	}()
	start := run[0].idx * r.opts.BlockSize
	end := min((run[len(run)-1].idx+1)*r.opts.BlockSize, r.size) - 1
	fail := func(err error) {
		for _, b := range run {
			b.data, b.err = nil, err
			r.forget(b)
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
	defer cancel()
	o := minio.GetObjectOptions{}
	if r.etag != "" {
		_ = o.SetMatchETag(r.etag)
	}
	if err := o.SetRange(start, end); err != nil {
		fail(err)
		return
	}
	r.mu.Lock()
	down, until := r.downErr, r.downUntil
	r.mu.Unlock()
	if down != nil && time.Now().Before(until) {
		fail(down)
		return
	}
	r.gets.Add(1)
	data := make([]byte, end-start+1)
	obj, err := r.c.mc.GetObject(ctx, r.loc.Bucket, r.loc.Key, o)
	if err == nil {
		_, err = io.ReadFull(obj, data)
		obj.Close()
	}
	if err != nil {
		if ctx.Err() != nil && r.ctx.Err() == nil {
			// Our own timeout, not the caller's: the server is down or
			// stuck. It must not read as an interrupted request (a
			// mount turns those into EINTR, which the kernel and Go's
			// read loop retry at once, forever).
			err = fmt.Errorf("reading %s at %d: %w within %v (%v)", r.loc, start, ErrUnavailable, r.opts.Timeout, err)
		} else {
			err = fmt.Errorf("reading %s at %d: %w", r.loc, start, classify(r.loc, err))
		}
		r.mu.Lock()
		r.downErr, r.downUntil = err, time.Now().Add(r.opts.Timeout)
		r.mu.Unlock()
		fail(err)
		return
	}
	for _, b := range run {
		off := b.idx*r.opts.BlockSize - start
		end := min(off+r.opts.BlockSize, int64(len(data)))
		b.data = data[off:end:end] // a block never grows into its neighbour
	}
	r.mu.Lock()
	r.downErr = nil
	r.mu.Unlock()
}

// forget drops a failed block so the next read fetches it again.
func (r *Reader) forget(b *block) {
	r.mu.Lock()
	if r.blocks[b.idx] == b {
		r.lru.Remove(b.elem)
		delete(r.blocks, b.idx)
	}
	r.mu.Unlock()
}
