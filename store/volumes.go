package store

// The other volumes of a hard-link store. ScanState /hardlink writes a
// store with the same path on every NTFS volume that holds migrated data
// (Microsoft, "Hard-link migration store", section "Migration store path
// on multiple volumes": C:\USMTMIG\ and D:\USMTMIG\); the path given on
// its command line is the master store. On Linux each volume is its own
// mount, so a store given by one root is looked for at the same path
// below every other mount point (docs/stores.md, "Volumes").

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// OtherVolume is a folder on another mounted file system, at the same path
// relative to its mount point as the store's root, that holds a store of
// the same kind. The JSON keys are part of `info --json` (docs/cli.md).
type OtherVolume struct {
	Path       string `json:"path"`        // the StorePath on that volume
	MountPoint string `json:"mount_point"` // where that volume is mounted
	FSType     string `json:"fs_type"`     // fuseblk (ntfs-3g), ntfs3, ...
	Source     string `json:"source"`      // the device or image mounted there
	// Opened is true when the volume is part of the opened store (given
	// on the command line with the others, or added by --all-volumes).
	Opened bool `json:"opened"`
}

// volumeProbeTimeout bounds how long one mount may take to answer the
// look-up: a dead network mount must not hang every command.
var volumeProbeTimeout = 3 * time.Second

// pseudoFS are file systems that never hold a store; they are not probed.
var pseudoFS = map[string]bool{
	"proc": true, "sysfs": true, "cgroup": true, "cgroup2": true, "devtmpfs": true, "devpts": true,
	"mqueue": true, "debugfs": true, "tracefs": true, "securityfs": true, "pstore": true, "bpf": true,
	"configfs": true, "fusectl": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true,
	"nsfs": true, "efivarfs": true, "selinuxfs": true, "rpc_pipefs": true,
}

// VolumeScan is what FindOtherVolumes found.
type VolumeScan struct {
	Volumes []OtherVolume
	// Unchecked names mounts that did not answer within the probe timeout
	// (their volume may hold a part of the store; nobody can tell).
	Unchecked []string
}

