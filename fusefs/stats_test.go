package fusefs

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/usmtkit/usmtkit/fixtures"
)

// TestMountStats: with Stats set, a real archive mount counts its
// requests by kind, every READ lands in the histogram, and the slowest
// reads are described with the archive reader's breakdown.
func TestMountStats(t *testing.T) {
	requireFUSE(t)
	a := archiveOf(t, fixtures.USMT4(t, t.TempDir()))
	st := NewStats()
	f := adapt(t, a, Options{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()), Stats: st})
	mnt, _ := mountFS(t, f)
	es, vps := storeFiles(t, a)
	for i, e := range es {
		got, err := os.ReadFile(filepath.Join(mnt, vps[i]))
		if err != nil || !bytes.Equal(got, sourceBytes(t, a, e)) {
			t.Fatalf("reading %s: %v", vps[i], err)
		}
	}
	b, err := st.MarshalReport()
	if err != nil {
		t.Fatal(err)
	}
	var r StatsReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	ops := map[string]OpReport{}
	for _, o := range r.Ops {
		ops[o.Op] = o
		var n int64
		for _, c := range o.Buckets {
			n += c
		}
		if n != o.Count {
			t.Errorf("%s: %d requests in the buckets, count %d", o.Op, n, o.Count)
		}
		if o.Count > 0 && (o.P50Us > o.P99Us || o.P99Us > 2*o.MaxUs+1) {
			t.Errorf("%s: p50 %v p99 %v max %v out of order", o.Op, o.P50Us, o.P99Us, o.MaxUs)
		}
	}
	if got, want := ops["read"].Count, f.ReadCount(); got != want || got == 0 {
		t.Errorf("read count %d, the server served %d", got, want)
	}
	if ops["lookup"].Count == 0 {
		t.Errorf("no LOOKUP recorded")
	}
	if len(r.SlowReads) == 0 || len(r.SlowReads) > slowKept {
		t.Fatalf("%d slow reads described", len(r.SlowReads))
	}
	for i, s := range r.SlowReads {
		if i > 0 && s.TotalUs > r.SlowReads[i-1].TotalUs {
			t.Errorf("slow reads not sorted slowest first")
		}
		if s.Path == "" || s.LockWaitUs+s.DecodeUs+s.OpenUs > s.TotalUs+1 {
			t.Errorf("slow read %+v: no path, or parts longer than the whole", s)
		}
	}
	if r.SlowReads[0].Decoded == 0 {
		t.Errorf("the slowest read decoded nothing: %+v", r.SlowReads[0])
	}
	if r.Seconds <= 0 || r.Seconds > time.Hour.Seconds() {
		t.Errorf("seconds %v", r.Seconds)
	}
}

// TestStatsEmpty: a report with no requests lists no slow reads as [].
func TestStatsEmpty(t *testing.T) {
	b, err := NewStats().MarshalReport()
	if err != nil || !bytes.Contains(b, []byte(`"slowest_reads": []`)) {
		t.Errorf("empty report: %s, %v", b, err)
	}
}

func TestStatsBuckets(t *testing.T) {
	for _, c := range []struct {
		ns   int64
		want int
	}{{0, 0}, {999, 0}, {1000, 1}, {1999, 1}, {2000, 2}, {1 << 40, statsBuckets - 1}} {
		if got := bucketOf(c.ns); got != c.want {
			t.Errorf("bucketOf(%d) = %d, want %d", c.ns, got, c.want)
		}
	}
	b := make([]int64, statsBuckets)
	b[3] = 99
	b[10] = 1
	if q := quantile(b, 0.5); q != 8 {
		t.Errorf("p50 %v, want 8", q)
	}
	if q := quantile(b, 0.999); q != 1024 {
		t.Errorf("p99.9 %v, want 1024", q)
	}
}
