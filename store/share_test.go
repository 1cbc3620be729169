package store_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// shareCopyTree lays out every store depth a copy of a share can have
// (docs/stores.md, "Share copies"), with folder names that are not 64-hex
// ids, an SMPSTORE folder holding a folder that is no store, and an
// SMPSTORE folder holding nothing.
func shareCopyTree() fixtures.Tree {
	dirStore := func(t fixtures.Tree, base, top string) {
		t[base+"/"+top+"/catalog.mig"] = fixtures.File{Data: fixtures.PseudoRandom(base+"/catalog", 256)}
		t[base+"/"+top+"/File/C$/Users/jdoe/a.txt"] = fixtures.File{Data: fixtures.Text(base+"/a", 100)}
	}
	t := fixtures.Tree{}
	dirStore(t, "SMPSTORE_1A2B3C4D$/PC042", "USMT")                                                // SMPSTORE_x/<id>/USMT/...
	t["SMPSTORE_1A2B3C4D$/PC043/USMT.MIG"] = fixtures.File{Data: fixtures.MIGFile(false, nil)}     // SMPSTORE_x/<id>/USMT.MIG
	t["SMPSTORE_1A2B3C4D$/PC044/USMT/USMT.MIG"] = fixtures.File{Data: fixtures.MIGFile(true, nil)} // SMPSTORE_x/<id>/USMT/USMT.MIG
	dirStore(t, "SMPSTORE_1A2B3C4D$/PC045", "USMT3")                                               // SMPSTORE_x/<id>/USMT3/...
	t["SMPSTORE_1A2B3C4D$/leftover/readme.txt"] = fixtures.File{Data: []byte("not a store")}       // no store inside
	t["SMPSTORE_9F9F9F9F$/notes/x.txt"] = fixtures.File{Data: []byte("x")}                         // an SMPSTORE folder with none
	dirStore(t, "pc050", "USMT")                                                                   // <id>/USMT/... at the top
	t["pc051/USMT.MIG"] = fixtures.File{Data: fixtures.MIGFile(false, nil)}                        // <id>/USMT.MIG at the top
	t["logs/scan.log"] = fixtures.File{Data: []byte("log")}                                        // no store: a note
	return t
}

