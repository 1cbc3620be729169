package fusefs

import (
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// CacheTimeout is how long the kernel may keep names, attributes and
// negative lookups: the store never changes while it is mounted.
const CacheTimeout = time.Hour

// FsType is the file system type shown in /proc/self/mountinfo and df
// ("fuse.usmtkit").
const FsType = "fuse.usmtkit"

// MountConfig is how to mount (as opposed to what to show: Options).
type MountConfig struct {
	// FsName is the source column of mountinfo/df (the store path).
	FsName string
	// AllowOther lets other users see the mount (fusermount needs
	// user_allow_other in /etc/fuse.conf).
	AllowOther bool
	// Direct calls mount(2) itself (root only) instead of fusermount3,
	// with MS_RDONLY|MS_NOSUID|MS_NODEV.
	Direct bool
	Debug  bool
	Logger *log.Logger // go-fuse's log; nil: the FS logger
	// PanicHandler, when set, sees panics in request handlers (tests fail
	// on them); the default logs and answers EIO.
	PanicHandler func(any) fuse.Status
}

// Server is a running mount.
type Server struct {
	*fuse.Server
	Mountpoint string
	// Passthrough is true when the kernel offered FUSE passthrough and the
	// store's files have descriptors: reads then bypass this process. (go-fuse
	// still falls back to normal reads if the first registration fails.)
	Passthrough bool
	fsys        *FS
	stopPrune   chan struct{}
	pruneOnce   sync.Once
}

// Wait waits until the mount ends (unmounted, or the server stopped), then
// closes the store files the kernel left open (openHandles).
func (s *Server) Wait() {
	s.Server.Wait()
	s.stopPruning()
	if n := s.fsys.open.closeAll(); n > 0 {
		s.fsys.logf("closed %d store files the kernel had not released when the mount ended", n)
	}
}

// mountOptions are the go-fuse options every usmtkit mount uses.
func (f *FS) mountOptions(mnt string, c MountConfig) *gofs.Options {
	timeout := CacheTimeout
	logger := c.Logger
	if logger == nil {
		logger = f.opts.Logger
	}
	o := &gofs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &gofs.StableAttr{Ino: rootIno},
		UID:             f.opts.UID,
		GID:             f.opts.GID,
		Logger:          logger,
	}
	o.MountOptions = fuse.MountOptions{
		FsName: c.FsName,
		Name:   "usmtkit",
		// "ro" reaches fusermount3 (which turns it into MS_RDONLY);
		// default_permissions makes the kernel check the modes we report.
		Options:    []string{"ro", "default_permissions"},
		AllowOther: c.AllowOther,
		// 1 MiB requests: safe because replies are byte slices, never
		// spliced (TECH-NOTES 2.2: splicing 1 MiB + header overflows the pipe).
		MaxWrite:             1 << 20,
		DisableSplice:        true,
		MaxBackground:        64,
		IgnoreSecurityLabels: true,
		Debug:                c.Debug,
		Logger:               logger,
		// The kernel reads MS_RDONLY from the flags, not from Options, on a
		// direct mount (observed: Options "ro" alone showed rw in mountinfo).
		DirectMountStrict: c.Direct,
		DirectMountFlags:  syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV,
		MaxStackDepth:     1,
	}
	if f.passthroughExpected() {
		// No READ is expected: see passthroughMaxWrite.
		o.MountOptions.MaxWrite = passthroughMaxWrite
	}
	if c.PanicHandler != nil {
		o.MountOptions.PanicHandler = c.PanicHandler
	}
	return o
}

