package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/store"
)

// migVerifySummary is the --json summary of verify on a USMT.MIG.
type migVerifySummary struct {
	Type      string   `json:"type"`
	Store     string   `json:"store"`
	Level     string   `json:"level"` // "contents" or "structure"
	Encrypted bool     `json:"encrypted"`
	Evidence  string   `json:"encryption_evidence"`
	Records   int      `json:"records"`
	Corrupted int      `json:"corrupted"`
	Damage    []string `json:"file_damage"`
	Note      string   `json:"note,omitempty"`
	ExitCode  int      `json:"exit_code"`
}

// runVerifyMIG checks a USMT.MIG as usmtutils /verify would report it:
// the structure always, and for an unencrypted file every record's zlib
// payload (inflated in a stream, Adler-32 checked). docs/verify.md, USMT.MIG.
func runVerifyMIG(ctx context.Context, o *verifyOptions, d *store.Detection, report string) (*migVerifySummary, error) {
	info := d.MIG
	sum := migVerifySummary{Type: "summary", Store: d.Root, Level: "contents", Encrypted: info.Encrypted,
		Evidence: info.EncryptionEvidence, Damage: []string{}}
	if info.Encrypted {
		sum.Level = "structure"
		sum.Note = fmt.Sprintf("the contents were not checked: the file is encrypted (%s); on Windows run: usmtutils /verify:failureonly %s /decrypt /key:KEY (the key is in the ConfigMgr console, User State Migration > recovery information)", info.EncryptionEvidence, d.Root)
	}
	switch {
	case info.Truncated:
		sum.Damage = append(sum.Damage, fmt.Sprintf("truncated: a record runs past the end of the file at %#x", info.ChainEnd))
	case info.ChainBroken:
		sum.Damage = append(sum.Damage, fmt.Sprintf("the record chain breaks at %#x before the end of the file", info.ChainEnd))
	case info.TrailingGarbage:
		sum.Damage = append(sum.Damage, fmt.Sprintf("%d bytes follow the last record at %#x", info.Size-info.ChainEnd, info.ChainEnd))
	case info.FirstRecord < 0:
		sum.Damage = append(sum.Damage, "no record chain could be walked")
	case info.WalkCapped:
		sum.Damage = append(sum.Damage, fmt.Sprintf("not checked: the walk stops after %d records; the rest of the file, from %#x, was not looked at", info.Records, info.ChainEnd))
	}
	var werr error
	emit := func(format string, a ...any) {
		if werr == nil {
			_, werr = fmt.Fprintf(o.Stdout, format, a...)
		}
	}
	err := store.VerifyMIG(ctx, d.Root, info, func(c store.MIGRecordCheck) {
		sum.Records++
		status := "OK"
		if !c.OK {
			status = "CORRUPTED"
			sum.Corrupted++
		}
		name := store.MIGWindowsPath(c.Name)
		if o.JSON {
			if report == "all" || !c.OK {
				b, _ := json.Marshal(map[string]any{"type": "record", "path": name, "record_name": c.Name,
					"offset": c.Offset, "status": status, "detail": c.Detail})
				emit("%s\n", b)
			}
			return
		}
		if report == "all" || (!c.OK && report != "catalog") {
			if c.Detail != "" {
				emit("%s\t%s\t%s\n", name, status, c.Detail)
			} else {
				emit("%s\t%s\n", name, status)
			}
		}
	})
	if err != nil {
		return &sum, err
	}
	bad := sum.Corrupted > 0 || len(sum.Damage) > 0
	if bad {
		sum.ExitCode = exitcodes.Partial
	}
	if o.JSON {
		b, _ := json.Marshal(sum)
		emit("%s\n", b)
	} else if !o.inFleet { // in a fleet, the store's one line says it (fleet_verify.go)
		if sum.Level == "contents" {
			emit("level:       contents (structure, and every record's zlib payload inflated with its Adler-32 checked)\n")
		} else {
			emit("level:       structure (header, every record inside the file, the chain reaches the end)\n")
		}
		emit("records:     %d checked, %d CORRUPTED\n", sum.Records, sum.Corrupted)
		for _, dmg := range sum.Damage {
			emit("damage:      %s\n", dmg)
		}
		if sum.Note != "" {
			emit("note:        %s\n", sum.Note)
		}
		emit("based on:    the public descriptions of USMT.MIG (file(1), PhotoRec); what a payload holds beyond its zlib stream is not known (docs/stores.md)\n")
	}
	if werr != nil {
		return &sum, fmt.Errorf("writing the report: %w", werr)
	}
	if bad {
		return &sum, fmt.Errorf("%s: %d of %d records CORRUPTED, %d problems with the file as a whole: %w", d.Root, sum.Corrupted, sum.Records, len(sum.Damage), exitcodes.ErrPartial)
	}
	return &sum, nil
}
