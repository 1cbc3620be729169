// Command migmk is the fixture builder of scripts/bench/mig.sh. It writes
// an unencrypted USMT.MIG of about -size bytes whose File records have
// varied sizes (log-uniform from 64 bytes to 8 MiB, a few large ones and
// many small ones, as a profile has), each payload a zlib stream at level 6
// (crafted as fixtures.MIGWriter does), and the anchor tools' input: the
// concatenated contents of every record as one zlib stream at the same
// level (pigz and zlib-flate read one stream; they are given the same data
// and the same compression, not the same per-record streams).
//
//	migmk -size 1G -out DIR     # DIR/USMT.MIG, DIR/content.z, DIR/stats
//	migmk -generation           # prints the generator's version
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	kzlib "github.com/klauspost/compress/zlib"

	"github.com/usmtkit/usmtkit/fixtures"
)

// generation changes whenever the files written change, so mig.sh
// rebuilds a kept fixture.
const generation = 1

func main() {
	size := flag.String("size", "1G", "target USMT.MIG size (suffix K, M, G)")
	out := flag.String("out", "", "directory to write into")
	seed := flag.Int64("seed", 1, "seed")
	gen := flag.Bool("generation", false, "print the generator's version and exit")
	flag.Parse()
	if *gen {
		fmt.Println(generation)
		return
	}
	n, err := parseSize(*size)
	if err != nil || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: migmk -size 1G -out DIR")
		os.Exit(2)
	}
	if err := run(n, *out, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "migmk:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v * mult, err
}

var words = strings.Fields(`the of and to in is for on that by this with user profile document report
Users jdoe Documents Desktop Pictures AppData Local Roaming Microsoft Windows Office settings
2023 2024 invoice budget meeting notes draft final version project data backup archive`)

// content makes n bytes of text-like data (words, numbers, some random
// bytes): it compresses to about a third, as office files and mail do.
func content(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+64)
	for len(b) < n {
		switch r.Intn(10) {
		case 0:
			var x [12]byte
			r.Read(x[:])
			b = append(b, x[:]...)
		case 1:
			b = strconv.AppendInt(b, r.Int63n(1e9), 10)
			b = append(b, ' ')
		default:
			b = append(b, words[r.Intn(len(words))]...)
			b = append(b, ' ')
		}
	}
	return b[:n]
}

func deflate(w *kzlib.Writer, buf *bytes.Buffer, data []byte) []byte {
	buf.Reset()
	w.Reset(buf)
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func run(target int64, dir string, seed int64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mf, err := os.Create(filepath.Join(dir, "USMT.MIG"))
	if err != nil {
		return err
	}
	defer mf.Close()
	cf, err := os.Create(filepath.Join(dir, "content.z"))
	if err != nil {
		return err
	}
	defer cf.Close()
	mw := bufio.NewWriterSize(mf, 4<<20)
	cw := bufio.NewWriterSize(cf, 4<<20)
	m, err := fixtures.NewMIGWriter(mw, 6)
	if err != nil {
		return err
	}
	all, _ := kzlib.NewWriterLevel(cw, 6)
	one, _ := kzlib.NewWriterLevel(nil, 6)
	var buf bytes.Buffer
	r := rand.New(rand.NewSource(seed))
	var records, inflated int64
	for m.Offset() < target {
		// log-uniform between 64 B and 8 MiB
		n := int(math.Exp(math.Log(64) + r.Float64()*(math.Log(8<<20)-math.Log(64))))
		data := content(r, n)
		z := deflate(one, &buf, data)
		payload := make([]byte, 8, 8+len(z))
		payload = append(payload, z...)
		name := fmt.Sprintf(`File\C:\Users\jdoe\Documents\d%03d\f%07d.dat`, records/500, records)
		if _, err := m.Add(fixtures.MIGSpec{Name: name, Payload: payload}); err != nil {
			return err
		}
		if _, err := all.Write(data); err != nil {
			return err
		}
		records++
		inflated += int64(n)
	}
	if err := all.Close(); err != nil {
		return err
	}
	if err := mw.Flush(); err != nil {
		return err
	}
	if err := cw.Flush(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "stats"), fmt.Appendf(nil, "records=%d\ninflated=%d\nmig=%d\ngeneration=%d\n", records, inflated, m.Offset(), generation), 0o644)
}
