package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func rec(key, status string) Record {
	t := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	return Record{Op: "verify", Key: key, Status: status, Started: t, Finished: t.Add(time.Second),
		Fields: map[string]any{"files": 3}}
}

func TestAppendRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j.jsonl")
	w, note, err := Open(p)
	if err != nil || note != "" {
		t.Fatal(err, note)
	}
	for _, r := range []Record{rec("/a", StatusOK), rec("/b", StatusProblems), rec("/a", StatusFailed)} {
		if err := w.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	// Synced: on disk before Close.
	if recs, _, _ := Read(p); len(recs) != 3 {
		t.Fatalf("after Sync %d records on disk", len(recs))
	}
	if err := w.Close(); err != nil || w.Close() != nil {
		t.Fatal(err)
	}
	if err := w.Append(rec("/late", StatusOK)); err == nil {
		t.Fatal("append after Close accepted")
	}
	recs, notes, err := Read(p)
	if err != nil || len(notes) != 0 || len(recs) != 3 {
		t.Fatalf("%v %v %+v", err, notes, recs)
	}
	if recs[0].Version != Version || recs[1].Status != StatusProblems || recs[0].Fields["files"] != float64(3) {
		t.Fatalf("records %+v", recs)
	}
	latest := Latest(recs, "verify")
	if len(latest) != 2 || latest["/a"].Status != StatusFailed {
		t.Fatalf("latest %+v", latest)
	}
	if len(Latest(recs, "index")) != 0 {
		t.Fatal("records of another operation counted")
	}
	raw, _ := os.ReadFile(p)
	if lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], `{"v":1,"op":"verify","key":"/a","status":"ok"`) {
		t.Fatalf("file:\n%s", raw)
	}
	if _, _, err := Read(filepath.Join(t.TempDir(), "none")); err != nil {
		t.Fatalf("a missing journal is empty: %v", err)
	}
}

// A last line cut short (an interrupted write) is ignored with a note on
// read and cut off on open, so the next record starts on a line of its own.
func TestTornLastLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j.jsonl")
	w, _, _ := Open(p)
	w.Append(rec("/a", StatusOK))
	w.Close()
	good, _ := os.ReadFile(p)
	w2, _, _ := Open(p)
	w2.Append(rec("/b", StatusOK))
	w2.Close()
	second, _ := os.ReadFile(p)
	// Every cut inside the second line.
	for cut := len(good) + 1; cut < len(second); cut++ {
		os.WriteFile(p, second[:cut], 0o644)
		recs, notes, err := Read(p)
		if err != nil || len(recs) != 1 || recs[0].Key != "/a" || len(notes) != 1 || !strings.Contains(notes[0], "cut short") {
			t.Fatalf("cut at %d: %v %+v %v", cut, err, recs, notes)
		}
		w, note, err := Open(p)
		if err != nil || !strings.Contains(note, "cut short") {
			t.Fatalf("open after a cut at %d: %v %q", cut, err, note)
		}
		if err := w.Append(rec("/c", StatusOK)); err != nil {
			t.Fatal(err)
		}
		w.Close()
		recs, notes, err = Read(p)
		if err != nil || len(notes) != 0 || len(recs) != 2 || recs[1].Key != "/c" {
			t.Fatalf("after repair (cut %d): %v %v %+v", cut, err, notes, recs)
		}
	}
	// A file that is one torn line only.
	os.WriteFile(p, []byte(`{"v":1,"op":"ver`), 0o644)
	w3, note, err := Open(p)
	if err != nil || note == "" {
		t.Fatal(err, note)
	}
	w3.Close()
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Fatalf("torn only line left: %q", b)
	}
}

func TestBadLinesAndVersions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j.jsonl")
	content := `{"v":1,"op":"verify","key":"/a","status":"ok"}` + "\r\n" +
		"\n" +
		"not json\n" +
		`{"v":1,"op":"verify","status":"ok"}` + "\n" + // no key
		`{"v":2,"op":"verify","key":"/z","status":"ok"}` + "\n" +
		`{"v":1,"op":"verify","key":"/b","status":"problems"}` + "\n"
	os.WriteFile(p, []byte(content), 0o644)
	recs, notes, err := Read(p)
	if err != nil || len(recs) != 2 || recs[1].Key != "/b" || len(notes) != 3 {
		t.Fatalf("%v %+v %q", err, recs, notes)
	}
	if !strings.Contains(notes[2], "format version 2") {
		t.Fatalf("notes %q", notes)
	}
}

func TestLockedAndConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j.jsonl")
	w, _, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(p); !errors.Is(err, ErrLocked) {
		t.Fatalf("second writer: %v", err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := w.Append(rec(fmt.Sprintf("/g%d/%d/%s", g, i, strings.Repeat("x", 500)), StatusOK)); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	w.Close()
	recs, notes, err := Read(p)
	if err != nil || len(notes) != 0 || len(recs) != 200 || len(Latest(recs, "verify")) != 200 {
		t.Fatalf("%v %v %d", err, notes, len(recs))
	}
	if w2, _, err := Open(p); err != nil {
		t.Fatalf("after close the journal opens again: %v", err)
	} else {
		w2.Close()
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"v":1,"op":"verify","key":"/a","status":"ok"}` + "\n"))
	f.Add([]byte(`{"v":1,"op":"verify","key":"/a","status":"ok","fields":{"files":1}}` + "\n" + `{"v":1,"op":"ind`))
	f.Add([]byte("\n\r\n{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, _, err := read(bytes.NewReader(b), "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Key == "" || r.Version != Version {
				t.Fatalf("bad record kept: %+v", r)
			}
		}
	})
}

// A line longer than maxLine is skipped with a note without being held; a
// device is refused (a /dev/zero journal would be read for ever).
func TestLongLineAndDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j")
	good := `{"v":1,"op":"verify","key":"/a","status":"ok"}` + "\n"
	os.WriteFile(p, []byte(good+strings.Repeat("x", maxLine+10)+"\n"+good), 0o644)
	recs, notes, err := Read(p)
	if err != nil || len(recs) != 2 || len(notes) != 1 || !strings.Contains(notes[0], "line 2 is longer") {
		t.Fatalf("%v %d %q", err, len(recs), notes)
	}
	for _, dev := range []string{"/dev/zero", "/dev/full"} {
		if _, _, err := Read(dev); !errors.Is(err, ErrNotRegular) {
			t.Errorf("Read(%s): %v", dev, err)
		}
		if _, _, err := Open(dev); !errors.Is(err, ErrNotRegular) {
			t.Errorf("Open(%s): %v", dev, err)
		}
	}
}
