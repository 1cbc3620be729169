package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"

	"github.com/usmtkit/usmtkit/store"
)

// errno turns an error from the store into the errno the kernel gets. It
// is the only place that does. Anything that becomes EIO is logged with
// the operation and path, because the kernel shows the user nothing but
// "Input/output error".
func (f *FS) errno(op, path string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var en syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, context.Canceled):
		// The request was interrupted (the kernel sent INTERRUPT, or the
		// mount is ending). A deadline that passed is a failure instead:
		// EINTR would make the kernel and the reader's libc retry it
		// at once, forever (a mount whose object store is down spun so).
		return syscall.EINTR
	case errors.Is(err, store.ErrCorrupt), errors.Is(err, store.ErrChanged),
		errors.Is(err, store.ErrEncrypted), errors.Is(err, store.ErrUnsupported):
		// fall through to EIO below: these are store facts a user must see in the log
	case errors.As(err, &en):
		switch en {
		case syscall.ENOENT, syscall.ENOTDIR, syscall.ENAMETOOLONG, syscall.ELOOP, syscall.EINTR, syscall.EROFS:
			return en
		case syscall.EACCES, syscall.EPERM:
			return syscall.EACCES
		}
	}
	f.eio.Add(1)
	f.logf("%s %s: %v (returned EIO)", op, path, err)
	return syscall.EIO
}
