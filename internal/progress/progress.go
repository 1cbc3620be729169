// Package progress owns the one-line progress display long commands show on
// a terminal: files, bytes, rate and ETA. Library packages report through
// callbacks; only the CLI creates a Meter.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Meter prints progress to a terminal every interval until Done.
type Meter struct {
	w          io.Writer
	label      string
	start      time.Time
	files      atomic.Int64
	bytes      atomic.Int64
	totalFiles atomic.Int64
	totalBytes atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	enabled    bool
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// New starts a meter writing to w when enabled; a disabled meter counts but
// prints nothing, so callers need no conditionals.
func New(w io.Writer, label string, enabled bool) *Meter {
	m := &Meter{w: w, label: label, start: time.Now(), stop: make(chan struct{}), enabled: enabled}
	if enabled {
		m.wg.Add(1)
		go m.loop()
	}
	return m
}

// SetTotal sets what 100 % is; unknown totals are 0 and show no ETA.
func (m *Meter) SetTotal(files, bytes int64) {
	m.totalFiles.Store(files)
	m.totalBytes.Store(bytes)
}

// Add counts finished work.
func (m *Meter) Add(files, bytes int64) {
	m.files.Add(files)
	m.bytes.Add(bytes)
}

// Set replaces the counts (for callers that report running totals).
func (m *Meter) Set(files, bytes int64) {
	m.files.Store(files)
	m.bytes.Store(bytes)
}

func (m *Meter) loop() {
	defer m.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			fmt.Fprintf(m.w, "\r\033[K%s", m.Line())
		}
	}
}

// Line renders the current state.
func (m *Meter) Line() string {
	f, b := m.files.Load(), m.bytes.Load()
	tf, tb := m.totalFiles.Load(), m.totalBytes.Load()
	el := time.Since(m.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(b) / el
	}
	s := m.label + ": "
	if tf > 0 {
		s += fmt.Sprintf("%d/%d files, %s/%s", f, tf, Bytes(b), Bytes(tb))
	} else {
		s += fmt.Sprintf("%d files, %s", f, Bytes(b))
	}
	s += fmt.Sprintf(", %s/s", Bytes(int64(rate)))
	if tb > 0 && rate > 0 && b <= tb {
		eta := time.Duration(float64(tb-b) / rate * float64(time.Second)).Round(time.Second)
		s += ", ETA " + eta.String()
	}
	return s
}

// Done stops the display and clears its line.
func (m *Meter) Done() {
	if m.enabled {
		close(m.stop)
		m.wg.Wait()
		fmt.Fprint(m.w, "\r\033[K")
		m.enabled = false
	}
}

// Bytes formats a byte count with binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
