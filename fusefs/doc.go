// Package fusefs serves any store.Store as a read-only FUSE file system
// (go-fuse v2, inode API). It is a thin adapter: every answer comes from
// the store's Stat, ReadDir and Open, on demand, so memory follows the
// kernel's dentry cache and not the size of the store. It imports nothing
// of usmtkit but package store, and no CLI library; cmd/usmtkit/cmd_mount.go
// drives it.
//
// # Views
//
// The same store can be shown two ways (Options.View):
//
//	windows (default)                     store
//	C/Users/jdoe/Documents/a.docx         USMT/File/C$/Users/jdoe/Documents/a.docx
//	D/Data/shared.xlsx                    USMT/File/D$/Data/shared.xlsx
//	_usmt_store_control/catalog.mig       USMT/catalog.mig
//
// In the windows view the root holds one folder per drive folder of the
// store's File folder (USMT/File/C$ shown as "C"; a name that is not a
// drive folder is shown as it is) and, when the USMT folder holds anything
// besides File, a folder named ControlDir with those entries (catalog.mig,
// migstate.dat, status.~lg). A store without a USMT layout (a plain
// folder, or an archive of one) looks the same in both views. Entries at
// the store root next to USMT/ are only shown by the store view.
//
// A copy of a state migration point share (NewShare) shows one folder per
// store id, each in the chosen view. A member that cannot be read (a
// USMT.MIG, encrypted or not, or a folder that failed to open) is a folder
// holding only README.txt, which says why, and carries the same text in
// the user.usmtkit.unreadable extended attribute.
//
// # Inode numbers
//
// Numbers are stable across mounts of the same store and need no table:
//
//	files      xxhash64("f" 0 member 0 LinkID)     all hard links of a group share it
//	           xxhash64("p" 0 member 0 storePath)  files without a LinkID, symlinks, others
//	dirs       xxhash64("d" 0 member 0 storePath)  (the same number in both views)
//	folded     xxhash64("D" 0 member 0 mountPath)  a directory reached through a
//	                                                case-insensitive match (see below)
//	virtual    xxhash64("v" 0 member 0 name)       share members, README.txt, view roots
//	root       1
//
// member is the store id in a share mount and "" otherwise. A hash of 0, 1
// or 2^64-1 (reserved by FUSE and go-fuse) is moved to 2, 3 or 2^64-2.
// Two different entries get the same number with probability about n²/2^65
// for n entries: about 3·10⁻⁸ for a million entries. go-fuse returns the
// live Inode when a number is already known, which is what makes every
// name of a hard-link group the same file to the kernel.
//
// # Link counts
//
// Files report the store's Entry.Nlink, at least 1. Archives record the
// number of names of a link group inside the archive, which is exactly the
// number of names in the mount. Directory stores report what the source
// file system says: in a hard-link store that includes the live profile's
// name outside the store, and ntfs-3g may count a DOS 8.3 name as a link,
// so the count can be higher than the names visible in the mount (never
// lower). Counting the names inside a directory store would need a walk of
// the whole store at mount time and memory in proportion to it; a higher
// count is harmless to tar, rsync -H, cp -a and du, which use it only to
// decide whether to remember an inode. Directories report 1, which tells
// find(1) not to use its leaf optimisation (always correct).
//
// # Attributes and extended attributes
//
// Sizes, nanosecond times and st_blocks = ceil(size/512) come from the
// entry. Owner and mode are synthesised (Options.UID/GID, 0444 for files
// and 0555 for directories minus Options.Umask): Windows data has no POSIX
// owner. Windows metadata is exposed as user.* extended attributes, listed
// by listxattr only when the store knows them:
//
//	user.usmtkit.winpath    the Windows path, e.g. C:\Users\jdoe\a.docx
//	user.usmtkit.attrs      FILE_ATTRIBUTE_* bits, 8 lower-case hex digits, e.g. 00000021
//	user.usmtkit.crtime     creation time, RFC 3339 in UTC with 9 fraction digits,
//	                        e.g. 2023-11-14T09:30:15.987654321Z
//	user.usmtkit.storepath  the path inside the store, e.g. USMT/File/C$/Users/jdoe/a.docx
//	user.usmtkit.unreadable why a share member cannot be shown (member folders only)
//
// # Case-insensitive lookup
//
// With Options.CaseInsensitive a name that is not found exactly is matched
// with strings.EqualFold against the directory's listing (one ReadDir per
// miss). A file found this way is the same inode as its exact name (to
// the kernel it looks like a hard link). A directory found this way gets
// its own inode number (the "folded" row above) because Linux allows only
// one dentry per directory inode; everything below it is reached through
// that spelling. Names that differ only in case (both exist) are never
// folded: the lookup fails rather than pick one. Listings always show the
// stored names. EqualFold is Unicode simple folding, close to but not the
// same as NTFS's upcase table (e.g. "ß" does not match "SS").
//
// # Reads
//
// Open opens the store file and returns FOPEN_KEEP_CACHE (the data never
// changes) and FOPEN_NOFLUSH (nothing is written, so close(2) sends no
// FLUSH). When every store of the mount is an archive, Open answers ENOSYS
// instead and the kernel (FUSE_NO_OPEN_SUPPORT) opens every file without
// OPEN or RELEASE requests; the node then serves READs by itself from a
// bounded LRU of open store files (openless.go). A handle whose store file has a descriptor (directory stores)
// offers it for FUSE passthrough (fs.FilePassthroughFder): when the
// mounting process is root and the kernel supports it, the kernel reads
// the backing file itself and no READ reaches this process. Otherwise, and
// for archives, reads go through File.ReadAt; the archive keeps its own
// bounded cache of decoded chunks. An archive file answers a read inside
// one decoded chunk with the chunk's own bytes, which the reply is written
// from without a copy, and reports what a random read decoded beyond the
// request (ReadSpan); the adapter gives those bytes to the kernel's page
// cache in the background (FUSE_NOTIFY_STORE, pagecache.go), so the next
// read there never reaches this process.
//
// # Errors
//
// Every error becomes an errno in one place (FS.errno): not found gives
// ENOENT, permission EACCES, a cancelled request EINTR, and everything
// else, store.ErrCorrupt included, EIO with the cause logged. Every write
// (create, write, unlink, mkdir, rename, chmod, utimes, setxattr, ...)
// gives EROFS; the mount is also read-only for the kernel (MS_RDONLY).
package fusefs
