package store_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

func ownOnly(m store.Mount) bool { return fixtures.ForeignTestVolume(m.MountPoint, m.Source) }

// The other part of a two-volume store is found once, even when its
// volume is mounted twice; the given volume mounted elsewhere too is not
// "another volume"; a plain folder at the same path on a third volume is
// not a store and is not reported.
func TestFindOtherVolumes(t *testing.T) {
	c := fixtures.NewNTFSVolume(t, 32)
	d := fixtures.NewNTFSVolume(t, 32)
	e := fixtures.NewNTFSVolume(t, 32)
	hc := fixtures.HardLinkStore(t, c.Mount)
	name := filepath.Base(hc.StorePath)
	sd := fixtures.SecondVolumeStore(t, d.Mount, name)
	if err := os.MkdirAll(filepath.Join(e.Mount, name, "not a store"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Bind mounts: D: a second time, and C: (the given volume) elsewhere.
	binds := map[string]bool{}
	for _, src := range []string{d.Mount, c.Mount} {
		dst := t.TempDir()
		binds[dst] = true
		if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("mount --bind: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", dst).Run() })
	}
	skip := func(m store.Mount) bool { return !binds[m.MountPoint] && ownOnly(m) }
	probed := 0
	countBinds := func(m store.Mount) bool {
		if binds[m.MountPoint] {
			probed++
		}
		return skip(m)
	}
	if _, err := store.FindOtherVolumes(nil, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := store.Detect(hc.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	scan, err := store.FindOtherVolumes([]*store.Detection{ds}, countBinds)
	if err != nil {
		t.Fatal(err)
	}
	if probed != 1 { // C:'s bind is skipped before the filter: it is the given volume
		t.Errorf("%d bind mounts reached the filter, want 1 (D:'s)", probed)
	}
	if len(scan.Volumes) != 1 || filepath.Base(scan.Volumes[0].Path) != name || scan.Volumes[0].FSType == "" {
		t.Fatalf("found %+v, want only D:'s part (%s or its bind mount)", scan.Volumes, sd.StorePath)
	}
	// Opening with All merges it; without, a warning names it.
	s, err := store.OpenVolumes([]*store.Detection{ds}, store.VolumeOptions{Skip: skip})
	if err != nil {
		t.Fatal(err)
	}
	info := s.Info()
	if len(info.Roots) != 1 || len(info.OtherVolumes) != 1 || info.OtherVolumes[0].Opened || len(info.Warnings) == 0 {
		t.Errorf("without All: roots %v other %+v warnings %v", info.Roots, info.OtherVolumes, info.Warnings)
	}
	s.Close()
	s, err = store.OpenVolumes([]*store.Detection{ds}, store.VolumeOptions{All: true, Skip: skip})
	if err != nil {
		t.Fatal(err)
	}
	info = s.Info()
	if len(info.Roots) != 2 || !info.OtherVolumes[0].Opened {
		t.Errorf("with All: roots %v other %+v", info.Roots, info.OtherVolumes)
	}
	s.Close()
	// A plain folder has no other volumes to look for.
	pd, err := store.DetectPlain(filepath.Join(e.Mount, name))
	if err != nil {
		t.Fatal(err)
	}
	if scan, err := store.FindOtherVolumes([]*store.Detection{pd}, skip); err != nil || len(scan.Volumes) != 0 {
		t.Errorf("plain folder: %+v %v", scan, err)
	}
}
