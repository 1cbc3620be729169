package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// MIGRecordCheck is the verdict on one record of a USMT.MIG.
type MIGRecordCheck struct {
	Offset int64  `json:"offset"`
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"` // why it is not OK
	// Inflated is the payload's size after inflating (unencrypted files).
	Inflated int64 `json:"inflated_bytes,omitempty"`
	// Stored is the payload's size in the file (after the name).
	Stored int64 `json:"stored_bytes"`
}

// VerifyMIG checks a USMT.MIG record by record, in file order: every record
// must lie inside the file and, when the file is unencrypted (info, from
// WalkMIG), its payload must inflate as a zlib stream whose Adler-32 holds.
// Payloads are inflated in a stream (bounded memory whatever their size).
// fn is called once per record; problems of the file as a whole (a broken
// chain, bytes after the tail) are in info. It stops early only when ctx
// is done.
func VerifyMIG(ctx context.Context, path string, info *MIGInfo, fn func(MIGRecordCheck)) error {
	r := &fsReader{}
	f, err := r.openRead(path, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, describeErrno(err))
	}
	defer f.Close()
	return verifyMIG(ctx, f, info, !info.Encrypted, fn)
}

// ListMIG walks the records of a USMT.MIG like VerifyMIG, without
// inflating anything: names, offsets and stored sizes, for `ls`.
func ListMIG(ctx context.Context, path string, info *MIGInfo, fn func(MIGRecordCheck)) error {
	r := &fsReader{}
	f, err := r.openRead(path, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, describeErrno(err))
	}
	defer f.Close()
	return verifyMIG(ctx, f, info, false, fn)
}

func verifyMIG(ctx context.Context, r io.ReaderAt, info *MIGInfo, inflate bool, fn func(MIGRecordCheck)) error {
	if info.FirstRecord < 0 {
		return nil
	}
	off, size := info.FirstRecord, info.Size
	cur := newMIGCursor(r, size)
	var pi *payloadInflater
	if inflate {
		pi = newPayloadInflater(r)
		pi.cur = cur
		defer pi.close()
	}
	for n := 0; n < migMaxRecords && off < size && size-off != migTail; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, ok := readMIGRecord(cur, off)
		if !ok {
			return nil // the chain ends here: info says how
		}
		nameLen, next := rec.NameLen, rec.Next
		c := MIGRecordCheck{Offset: off, OK: true, Stored: max(0, next-off-24-nameLen)}
		if off+24+nameLen <= size {
			if nb, _ := cur.at(off+24, int(min(nameLen, migNameCap))); int64(len(nb)) == min(nameLen, migNameCap) {
				c.Name = decodeUTF16LE(nb)
			}
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("(record at %#x)", off)
		}
		switch {
		case next > size || off+24+nameLen > size:
			c.OK, c.Detail = false, fmt.Sprintf("the record runs past the end of the file (%d bytes needed, the file has %d)", next, size)
		case nameLen > next-off-24:
			c.OK, c.Detail = false, "the name is longer than the record"
		case inflate:
			c.Inflated, c.Detail = pi.inflate(ctx, rec.NameEnd(), next, migMaxInflate)
			c.OK = c.Detail == ""
		}
		fn(c)
		if next > size || next <= off {
			return nil
		}
		off = next
	}
	return nil
}

// migMaxInflate bounds one record's inflated size: a zlib bomb is reported
// as damage instead of read forever. No file a profile holds is near it.
// A variable so the hostile tests can lower it.
var migMaxInflate int64 = 1 << 40

// payloadInflater inflates record payloads one after the other with one
// decompressor and one read buffer (memory does not grow with the number
// or size of records).
type payloadInflater struct {
	r   io.ReaderAt
	cur *migCursor // when set, small payloads are read from its window
	zr  migInflater
	br  *bufio.Reader
	mem bytes.Reader
	out []byte
}

// migSmallPayload: payloads up to this size are taken from the cursor's
// window (a million tiny records: no pread each).
const migSmallPayload = 32 << 10

// migReadBuffer is the read size from the MIG: large enough that reading
// is a small share of inflating, small next to the 64 MiB goal.
const migReadBuffer = 256 << 10

func newPayloadInflater(r io.ReaderAt) *payloadInflater {
	return &payloadInflater{r: r, zr: newMIGInflater(), br: bufio.NewReaderSize(nil, migReadBuffer), out: make([]byte, 256<<10)}
}

func (p *payloadInflater) close() { p.zr.Close() }

// inflate inflates the zlib stream of a record payload (8 bytes after the
// name, as file(1) places it) to its end, which checks its Adler-32, and
// stops past limit bytes. It returns the inflated size and "" or why it
// failed.
func (p *payloadInflater) inflate(ctx context.Context, nameEnd, recEnd, limit int64) (int64, string) {
	start := nameEnd + migZlibOffset
	if recEnd-start < 2 {
		return 0, "the payload is too short to hold a zlib stream"
	}
	var src io.Reader = io.NewSectionReader(p.r, start, recEnd-start)
	if n := recEnd - start; p.cur != nil && n <= migSmallPayload {
		if b, _ := p.cur.at(start, int(n)); int64(len(b)) == n {
			p.mem.Reset(b)
			src = &p.mem
		}
	}
	p.br.Reset(src)
	if err := p.zr.Reset(p.br); err != nil {
		return 0, fmt.Sprintf("the payload is not a zlib stream (%v)", err)
	}
	var n int64
	for i := 0; ; i++ {
		if i&255 == 255 && ctx.Err() != nil {
			return n, "not finished: interrupted"
		}
		m, err := p.zr.Read(p.out)
		n += int64(m)
		if n > limit {
			return n, fmt.Sprintf("the payload inflates past %s (a zlib bomb?)", sizeWords(limit))
		}
		if err == io.EOF {
			return n, ""
		}
		if err != nil {
			if errors.Is(err, errMIGChecksum) {
				return n, errMIGChecksum.Error()
			}
			if n == 0 {
				return 0, fmt.Sprintf("the payload is not a zlib stream (%v)", err)
			}
			return n, fmt.Sprintf("the payload does not inflate (%v after %d bytes)", err, n)
		}
	}
}

// sizeWords says a power-of-two byte count the way the messages do.
func sizeWords(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
