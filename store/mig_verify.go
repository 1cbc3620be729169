package store

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
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
	var hdr [24]byte
	off, size := info.FirstRecord, info.Size
	for n := 0; n < migMaxRecords && off < size && size-off != migTail; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if m, _ := r.ReadAt(hdr[:], off); m < 24 || !bytes.Equal(hdr[:4], mrtsTag) {
			return nil // the chain ends here: info says how
		}
		nameLen := int64(binary.LittleEndian.Uint32(hdr[4:8]))
		next := off + 24 + int64(binary.LittleEndian.Uint32(hdr[8:12]))
		c := MIGRecordCheck{Offset: off, OK: true, Stored: max(0, next-off-24-nameLen)}
		if off+24+nameLen <= size {
			nb := make([]byte, min(nameLen, migNameCap))
			if m, _ := r.ReadAt(nb, off+24); m == len(nb) {
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
			c.Inflated, c.Detail = inflatePayload(r, off+24+nameLen, next)
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
const migMaxInflate = 1 << 40

// inflatePayload inflates the zlib stream of a record payload (8 bytes
// after the name, as file(1) places it) to the end, which checks its
// Adler-32. It returns the inflated size and "" or why it failed.
func inflatePayload(r io.ReaderAt, nameEnd, recEnd int64) (int64, string) {
	start := nameEnd + migZlibOffset
	if recEnd-start < 2 {
		return 0, "the payload is too short to hold a zlib stream"
	}
	zr, err := zlib.NewReader(io.NewSectionReader(r, start, recEnd-start))
	if err != nil {
		return 0, fmt.Sprintf("the payload is not a zlib stream (%v)", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(zr, migMaxInflate))
	if err == nil && n == migMaxInflate {
		return n, "the payload inflates past 1 TiB (a zlib bomb?)"
	}
	if err != nil {
		if errors.Is(err, zlib.ErrChecksum) {
			return n, "the payload's Adler-32 checksum does not match its data"
		}
		return n, fmt.Sprintf("the payload does not inflate (%v)", err)
	}
	return n, ""
}
