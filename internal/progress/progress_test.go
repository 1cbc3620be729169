package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMeterLineAndDisabled(t *testing.T) {
	var out bytes.Buffer
	m := New(&out, "indexing", false)
	m.SetTotal(10, 1000)
	m.Add(4, 400)
	time.Sleep(10 * time.Millisecond)
	line := m.Line()
	if !strings.HasPrefix(line, "indexing: 4/10 files, 400 B/1000 B") || !strings.Contains(line, "ETA") {
		t.Fatalf("line %q", line)
	}
	m.Done()
	if out.Len() != 0 {
		t.Fatalf("a disabled meter printed %q", out.String())
	}
	e := New(&out, "x", true)
	e.Set(1, 1)
	time.Sleep(300 * time.Millisecond)
	e.Done()
	if !strings.Contains(out.String(), "x: 1 files") || !strings.HasSuffix(out.String(), "\r\033[K") {
		t.Fatalf("enabled meter wrote %q", out.String())
	}
}
