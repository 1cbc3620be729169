package store

// EFS: files encrypted with the NTFS Encrypting File System. ScanState
// /efs:copyraw "copies the files in the encrypted format. The files are
// inaccessible on the destination computer until the EFS certificates are
// migrated" (Microsoft, "ScanState syntax", Encrypted file options), and
// /efs:hardlink links the encrypted file itself into a hard-link store.
// Either way the store's file carries FILE_ATTRIBUTE_ENCRYPTED and its
// bytes are not the user's content: Linux can read at most the raw EFS
// stream (ntfs-3g mounted with -o efs_raw), which only Windows, holding the
// user's EFS certificate, can turn back into the file (docs/stores.md "EFS").

import "errors"

// FileAttributeEncrypted is FILE_ATTRIBUTE_ENCRYPTED, as ntfs-3g's
// system.ntfs_attrib_be and usmtkit archives carry it in Entry.WinAttrs.
const FileAttributeEncrypted uint32 = 0x4000

// EFSNote is the words every command puts next to such a file (the
// contract of docs/cli.md: scripts may look for them).
const EFSNote = "raw EFS data: decrypt on Windows"

// IsEFS reports whether e is a regular file carrying the NTFS encrypted
// attribute.
func IsEFS(e *Entry) bool {
	return e.Type == TypeFile && e.HasWinAttr && e.WinAttrs&FileAttributeEncrypted != 0
}

// errEFSNoRaw explains the EACCES ntfs-3g gives for an encrypted file on a
// volume mounted without efs_raw.
var errEFSNoRaw = errors.New(EFSNote + "; ntfs-3g reads an encrypted file only as its raw EFS stream, and only when the volume is mounted with -o efs_raw")
