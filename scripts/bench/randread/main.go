// Command randread is the timing helper of scripts/bench/mount.sh. It
// reads files under a root (a mount or a plain folder) the way a user's
// tools would and prints one result line per run:
//
//	randread -root MNT -mode files -n 300        # whole-file reads: p50/p99 latency
//	randread -root MNT -mode 4k -n 2000          # 4 KiB preads inside files >= 1 MiB: p50/p99
//	randread -root MNT -mode seq                 # every file once, in walk order: MB/s
//	randread -root MNT -mode parts               # as seq, timing stat, open, read and close apart
//	randread -mkarchive STORE -out X.tar.zst     # write a usmtkit archive (no CLI needed)
//
// -slow N (files, 4k) also prints the N slowest reads to standard error:
// which files and offsets make the p99.
//
// The file list is the walk of -list-root (default -root), sorted, so
// every file system under test reads the same files with the same seed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/store"
)

func main() {
	root := flag.String("root", "", "folder to read (a mount point)")
	listRoot := flag.String("list-root", "", "folder whose walk gives the file list (default -root)")
	mode := flag.String("mode", "files", "files | 4k | seq | parts")
	n := flag.Int("n", 300, "number of reads (files, 4k)")
	seed := flag.Int64("seed", 1, "random seed")
	minSize := flag.Int64("min-size", 1<<20, "4k mode: only files at least this big")
	slow := flag.Int("slow", 0, "files, 4k: also print the slowest N reads (file, size, offset, latency) to stderr")
	mk := flag.String("mkarchive", "", "write this store as a usmtkit archive to -out and exit")
	out := flag.String("out", "", "archive path for -mkarchive")
	flag.Parse()
	if *mk != "" {
		if err := mkArchive(*mk, *out); err != nil {
			fmt.Fprintln(os.Stderr, "randread:", err)
			os.Exit(1)
		}
		return
	}
	if *root == "" {
		fmt.Fprintln(os.Stderr, "randread: -root is required")
		os.Exit(2)
	}
	if *listRoot == "" {
		*listRoot = *root
	}
	files, err := list(*listRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "randread:", err)
		os.Exit(1)
	}
	rng := rand.New(rand.NewSource(*seed))
	var samples []sample
	switch *mode {
	case "files":
		lat := make([]time.Duration, 0, *n)
		buf := make([]byte, 1<<20)
		for i := 0; i < *n && len(files) > 0; i++ {
			f := files[rng.Intn(len(files))]
			t0 := time.Now()
			if err := readWhole(filepath.Join(*root, f.rel), buf); err != nil {
				fail(err)
			}
			lat = append(lat, time.Since(t0))
			samples = append(samples, sample{f, 0, lat[len(lat)-1]})
		}
		printSlow(samples, *slow)
		fmt.Printf("p50=%s p99=%s n=%d\n", pct(lat, 50), pct(lat, 99), len(lat))
	case "4k":
		var big []file
		for _, f := range files {
			if f.size >= *minSize {
				big = append(big, f)
			}
		}
		if len(big) == 0 {
			fail(fmt.Errorf("no file of %d bytes or more", *minSize))
		}
		handles := map[string]*os.File{}
		lat := make([]time.Duration, 0, *n)
		buf := make([]byte, 4096)
		for i := 0; i < *n; i++ {
			f := big[rng.Intn(len(big))]
			off := rng.Int63n(f.size/4096) * 4096
			h := handles[f.rel]
			if h == nil {
				h, err = os.Open(filepath.Join(*root, f.rel))
				if err != nil {
					fail(err)
				}
				handles[f.rel] = h
			}
			t0 := time.Now()
			if _, err := h.ReadAt(buf, off); err != nil && err != io.EOF {
				fail(err)
			}
			lat = append(lat, time.Since(t0))
			samples = append(samples, sample{f, off, lat[len(lat)-1]})
		}
		printSlow(samples, *slow)
		fmt.Printf("p50=%s p99=%s n=%d files=%d\n", pct(lat, 50), pct(lat, 99), len(lat), len(big))
	case "seq":
		buf := make([]byte, 1<<20)
		var total int64
		t0 := time.Now()
		for _, f := range files {
			if err := readWhole(filepath.Join(*root, f.rel), buf); err != nil {
				fail(err)
			}
			total += f.size
		}
		el := time.Since(t0)
		fmt.Printf("MB/s=%.0f bytes=%d seconds=%.2f\n", float64(total)/1e6/el.Seconds(), total, el.Seconds())
	case "parts":
		// Where a file's time goes on a fresh mount: stat(2) is the
		// LOOKUP, open(2) then the OPEN alone, close(2) what RELEASE
		// costs the reader (it is sent in the background).
		buf := make([]byte, 1<<20)
		var tStat, tOpen, tRead, tClose time.Duration
		t0 := time.Now()
		for _, f := range files {
			p := filepath.Join(*root, f.rel)
			a := time.Now()
			if _, err := os.Stat(p); err != nil {
				fail(err)
			}
			b := time.Now()
			h, err := os.Open(p)
			if err != nil {
				fail(err)
			}
			c := time.Now()
			for {
				if _, err := h.Read(buf); err == io.EOF {
					break
				} else if err != nil {
					fail(err)
				}
			}
			d := time.Now()
			h.Close()
			tStat, tOpen, tRead, tClose = tStat+b.Sub(a), tOpen+c.Sub(b), tRead+d.Sub(c), tClose+time.Since(d)
		}
		el := time.Since(t0)
		n := time.Duration(max(len(files), 1))
		fmt.Printf("seconds=%.2f files=%d per file: stat=%s open=%s read=%s close=%s\n", el.Seconds(), len(files),
			(tStat / n).Round(100*time.Nanosecond), (tOpen / n).Round(100*time.Nanosecond), (tRead / n).Round(100*time.Nanosecond), (tClose / n).Round(100*time.Nanosecond))
	default:
		fail(fmt.Errorf("unknown -mode %q", *mode))
	}
}

type sample struct {
	f   file
	off int64
	d   time.Duration
}

// printSlow prints the n slowest reads: what the p99 is made of.
func printSlow(s []sample, n int) {
	sort.Slice(s, func(i, j int) bool { return s[i].d > s[j].d })
	for _, x := range s[:min(n, len(s))] {
		fmt.Fprintf(os.Stderr, "slow: %s size=%d off=%d %s\n", x.f.rel, x.f.size, x.off, x.d.Round(time.Microsecond))
	}
}

type file struct {
	rel  string
	size int64
}

func list(root string) ([]file, error) {
	var out []file
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out = append(out, file{rel, fi.Size()})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, err
}

func readWhole(p string, buf []byte) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(time.Microsecond)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "randread:", err)
	os.Exit(1)
}

func mkArchive(src, out string) error {
	s, err := store.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = compress.CreateFile(context.Background(), out, s, compress.WriteOptions{}, true)
	return err
}
