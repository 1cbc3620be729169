// Command benchtool drives package compress for scripts/bench/compress.sh
// while (or where) the usmtkit CLI has no compress command:
//
//	benchtool compress [-level L] [-chunk-size N] [-threads N] -o OUT STORE
//	benchtool tocload ARCHIVE   # prints "seconds heap_bytes entries"
//
// It is a benchmark aid, not a user tool.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/store"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool compress|tocload ...")
		os.Exit(2)
	}
	if p := os.Getenv("BENCHTOOL_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	var err error
	switch os.Args[1] {
	case "compress":
		err = runCompress(os.Args[2:])
	case "tocload":
		err = runTOCLoad(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func runCompress(args []string) error {
	fs := flag.NewFlagSet("compress", flag.ExitOnError)
	level := fs.String("level", "default", "fastest|default|better")
	chunk := fs.Int("chunk-size", 0, "chunk size in bytes (0 = 4 MiB)")
	threads := fs.Int("threads", 0, "compression threads (0 = GOMAXPROCS)")
	out := fs.String("o", "", "output archive")
	fs.Parse(args)
	if *out == "" || fs.NArg() != 1 {
		return fmt.Errorf("usage: benchtool compress [-level L] [-chunk-size N] [-threads N] -o OUT STORE")
	}
	l, err := compress.ParseLevel(*level)
	if err != nil {
		return err
	}
	src, err := store.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer src.Close()
	res, err := compress.CreateFile(context.Background(), *out, src, compress.WriteOptions{Level: l, ChunkSize: *chunk, Threads: *threads}, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%d files, %d bytes in, %d bytes out\n", res.Files, res.BytesIn, res.BytesOut)
	return nil
}

func runTOCLoad(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: benchtool tocload ARCHIVE")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	a, err := compress.Open(args[0], compress.ReaderOptions{})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	runtime.GC()
	runtime.ReadMemStats(&after)
	fmt.Printf("%.3f %d %d\n", secs, int64(after.HeapAlloc)-int64(before.HeapAlloc), a.EntryCount())
	runtime.KeepAlive(a)
	return a.Close()
}
