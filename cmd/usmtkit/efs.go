package main

import (
	"fmt"

	"github.com/usmtkit/usmtkit/store"
)

// The words verify, extract and info put next to files carrying the NTFS
// encrypted attribute (store.IsEFS; docs/stores.md "EFS").

// efsNote prints the per-file note on stderr. It is printed even with -q:
// like a warning, it is about what the data is.
func efsNote(g *globalOptions, name string) {
	fmt.Fprintf(g.Stderr, "usmtkit: note: %s: %s\n", name, store.EFSNote)
}

// efsWords is the count line.
func efsWords(n int64) string {
	return fmt.Sprintf("%d files carry the NTFS encrypted attribute: %s (their bytes are the raw EFS stream, not the user's content)", n, store.EFSNote)
}

// efsAside is appended to an OK result line: OK never hides them.
func efsAside(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d of them hold raw EFS data: decrypt on Windows", n)
}
