package fusefs

import (
	"container/heap"
	"encoding/json"
	"math/bits"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usmtkit/usmtkit/compress"
)

// Request statistics (usmtkit mount --stats FILE): how long this process
// took to answer each kind of request, as a histogram, and what the
// slowest reads waited for. They answer "where does the 99th percentile
// go" with evidence (docs/mount.md, Speed): a read's time is split into
// waiting for a chunk another read or a decode ahead holds, decoding,
// handing decoded bytes to the page cache, and the garbage collections
// that ran meanwhile. The time counted is the handler's, from go-fuse
// calling it to it returning; the kernel round trip and go-fuse's own
// reading and writing of /dev/fuse are not in it (a client-side timer,
// scripts/bench/randread, sees those).
//
// Cost when on: two clock reads per request and a few atomic adds; a
// read also reads the GC cycle counter twice (runtime/metrics, no stop
// of the world). Off (the default), one nil check per request.

// Ops whose time is recorded.
const (
	opLookup = iota
	opGetattr
	opOpen
	opOpendir
	opRead
	nOps
)

var opNames = [nOps]string{"lookup", "getattr", "open", "opendir", "read"}

// statsBuckets: bucket i counts requests that took [2^(i-1), 2^i) µs
// (bucket 0: under 1 µs); the last one also counts everything longer.
const statsBuckets = 26

// slowKept is how many of the slowest reads are described in the file.
const slowKept = 50

// Stats collects request statistics; nil means off.
type Stats struct {
	start time.Time
	ops   [nOps]opHist

	mu   sync.Mutex
	slow slowHeap
	// min is the shortest duration in a full slow heap (ns): a read
	// faster than that skips the lock.
	min atomic.Int64
}

type opHist struct {
	count   atomic.Int64
	totalNs atomic.Int64
	maxNs   atomic.Int64
	buckets [statsBuckets]atomic.Int64
}

// SlowRead describes one slow READ.
type SlowRead struct {
	Path    string  `json:"path"`
	Offset  int64   `json:"offset"`
	Size    int     `json:"size"`
	TotalUs float64 `json:"total_us"`
	// From the archive reader (compress.ReadTrace); zero for other stores.
	Walk       bool    `json:"walk"`
	Ahead      bool    `json:"ahead"`
	Chunks     int     `json:"chunks"`
	CacheHits  int     `json:"cache_hits"`
	LockWaitUs float64 `json:"lock_wait_us"`
	DecodeUs   float64 `json:"decode_us"`
	// DecodeCPUUs is the CPU time the decoding thread used meanwhile.
	DecodeCPUUs float64 `json:"decode_cpu_us"`
	Decoded     int64   `json:"decoded_bytes"`
	// OpenUs is opening the store file on a handle-less first read.
	OpenUs float64 `json:"open_us"`
	// FeedUs is handing decoded bytes to the page cache (started, not
	// waited for: the stores run in the background).
	FeedUs float64 `json:"feed_us"`
	// GCCycles is the number of garbage collections that completed while
	// the read ran.
	GCCycles uint64  `json:"gc_cycles"`
	At       float64 `json:"at_s"` // seconds after the mount started
}

type slowHeap []SlowRead