// FindOtherVolumes looks for the other volumes of the directory store
// detected as ds (one or several roots of one store). It returns nothing
// for other kinds. Only the folder at the same relative path is looked at
// (a stat and the store-layout check of Detect); nothing is listed below it.
// Mounts for which skip returns true are not probed (nil probes all).
func FindOtherVolumes(ds []*Detection, skip func(Mount) bool) (*VolumeScan, error) {
	scan := &VolumeScan{}
	if len(ds) == 0 {
		return scan, nil
	}
	kind := ds[0].Kind
	if kind != KindUSMTDir && kind != KindUSMT3Dir {
		return scan, nil
	}
	mounts, err := Mounts()
	if err != nil {
		return scan, fmt.Errorf("reading the mount table: %w", err)
	}
	type key struct{ dev, ino uint64 }
	given := map[key]bool{}
	givenDevs := map[uint64]bool{}
	rels := map[string]bool{}
	var relOrder []string
	for _, d := range ds {
		if d.Kind != kind {
			return scan, nil
		}
		real, err := filepath.EvalSymlinks(d.Root)
		if err != nil {
			return scan, err
		}
		var st unix.Stat_t
		if err := unix.Stat(real, &st); err != nil {
			return scan, err
		}
		given[key{st.Dev, st.Ino}] = true
		givenDevs[st.Dev] = true
		m, err := MountOf(real)
		if err != nil {
			return scan, err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(real, m.MountPoint), "/")
		if rel == "" {
			continue // the store is a volume's root: no path to look for
		}
		if !rels[rel] {
			rels[rel] = true
			relOrder = append(relOrder, rel)
		}
	}
	type probe struct {
		m    Mount
		path string
	}
	var probes []probe
	seenMP := map[string]bool{}
	for _, m := range mounts {
		if pseudoFS[m.FSType] || givenDevs[m.Dev] || seenMP[m.MountPoint] || (skip != nil && skip(m)) {
			continue
		}
		seenMP[m.MountPoint] = true
		for _, rel := range relOrder {
			probes = append(probes, probe{m: m, path: filepath.Join(m.MountPoint, rel)})
		}
	}
	type answer struct {
		i     int
		dev   uint64
		ino   uint64
		found bool
	}
	answers := make(chan answer, len(probes))
	for i, p := range probes {
		go func(i int, p probe) {
			a := answer{i: i}
			var st unix.Stat_t
			// The folder must be on the mount probed (not on a mount
			// nested below it, which is probed on its own) and a store of
			// the same kind at its StorePath level.
			if unix.Lstat(p.path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == p.m.Dev {
				var d Detection
				d.Input = p.path
				if detectUSMTDir(&d, p.path) && d.Level == LevelStorePath && d.Kind == kind {
					a.dev, a.ino, a.found = st.Dev, st.Ino, true
				}
			}
			answers <- a
		}(i, p)
	}
	got := make([]*answer, len(probes))
	timeout := time.NewTimer(volumeProbeTimeout)
	defer timeout.Stop()
wait:
	for n := 0; n < len(probes); n++ {
		select {
		case a := <-answers:
			got[a.i] = &a
		case <-timeout.C:
			break wait
		}
	}
	seenDev := map[uint64]bool{}
	for i, p := range probes {
		a := got[i]
		if a == nil {
			if len(scan.Unchecked) == 0 || scan.Unchecked[len(scan.Unchecked)-1] != p.m.MountPoint {
				scan.Unchecked = append(scan.Unchecked, p.m.MountPoint)
			}
			continue
		}
		if !a.found || given[key{a.dev, a.ino}] || seenDev[a.dev] {
			continue // one file system mounted twice is one volume
		}
		seenDev[a.dev] = true
		scan.Volumes = append(scan.Volumes, OtherVolume{Path: p.path, MountPoint: p.m.MountPoint, FSType: p.m.FSType, Source: p.m.Source})
	}
	sort.Slice(scan.Volumes, func(i, j int) bool { return scan.Volumes[i].Path < scan.Volumes[j].Path })
	return scan, nil
}

// Paths lists the volumes' StorePaths.
func (v *VolumeScan) Paths() []string {
	var out []string
	for _, o := range v.Volumes {
		out = append(out, o.Path)
	}
	return out
}

// VolumeOptions says what OpenVolumes does with the other volumes.
type VolumeOptions struct {
	// All opens them with the given volumes as one store (--all-volumes).
	All bool
	// Skip leaves mounts out of the search: the tests of one package skip
	// the NTFS volumes other test processes mount at the same time.
	Skip func(Mount) bool
}

// OpenVolumes opens what Detect found, like OpenDetected, after looking
// for the store's other volumes. With o.All, they are opened with the given
// ones as one store. Otherwise they are named in Info().OtherVolumes and
// a warning says that only the given volumes are read. A mount table that
// cannot be read, or mounts that do not answer, are a warning too: the
// store is still opened.
func OpenVolumes(ds []*Detection, o VolumeOptions) (Store, error) {
	all := o.All
	scan, scanErr := FindOtherVolumes(ds, o.Skip)
	if scanErr != nil {
		scan = &VolumeScan{}
	}
	if all {
		for _, v := range scan.Volumes {
			d, err := Detect(v.Path)
			if err != nil {
				return nil, fmt.Errorf("opening the store's volume at %s: %w", v.Path, err)
			}
			ds = append(ds, d)
		}
	}
	s, err := OpenDetected(ds)
	if err != nil {
		return nil, err
	}
	ds2, ok := s.(*dirStore)
	if !ok {
		return s, nil
	}
	info := &ds2.info
	for _, v := range scan.Volumes {
		v.Opened = all
		info.OtherVolumes = append(info.OtherVolumes, v)
	}
	switch {
	case scanErr != nil:
		info.Warnings = append(info.Warnings, fmt.Sprintf("could not look for the store's other volumes (%v): ScanState writes a hard-link store on every NTFS volume holding migrated data; name every volume's store folder", scanErr))
	case all && len(scan.Volumes) > 0:
		info.Notes = append(info.Notes, fmt.Sprintf("--all-volumes added %s", strings.Join(scan.Paths(), ", ")))
	case !all && len(scan.Volumes) > 0:
		info.Warnings = append(info.Warnings, fmt.Sprintf("this store also has data on %s (ScanState writes a hard-link store on every NTFS volume holding migrated data): only the volumes given are read; name them all or pass --all-volumes", strings.Join(scan.Paths(), ", ")))
	}
	if len(scan.Unchecked) > 0 {
		info.Warnings = append(info.Warnings, fmt.Sprintf("%s did not answer within %s: a part of this store there cannot be ruled out", strings.Join(scan.Unchecked, ", "), volumeProbeTimeout))
	}
	return s, nil
}
