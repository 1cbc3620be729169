package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// migCursor reads the small parts of a MIG (record headers and names)
// through a window, so a chain of tiny records costs one read per window
// instead of two per record (a million-record walk was a million preads).
type migCursor struct {
	r    io.ReaderAt
	size int64
	buf  []byte
	off  int64 // file offset of buf[0]
	n    int   // valid bytes in buf
}

// migCursorWindow holds a record header and the longest name a Windows
// path can have (32767 UTF-16 units), so one refill serves both.
const migCursorWindow = 128 << 10

func newMIGCursor(r io.ReaderAt, size int64) *migCursor {
	return &migCursor{r: r, size: size}
}

// at returns the n bytes at off (fewer at the end of the file), valid
// until the next call.
func (c *migCursor) at(off int64, n int) ([]byte, error) {
	if off < 0 || off >= c.size || n <= 0 {
		return nil, nil
	}
	n = int(min(int64(n), c.size-off))
	if off >= c.off && off+int64(n) <= c.off+int64(c.n) {
		i := int(off - c.off)
		return c.buf[i : i+n], nil
	}
	if n > migCursorWindow {
		b := make([]byte, n)
		m, err := c.r.ReadAt(b, off)
		if m < n {
			return b[:m], err
		}
		return b, nil
	}
	if c.buf == nil {
		c.buf = make([]byte, migCursorWindow)
	}
	want := int(min(int64(len(c.buf)), c.size-off))
	m, err := c.r.ReadAt(c.buf[:want], off)
	c.off, c.n = off, m
	if m < n {
		return c.buf[:m], err
	}
	return c.buf[:n], nil
}

// migRecord is one record header as found in the file.
type migRecord struct {
	Offset  int64
	NameLen int64 // bytes of UTF-16LE name
	Size    int64 // the header's size field: name and payload
	Next    int64 // Offset + 24 + Size: where the next record starts
}

// NameEnd is where the payload starts.
func (r migRecord) NameEnd() int64 { return r.Offset + 24 + r.NameLen }

// readMIGRecord reads the record header at off. ok is false when the
// bytes there are not a whole header tagged MRTS.
func readMIGRecord(c *migCursor, off int64) (rec migRecord, ok bool) {
	h, _ := c.at(off, 24)
	if len(h) < 24 || !bytes.Equal(h[:4], mrtsTag) {
		return migRecord{Offset: off}, false
	}
	rec = migRecord{Offset: off,
		NameLen: int64(binary.LittleEndian.Uint32(h[4:8])),
		Size:    int64(binary.LittleEndian.Uint32(h[8:12]))}
	rec.Next = off + 24 + rec.Size
	return rec, true
}

// migMaxNameBytes is the longest record name read whole: 32767 UTF-16
// units, the longest path Windows allows (with the `File\` prefix it may
// be a little longer; such a name is reported, never cut).
const migMaxNameBytes = 2 * 32767

// decodeMIGName decodes a record name strictly: UTF-16LE of even length,
// surrogates paired, no NUL before the trailing padding. Anything else is
// an error saying what is wrong, never a replacement character: two
// different broken names must not become one.
func decodeMIGName(b []byte) (string, error) {
	if len(b)%2 != 0 {
		return "", fmt.Errorf("the name is %d bytes, an odd length: not UTF-16", len(b))
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c == 0:
			return "", fmt.Errorf("the name holds a NUL character at position %d", i)
		case c >= 0xD800 && c < 0xDC00:
			if i+1 >= len(u) || u[i+1] < 0xDC00 || u[i+1] >= 0xE000 {
				return "", fmt.Errorf("the name is not valid UTF-16 (an unpaired surrogate %#04x at position %d)", c, i)
			}
			i++
		case c >= 0xDC00 && c < 0xE000:
			return "", fmt.Errorf("the name is not valid UTF-16 (an unpaired surrogate %#04x at position %d)", c, i)
		}
	}
	if len(u) == 0 {
		return "", errors.New("the name is empty")
	}
	return string(utf16.Decode(u)), nil
}

// migFileStorePath maps the name of a record to the store path of the file
// it holds, in the layout of an uncompressed store:
// File\C:\Users\jdoe\a.txt is USMT/File/C$/Users/jdoe/a.txt. why says,
// when it cannot, what the name is instead. Only `File\X:\...` records are
// read: the other kinds' payloads have no known meaning.
func migFileStorePath(name string) (sp, why string) {
	kind, rest, ok := strings.Cut(name, `\`)
	if !ok {
		return "", "a record name without a kind prefix (File\\ is the only kind read)"
	}
	if !strings.EqualFold(kind, "File") {
		return "", fmt.Sprintf("a %q record: what its payload holds is not known (only File\\ records are read)", kind)
	}
	if len(rest) < 3 || rest[1] != ':' || rest[2] != '\\' || !isASCIILetter(rest[0]) {
		return "", "a File record whose path does not start with a drive (X:\\)"
	}
	parts := strings.Split(rest[3:], `\`)
	for _, p := range parts {
		switch {
		case p == "" && len(parts) == 1:
			return "", "a File record naming a drive, not a file"
		case p == "":
			return "", "a File record whose path has an empty component (\\\\, or a trailing \\: a folder?)"
		case p == "." || p == "..":
			return "", "a File record whose path holds . or .."
		case strings.ContainsRune(p, '/'):
			return "", "a File record whose path holds '/', which a Windows name cannot"
		}
	}
	return "USMT/File/" + strings.ToUpper(rest[:1]) + "$/" + strings.Join(parts, "/"), ""
}
