package main

import (
	"github.com/urfave/cli/v2"

	"github.com/usmtkit/usmtkit/store"
)

// skipVolume leaves mounts out of the search for a store's other volumes;
// nil in the program. The tests set it to skip the NTFS volumes that the
// tests of other packages mount at the same time.
var skipVolume func(store.Mount) bool

// volumeCommands are the commands that read a store and so take
// --all-volumes (docs/cli.md): every reading command, and rd, which must
// remove a store from every volume it spans.
var volumeCommands = map[string]bool{
	"info": true, "ls": true, "verify": true, "index": true, "extract": true,
	"compress": true, "mount": true, "hardlinks": true, "rd": true,
}

const allVolumesFlag = "all-volumes"

// addVolumeFlag gives a store-reading command --all-volumes and copies it
// into the global options before the command's action runs, so every
// command reaches openDetected with it set and none parses it itself.
// newApp calls it for every command; it is idempotent (the command list
// is shared by every run of newApp in one process).
func addVolumeFlag(cmd *cli.Command) {
	if !volumeCommands[cmd.Name] {
		return
	}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == allVolumesFlag {
				return
			}
		}
	}
	cmd.Flags = append(cmd.Flags, &cli.BoolFlag{Name: allVolumesFlag,
		Usage: "also open the store's folders at the same path on every other mounted volume (a hard-link store spans every NTFS volume holding migrated data)"})
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		globalsOf(c).AllVolumes = c.Bool(allVolumesFlag)
		if before != nil {
			return before(c)
		}
		return nil
	}
}
