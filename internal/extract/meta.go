package extract

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/store"
)

// fileTimes is the access and last write time written for e.
func fileTimes(e *store.Entry) []unix.Timespec {
	return []unix.Timespec{unix.NsecToTimespec(e.AtimeNs), unix.NsecToTimespec(e.MtimeNs)}
}

// applyMeta sets the times (ns precision) and, where the target keeps
// them, the creation time and Windows attributes of a written file or
// folder. fd is an open descriptor of it, or -1. Failures are counted and
// reported, never fatal.
func (w *writer) applyMeta(dirfd int, name string, fd int, e *store.Entry, rel string) {
	var err error
	if fd >= 0 {
		err = futimens(fd, fileTimes(e))
	} else {
		err = unix.UtimesNanoAt(dirfd, name, fileTimes(e), unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		w.metaFailed(rel, "setting times", err)
	}
	if !e.HasBtime && !e.HasWinAttr {
		return
	}
	if !w.tgt.NTFS3G && w.noXattr {
		w.res.MetaUnsupported++
		return
	}
	ofd := fd
	if ofd < 0 {
		flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
		if ofd, err = unix.Openat(dirfd, name, flags, 0); err != nil {
			w.metaFailed(rel, "opening to set attributes", err)
			return
		}
		defer unix.Close(ofd)
	}
	set := func(attr string, val []byte) {
		err := unix.Fsetxattr(ofd, attr, val, 0)
		if err == nil {
			return
		}
		if !w.tgt.NTFS3G && (errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM)) {
			w.noXattr = true
			return
		}
		w.metaFailed(rel, "setting "+attr, err)
	}
	if w.tgt.NTFS3G {
		var b [8]byte
		if e.HasBtime {
			binary.BigEndian.PutUint64(b[:], store.UnixNsToFiletime(e.BtimeNs))
			set("system.ntfs_crtime_be", b[:8])
		}
		if e.HasWinAttr {
			binary.BigEndian.PutUint32(b[:4], e.WinAttrs)
			set("system.ntfs_attrib_be", b[:4])
		}
		return
	}
	if e.HasBtime {
		set(XattrCrtime, []byte(time.Unix(0, e.BtimeNs).UTC().Format(time.RFC3339Nano)))
	}
	if e.HasWinAttr && !w.noXattr {
		set(XattrAttrs, []byte(fmt.Sprintf("0x%08x", e.WinAttrs)))
	}
	if w.noXattr {
		w.res.MetaUnsupported++
	}
}

// futimens sets the times of an open file or folder (utimensat with a
// NULL path), at full nanosecond precision.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// The xattrs that keep Windows metadata on targets other than ntfs-3g.
const (
	XattrCrtime = "user.usmtkit.crtime" // creation time, RFC 3339 UTC with ns
	XattrAttrs  = "user.usmtkit.attrs"  // FILE_ATTRIBUTE_* bits, "0x%08x"
)

func (w *writer) metaFailed(rel, what string, err error) {
	w.res.MetaFailures++
	if w.res.MetaError == "" {
		w.res.MetaError = fmt.Sprintf("%s on %s/%s: %v", what, w.dest, rel, err)
	}
}
