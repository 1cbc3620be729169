package fusefs

import (
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Fewer request readers than Ps, for folder mounts.
//
// go-fuse starts up to GOMAXPROCS (at least 2) goroutines reading
// /dev/fuse, read when it creates the server; between requests each of
// them sits in a blocking read(2), and so does its P. With every P in a
// system call, the runtime's monitor thread takes one back within 20 µs
// and hands it to a new spinning thread (a futex wake, a few nanosleeps
// and a context switch), and keeps polling every 20 µs while that goes
// on: on a 2-CPU machine a folder mount's requests (LOOKUP, OPEN,
// RELEASE: small and many, each file's data going through passthrough)
// cost more CPU in that machinery than in their handlers. Creating the
// server with GOMAXPROCS at 1 gives it go-fuse's minimum of readers (2,
// and a third while one of them hands over), and raising GOMAXPROCS to at
// least minServingProcs afterwards leaves one P idle while they all wait,
// which the monitor then leaves alone (docs/mount.md, "Folder mount,
// third round": 20-25 % fewer context switches and 10-20 % less server
// CPU per file; the two extra Ps' caches and pools cost 1-2 MiB of
// memory, which passthroughMaxWrite below gives back).
//
// Only for mounts of directory stores alone: an archive mount decodes in
// its request handlers, and on a big machine more readers than 3 let more
// decodes run at once. GOMAXPROCS set in the environment is left alone.

// minServingProcs is GOMAXPROCS after the server is made: more than the 3
// readers go-fuse's minimum allows.
const minServingProcs = 4

// procsMu serialises the GOMAXPROCS dance between mounts made at the same
// time in one process (tests).
var procsMu sync.Mutex

// directoriesOnly reports whether every store of f is a directory store
// (their files go through passthrough, or through pread when it is off).
func (f *FS) directoriesOnly() bool {
	if len(f.trees) == 0 {
		return false
	}
	for _, t := range f.trees {
		if !t.st.Info().Kind.IsDirectory() {
			return false
		}
	}
	return true
}

// withFewReaders runs mount (which creates the go-fuse server) with
// GOMAXPROCS at 1 when f is served better by few readers (above), and
// then sets GOMAXPROCS to at least minServingProcs.
func (f *FS) withFewReaders(mount func() error) error {
	if !f.directoriesOnly() || os.Getenv("GOMAXPROCS") != "" {
		return mount()
	}
	procsMu.Lock()
	defer procsMu.Unlock()
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(max(prev, minServingProcs))
	return mount()
}

// passthroughMaxWrite is the request size of mounts whose reads are
// expected to go through passthrough: READs then do not reach this
// process, and the 1 MiB request buffers the other mounts use (one per
// reader and more in go-fuse's pools, per P; a reused one is zeroed
// whole) are memory for nothing: with the 4 Ps above, reading everything
// on the 2 GB store peaked at 30.8-31.6 MiB with 1 MiB requests and
// 28.2-28.8 with 128 KiB, where the build before both changes was at
// 28.2-29.2 (docs/mount.md, "Folder mount, third round"). Should
// passthrough be refused at the first OPEN after all, reads are served
// here in 128 KiB requests: slower, not wrong.
const passthroughMaxWrite = 128 << 10

// passthroughExpected reports whether every file of f should be read
// through FUSE passthrough: directory stores only, not turned off, as
// root (FUSE_DEV_IOC_BACKING_OPEN needs CAP_SYS_ADMIN), and a kernel of
// 6.9 or later (the first with FUSE passthrough; the INIT reply that
// says so comes after the request size is fixed).
func (f *FS) passthroughExpected() bool {
	if !f.directoriesOnly() || f.opts.NoPassthrough || os.Geteuid() != 0 {
		return false
	}
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 6, 9)
}

// kernelAtLeast reports whether a kernel release string ("6.18.44-fc")
// is major.minor or later; false when it cannot be read.
func kernelAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(release, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
