// Package safeio is the one layer through which usmtkit touches the file
// system of a source (a store folder or file, a live volume, an archive
// being read) and checks where its outputs go. It is the place to look
// when asking "can usmtkit write to, or change, the store?" — the answer
// must follow from this package alone (docs/safety.md).
//
// # Reading a source
//
// Every source file or folder is opened by OpenDirPath / OpenFilePath (a
// path given by the user or derived from one) or, below an open folder,
// by Dir.OpenDir / Dir.OpenFile / Dir.Stat / Dir.Readlink. Each open is
//
//	O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOATIME
//
// O_NOATIME is dropped for the rest of a tree once the kernel refuses it
// (EPERM: it needs ownership or CAP_FOWNER); the open stays read-only.
// O_NOFOLLOW means no final symlink is ever followed and O_NONBLOCK means
// a FIFO put where a file was listed cannot hang the reader. A name below
// an open Dir is resolved relative to its descriptor (openat, statx,
// readlinkat), so the kernel sees one component per call: a walk costs
// time linear in the tree's size however deep it is, and paths longer
// than PATH_MAX (4096 bytes) stay readable. Full paths longer than that
// are reached by walking their components one openat at a time.
//
// # Writing outputs
//
// CheckOutside is the one rule for "may this output path be written":
// no folder above it (and not the output itself) may be a store root, by
// device and inode after symlinks are resolved. RootsBelow is the
// converse for a folder that will receive many files (extract, mount).
// CreateAtomic is the one way to create an output file under its final
// name only once it is complete.
//
// # Mounts
//
// Mounts and MountOf are the one reader of /proc/self/mountinfo.
package safeio
