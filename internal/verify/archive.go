package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/usmtkit/usmtkit/store"
)

// Summary.Archive values.
const (
	// ArchiveIndex: the archive opened (footer and TOC validated) and was
	// checked through its TOC.
	ArchiveIndex = "index"
	// ArchiveSalvage: the archive's footer or TOC is damaged or missing;
	// the entries were found by the salvage walk.
	ArchiveSalvage = "salvage"
)

// SalvageNotice is the first StoreErrors line of a salvage-walk run: the
// damaged index is itself damage.
const SalvageNotice = "the archive's index is damaged: ran the salvage walk"

// maxChunkDetails bounds the damaged chunks named in one file's detail.
const maxChunkDetails = 3

// damage is what an archive's own checks found wrong with one entry.
type damage struct {
	header string   // the header frame's problem, if any
	chunks []string // the first damaged chunks
	nChunk int      // damaged chunks in all
	salv   string   // the salvage walk's verdict, if any
}

func (d *damage) String() string {
	var p []string
	if d.salv != "" {
		p = append(p, d.salv)
	}
	if d.header != "" {
		p = append(p, d.header)
	}
	p = append(p, d.chunks...)
	if more := d.nChunk - len(d.chunks); more > 0 {
		p = append(p, fmt.Sprintf("and %d more damaged chunks", more))
	}
	return strings.Join(p, "; ")
}

// dataDamaged is true when the file's content (not only its header) is
// damaged: the other names of its hard-link group share it.
func (d *damage) dataDamaged() bool { return d.nChunk > 0 || d.salv != "" }

func (v *run) damageOf(path string) *damage {
	if v.bad == nil {
		v.bad = map[string]*damage{}
	}
	d := v.bad[path]
	if d == nil {
		d = &damage{}
		v.bad[path] = d
	}
	return d
}

// archiveDamage is the verdict of the archive's own checks on an entry:
// its damage, or that of the path of its hard-link group holding the data.
// It is called once per entry, in walk order.
func (v *run) archiveDamage(e *store.Entry) (string, bool) {
	if v.bad == nil && v.badLink == nil {
		return "", false
	}
	d := v.bad[e.StorePath]
	group := e.Type == store.TypeFile && e.LinkID != 0 && e.Nlink > 1
	if group {
		if holder, ok := v.badLink[e.LinkID]; ok && holder != e.StorePath {
			msg := "a hard link to " + holder + ", whose data is damaged"
			if d != nil {
				msg = d.String() + "; " + msg
			}
			return msg, true
		}
		if d != nil && d.dataDamaged() {
			// The first name of the group in walk order holds the data in
			// an archive; the later names share it.
			if v.badLink == nil {
				v.badLink = map[uint64]string{}
			}
			v.badLink[e.LinkID] = e.StorePath
		}
	}
	if d == nil {
		return "", false
	}
	return d.String(), true
}

// chunks runs the archive's full check (VerifyAll) and remembers the
// damaged entries. stopped is true when the check could not finish for
// another reason than ctx (then every file is read instead); err is ctx's.
func (v *run) chunks(ctx context.Context, s store.Store, cv ChunkVerifier) (stopped bool, err error) {
	v.sum.ChunksChecked, v.sum.HeadersChecked = true, true
	var mu sync.Mutex // in case an archive checks in parallel
	err = cv.VerifyAll(ctx, func(path string, chunk int, err error) {
		mu.Lock()
		defer mu.Unlock()
		if chunk == 0 {
			// Progress and bytes checked: the logical bytes of a file's
			// data, counted when its first chunk is checked.
			if e, serr := s.Stat(path); serr == nil {
				v.readBytes(e.Size)
			}
		}
		if err == nil {
			return
		}
		if path == "" {
			v.sum.StoreErrors = append(v.sum.StoreErrors, err.Error())
			return
		}
		d := v.damageOf(path)
		if chunk < 0 {
			d.header = err.Error()
			return
		}
		d.nChunk++
		if len(d.chunks) < maxChunkDetails {
			d.chunks = append(d.chunks, err.Error())
		}
	})
	if err == nil {
		return false, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	v.sum.StoreErrors = append(v.sum.StoreErrors,
		fmt.Sprintf("the archive's chunk check stopped (%v): every file was read instead", err))
	return true, nil
}

// headers checks the archive's header frames only.
func (v *run) headers(ctx context.Context, hv HeaderVerifier) error {
	v.sum.HeadersChecked = true
	var mu sync.Mutex
	err := hv.VerifyHeaders(ctx, func(path string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			return
		}
		if path == "" {
			v.sum.StoreErrors = append(v.sum.StoreErrors, err.Error())
			return
		}
		v.damageOf(path).header = err.Error()
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		v.sum.HeadersChecked = false
		v.sum.StoreErrors = append(v.sum.StoreErrors, fmt.Sprintf("the archive's header check stopped: %v", err))
	}
	return nil
}