// Mount mounts f on mnt and starts serving. The caller checks the
// mountpoint first (CheckMountpoint) and stops with Server.Unmount.
func (f *FS) Mount(mnt string, c MountConfig) (*Server, error) {
	var srv *fuse.Server
	err := f.withFewReaders(func() error {
		var err error
		srv, err = f.serve(mnt, c)
		return err
	})
	if err != nil {
		return nil, mountError(mnt, c, err)
	}
	s := &Server{Server: srv, Mountpoint: mnt, fsys: f, stopPrune: make(chan struct{})}
	f.mounted.Store(true)
	if f.inodes.limit > 0 {
		go f.inodes.prune(srv, s.stopPrune)
	}
	// Requests may already arrive: until this is set files are opened
	// with handles, which keep working after it (openless.go).
	f.noOpen.Store(f.archivesOnly() && srv.KernelSettings().Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0)
	if os.Geteuid() == 0 {
		tuneReadahead(mnt)
	}
	s.Passthrough = f.PassthroughCapable() && os.Geteuid() == 0 &&
		srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH != 0
	return s, nil
}

// serve is gofs.Mount with the request bridge wrapped by rawFS when the
// store's files may go through passthrough (backing.go).
func (f *FS) serve(mnt string, c MountConfig) (*fuse.Server, error) {
	o := f.mountOptions(mnt, c)
	raw := gofs.NewNodeFS(f.Root(), o)
	if f.PassthroughCapable() && os.Geteuid() == 0 {
		f.backings = &backings{max: maxBackings, logf: f.logf}
		raw = &rawFS{RawFileSystem: raw, b: f.backings}
	}
	srv, err := fuse.NewServer(raw, mnt, &o.MountOptions)
	if err != nil {
		return nil, err
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		// As gofs.Mount: the serve loop ends by itself when the mount fails.
		return nil, err
	}
	return srv, nil
}

// mountError adds the next step to the errors users meet.
func mountError(mnt string, c MountConfig, err error) error {
	msg := err.Error()
	switch {
	case c.AllowOther && strings.Contains(msg, "allow_other"):
		return fmt.Errorf("mounting %s: --allow-other is not allowed for this user: add the line user_allow_other to /etc/fuse.conf (as root), or mount without --allow-other: %w", mnt, err)
	case strings.Contains(msg, "fusermount") && strings.Contains(msg, "not found"),
		strings.Contains(msg, "executable file not found"):
		return fmt.Errorf("mounting %s: fusermount3 is missing: install the fuse3 package, or run usmtkit mount as root: %w", mnt, err)
	case strings.Contains(msg, "/dev/fuse") || strings.Contains(msg, "no such device"):
		return fmt.Errorf("mounting %s: FUSE is not available here (/dev/fuse): load the fuse module (modprobe fuse) or, in a container, pass --device /dev/fuse: %w", mnt, err)
	case strings.Contains(msg, "operation not permitted") || strings.Contains(msg, "permission denied"):
		return fmt.Errorf("mounting %s: not permitted: check that fusermount3 is setuid root (Debian: package fuse3), or run as root: %w", mnt, err)
	}
	return fmt.Errorf("mounting %s: %w", mnt, err)
}

// readaheadKB is the kernel readahead set on our mounts as root: the
// default 128 KiB caps every sequential FUSE read at 128 KiB although the
// mount accepts 1 MiB requests (TECH-NOTES 2.2: 1.6 -> 2.2 GB/s loopback).
const readaheadKB = 1024

// tuneReadahead raises the mount's backing-device readahead; failures
// only cost speed and are ignored.
func tuneReadahead(mnt string) {
	var st unix.Stat_t
	if unix.Stat(mnt, &st) != nil {
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	_ = os.WriteFile(p, []byte(strconv.Itoa(readaheadKB)), 0)
}

// stopPruning ends the inodeCap's goroutine (once; Wait may be called
// more than once).
func (s *Server) stopPruning() {
	s.pruneOnce.Do(func() { close(s.stopPrune) })
}

// Unmount unmounts and, once it worked, stops the inodeCap's goroutine.
func (s *Server) Unmount() error {
	err := s.Server.Unmount()
	if err == nil {
		s.stopPruning()
	}
	return err
}