func TestShareCopyDepths(t *testing.T) {
	root := t.TempDir()
	fixtures.Build(t, root, shareCopyTree())
	d, err := store.Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != store.KindSMP || d.Level != store.LevelShare {
		t.Fatalf("kind %s level %s, want a share", d.Kind, d.Level)
	}
	type want struct {
		kind      store.Kind
		input     string
		encrypted bool
		err       bool
	}
	wants := map[string]want{
		"/pc050":                      {kind: store.KindUSMTDir, input: "pc050"},
		"/pc051":                      {kind: store.KindMIG, input: "pc051/USMT.MIG"},
		"SMPSTORE_1A2B3C4D$/PC042":    {kind: store.KindUSMTDir, input: "SMPSTORE_1A2B3C4D$/PC042"},
		"SMPSTORE_1A2B3C4D$/PC043":    {kind: store.KindMIG, input: "SMPSTORE_1A2B3C4D$/PC043/USMT.MIG"},
		"SMPSTORE_1A2B3C4D$/PC044":    {kind: store.KindMIG, input: "SMPSTORE_1A2B3C4D$/PC044", encrypted: true},
		"SMPSTORE_1A2B3C4D$/PC045":    {kind: store.KindUSMT3Dir, input: "SMPSTORE_1A2B3C4D$/PC045"},
		"SMPSTORE_1A2B3C4D$/leftover": {err: true, input: "SMPSTORE_1A2B3C4D$/leftover"},
		"SMPSTORE_9F9F9F9F$/notes":    {err: true, input: "SMPSTORE_9F9F9F9F$/notes"},
	}
	if len(d.Members) != len(wants) {
		t.Errorf("%d members, want %d: %+v", len(d.Members), len(wants), d.Members)
	}
	for _, m := range d.Members {
		key := m.Share + "/" + m.ID
		w, ok := wants[key]
		if !ok {
			t.Errorf("unexpected member %s: %+v", key, m)
			continue
		}
		if (m.Err != "") != w.err || (!w.err && (m.Kind != w.kind || m.Encrypted != w.encrypted || m.Size <= 0)) {
			t.Errorf("member %s: %+v, want %+v", key, m, w)
		}
		if m.Input != filepath.Join(root, w.input) {
			t.Errorf("member %s: input %s, want %s", key, m.Input, filepath.Join(root, w.input))
		}
		if w.err {
			continue
		}
		// What Input names must itself be that store.
		md, err := store.Detect(m.Input)
		if err != nil || md.Kind != w.kind {
			t.Errorf("member %s: detecting its input: %v %+v", key, err, md)
		}
	}
	if len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], "SMPSTORE_9F9F9F9F$ holds no store") {
		t.Errorf("warnings %q, want one about SMPSTORE_9F9F9F9F$", d.Warnings)
	}
	if p := d.Problems(); len(p) != 3 {
		t.Errorf("problems %q: want the warning and the two folders without a store", p)
	}
	if !strings.Contains(strings.Join(d.Notes, "\n"), "1 folder(s) of "+root+" hold no store and were left out: logs") {
		t.Errorf("notes %q lack the folder without a store", d.Notes)
	}

	// NoSizes leaves folder stores unmeasured, MIG sizes known.
	d2, err := store.DetectWith(root, store.DetectOptions{NoSizes: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range d2.Members {
		if m.Kind == store.KindUSMTDir && m.Size != 0 || m.Kind == store.KindMIG && m.Err == "" && m.Size == 0 {
			t.Errorf("NoSizes: %+v", m)
		}
	}

	// One SMPSTORE folder given alone is a share of its own members.
	one, err := store.Detect(filepath.Join(root, "SMPSTORE_1A2B3C4D$"))
	if err != nil || one.Kind != store.KindSMP || len(one.Members) != 5 {
		t.Fatalf("one SMPSTORE folder: %v %+v", err, one)
	}
	// An SMPSTORE folder with nothing in it at all is a share with a warning.
	empty := t.TempDir() + "/SMPSTORE_00000000$"
	fixtures.Build(t, empty, fixtures.Tree{})
	e, err := store.Detect(empty)
	if err != nil || e.Kind != store.KindSMP || len(e.Members) != 0 || len(e.Problems()) != 1 {
		t.Fatalf("empty SMPSTORE folder: %v %+v", err, e)
	}
}

// A folder holding one store under an ordinary name is a path one level too
// high (exit 10 with the folder to use), not a share of one; a single store
// under a 64-hex id, or a single bare USMT.MIG, is a share.
func TestShareCopyOfOne(t *testing.T) {
	dir := filepath.Dir(fixtures.USMT4(t, t.TempDir())) // <dir>/store
	if _, err := store.Detect(dir); !errors.Is(err, store.ErrNoStore) || !strings.Contains(err.Error(), "holds one") {
		t.Fatalf("one store one level down: %v", err)
	}
	hex := t.TempDir()
	fixtures.Build(t, filepath.Join(hex, fixtures.SMPID(7)), fixtures.Tree{"USMT/catalog.mig": fixtures.File{Data: []byte("c")},
		"USMT/File/C$/a.txt": fixtures.File{Data: []byte("a")}})
	if d, err := store.Detect(hex); err != nil || d.Kind != store.KindSMP || len(d.Members) != 1 {
		t.Fatalf("one 64-hex store: %v %+v", err, d)
	}
	bare := t.TempDir()
	fixtures.Build(t, bare, fixtures.Tree{"PC1/USMT.MIG": fixtures.File{Data: fixtures.MIGFile(true, nil)}})
	d, err := store.Detect(bare)
	if err != nil || d.Kind != store.KindSMP || len(d.Members) != 1 || !d.Members[0].Encrypted {
		t.Fatalf("one bare MIG: %v %+v", err, d)
	}
}