func (h slowHeap) Len() int           { return len(h) }
func (h slowHeap) Less(i, j int) bool { return h[i].TotalUs < h[j].TotalUs }
func (h slowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *slowHeap) Push(x any)        { *h = append(*h, x.(SlowRead)) }
func (h *slowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// NewStats starts collecting.
func NewStats() *Stats { return &Stats{start: time.Now()} }

// record adds one request of kind op that started at t0; it returns the
// duration.
func (s *Stats) record(op int, t0 time.Time) time.Duration {
	d := time.Since(t0)
	h := &s.ops[op]
	ns := d.Nanoseconds()
	h.count.Add(1)
	h.totalNs.Add(ns)
	for {
		m := h.maxNs.Load()
		if ns <= m || h.maxNs.CompareAndSwap(m, ns) {
			break
		}
	}
	h.buckets[bucketOf(ns)].Add(1)
	return d
}

func bucketOf(ns int64) int {
	us := uint64(ns / 1000)
	return min(bits.Len64(us), statsBuckets-1)
}

// readStart is what a traced read notes when it starts.
type readStart struct {
	t0         time.Time
	gc         uint64
	tr         compress.ReadTrace
	feed, open time.Duration
}

var gcSample = []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
var gcMu sync.Mutex

func gcCycles() uint64 {
	gcMu.Lock()
	defer gcMu.Unlock()
	metrics.Read(gcSample)
	if gcSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return gcSample[0].Value.Uint64()
}

func (s *Stats) startRead() *readStart {
	return &readStart{t0: time.Now(), gc: gcCycles()}
}

// endRead records a READ of size bytes at off of path.
func (s *Stats) endRead(rs *readStart, path string, off int64, size int) {
	d := s.record(opRead, rs.t0)
	if m := s.min.Load(); m > 0 && d.Nanoseconds() <= m {
		return
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	sr := SlowRead{Path: path, Offset: off, Size: size, TotalUs: us(d),
		Walk: rs.tr.Walk, Ahead: rs.tr.Ahead, Chunks: rs.tr.Chunks, CacheHits: rs.tr.Hits,
		LockWaitUs: us(rs.tr.LockWait), DecodeUs: us(rs.tr.Decode), DecodeCPUUs: us(rs.tr.DecodeCPU), Decoded: rs.tr.Decoded,
		OpenUs: us(rs.open), FeedUs: us(rs.feed), GCCycles: gcCycles() - rs.gc,
		At: rs.t0.Sub(s.start).Seconds()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.slow) < slowKept {
		heap.Push(&s.slow, sr)
	} else if sr.TotalUs > s.slow[0].TotalUs {
		s.slow[0] = sr
		heap.Fix(&s.slow, 0)
	}
	if len(s.slow) >= slowKept {
		s.min.Store(int64(s.slow[0].TotalUs * 1000))
	}
}

// StatsReport is the JSON written by --stats (format in docs/mount.md).
type StatsReport struct {
	Version   int        `json:"version"`
	Seconds   float64    `json:"seconds"`
	BucketsUs string     `json:"buckets_us"`
	Ops       []OpReport `json:"ops"`
	GC        GCReport   `json:"gc"`
	SlowReads []SlowRead `json:"slowest_reads"`
}

// OpReport is the histogram of one kind of request.
type OpReport struct {
	Op      string  `json:"op"`
	Count   int64   `json:"count"`
	MeanUs  float64 `json:"mean_us"`
	P50Us   float64 `json:"p50_us"`
	P90Us   float64 `json:"p90_us"`
	P99Us   float64 `json:"p99_us"`
	P999Us  float64 `json:"p999_us"`
	MaxUs   float64 `json:"max_us"`
	Buckets []int64 `json:"buckets"`
}

// GCReport is what the collector did over the mount's life.
type GCReport struct {
	Cycles      uint64  `json:"cycles"`
	PauseP99Us  float64 `json:"pause_p99_us"`
	PauseMaxUs  float64 `json:"pause_max_us"`
	HeapGoalMiB float64 `json:"heap_goal_mib"`
}

// Report returns the statistics so far.
func (s *Stats) Report() *StatsReport {
	r := &StatsReport{Version: 1, Seconds: time.Since(s.start).Seconds(),
		BucketsUs: "bucket i counts requests of [2^(i-1), 2^i) µs; bucket 0 under 1 µs; the last also everything longer"}
	for op := range nOps {
		h := &s.ops[op]
		o := OpReport{Op: opNames[op], Count: h.count.Load(), MaxUs: float64(h.maxNs.Load()) / 1000}
		if o.Count > 0 {
			o.MeanUs = float64(h.totalNs.Load()) / 1000 / float64(o.Count)
		}
		o.Buckets = make([]int64, statsBuckets)
		for i := range o.Buckets {
			o.Buckets[i] = h.buckets[i].Load()
		}
		o.P50Us, o.P90Us = quantile(o.Buckets, 0.5), quantile(o.Buckets, 0.9)
		o.P99Us, o.P999Us = quantile(o.Buckets, 0.99), quantile(o.Buckets, 0.999)
		r.Ops = append(r.Ops, o)
	}
	r.GC = gcReport()
	s.mu.Lock()
	r.SlowReads = append([]SlowRead{}, s.slow...) // [] rather than null when there was no read
	s.mu.Unlock()
	sortSlow(r.SlowReads)
	return r
}

// quantile is the upper bound (µs) of the bucket holding quantile q.
func quantile(b []int64, q float64) float64 {
	var n int64
	for _, c := range b {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := int64(q*float64(n) + 0.5)
	var seen int64
	for i, c := range b {
		seen += c
		if seen >= max(rank, 1) {
			return float64(uint64(1) << i)
		}
	}
	return float64(uint64(1) << (len(b) - 1))
}

func sortSlow(s []SlowRead) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].TotalUs > s[j-1].TotalUs; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func gcReport() GCReport {
	ss := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/sched/pauses/total/gc:seconds"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(ss)
	var g GCReport
	if ss[0].Value.Kind() == metrics.KindUint64 {
		g.Cycles = ss[0].Value.Uint64()
	}
	if ss[1].Value.Kind() == metrics.KindFloat64Histogram {
		h := ss[1].Value.Float64Histogram()
		var n uint64
		for _, c := range h.Counts {
			n += c
		}
		var seen uint64
		for i, c := range h.Counts {
			if c == 0 {
				continue
			}
			seen += c
			hi := h.Buckets[i+1]
			if hi > 1e9 {
				hi = h.Buckets[i]
			}
			if g.PauseP99Us == 0 && float64(seen) >= 0.99*float64(n) {
				g.PauseP99Us = hi * 1e6
			}
			g.PauseMaxUs = hi * 1e6
		}
	}
	if ss[2].Value.Kind() == metrics.KindUint64 {
		g.HeapGoalMiB = float64(ss[2].Value.Uint64()) / (1 << 20)
	}
	return g
}

// MarshalReport is the report as indented JSON.
func (s *Stats) MarshalReport() ([]byte, error) {
	return json.MarshalIndent(s.Report(), "", "  ")
}
