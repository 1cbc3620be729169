package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/progress"
	"github.com/usmtkit/usmtkit/store"
)

// runLsMIG lists the records of a USMT.MIG in the Windows view (File\C:\...
// is C:\...), with the bytes each record's payload takes in the file
// (compressed, and encrypted when the file is). Names are listed for
// encrypted files too: they are readable (docs/stores.md).
func runLsMIG(ctx context.Context, o *lsOptions, d *store.Detection) error {
	var werr error
	n := 0
	err := store.ListMIG(ctx, d.Root, d.MIG, func(c store.MIGRecordCheck) {
		if werr != nil {
			return
		}
		n++
		path := store.MIGWindowsPath(c.Name)
		if o.JSON {
			b, _ := json.Marshal(map[string]any{"path": path, "record_name": c.Name, "offset": c.Offset,
				"stored_bytes": c.Stored, "ok": c.OK, "detail": c.Detail})
			_, werr = fmt.Fprintln(o.Stdout, string(b))
			return
		}
		line := fmt.Sprintf("%10s  %s", progress.Bytes(c.Stored), path)
		if !c.OK {
			line += "  (" + c.Detail + ")"
		}
		_, werr = fmt.Fprintln(o.Stdout, line)
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("writing the listing: %w", werr)
	}
	if !o.JSON {
		o.notef("usmtkit: note: %d records of a USMT.MIG; sizes are the stored (compressed%s) bytes; the contents cannot be read here (usmtkit info says why)", n, map[bool]string{true: ", encrypted", false: ""}[d.MIG.Encrypted])
	}
	if d.MIG.WalkCapped {
		return fmt.Errorf("%s: the listing stops after %d records; the rest of the file, from %#x, was not looked at: %w", d.Root, d.MIG.Records, d.MIG.ChainEnd, exitcodes.ErrPartial)
	}
	if d.MIG.Damaged() {
		return fmt.Errorf("%s is damaged: the listing stops where its record chain does (usmtkit info shows how): %w", d.Root, exitcodes.ErrPartial)
	}
	return nil
}
