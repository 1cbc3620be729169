package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/usmtkit/usmtkit/objstore"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/usmtkit/usmtkit/compress"
	"github.com/usmtkit/usmtkit/fusefs"
	"github.com/usmtkit/usmtkit/internal/exitcodes"
	"github.com/usmtkit/usmtkit/internal/safeio"
	"github.com/usmtkit/usmtkit/store"
)

type mountOptions struct {
	globalOptions
	View            string
	UID, GID        int // -1: the mounting user
	Umask           string
	AllowOther      bool
	CaseInsensitive bool
	CacheSize       int // MiB of decoded archive chunks
	MaxInodes       int // inodes the kernel may keep before the oldest are handed back; 0: no limit
	Background      bool
	LogFile         string
	Debug           bool
	Plain           bool
	NoPassthrough   bool
	// Stats is where the request statistics go when the mount ends
	// (--stats, or USMTKIT_MOUNT_STATS); "" for none.
	Stats string
	// ExperimentalMIG reads a USMT.MIG's File records (cmd_mig_experimental.go).
	ExperimentalMIG bool
	// migs are the USMT.MIG files read experimentally: the one store, or
	// the MIG members of a share copy.
	migs []*store.MIGStore

	// readyW is the pipe of a --background child to its parent.
	readyW *os.File
	// onReady, when set (tests), is called once the mount serves.
	onReady func(mnt string)
}

// readyEnv names the descriptor on which a --background child reports
// "ok" or its error to the parent that started it.
const readyEnv = "USMTKIT_MOUNT_READY_FD"

func init() {
	register(&cli.Command{
		Name:      "mount",
		Usage:     "show a store as a read-only folder (FUSE) to browse with any file manager",
		ArgsUsage: "STORE [STORE...] MOUNTPOINT",
		Description: `Mounts any store read-only at MOUNTPOINT (an existing, empty folder):
uncompressed and hard-link stores (several STOREs are the volumes of one
store), USMT 3 layouts, plain folders, usmtkit archives, and copies of a
state migration point share (one folder per store id; stores that cannot
be read, such as USMT.MIG files, hold a README.txt saying why).

The default view shows one folder per drive (C/Users/jdoe/...) and the
store's control files under _usmt_store_control/; --view store shows the
raw store layout. Files belong to you (or --uid/--gid) with modes 0444 and
0555 minus --umask. Windows attributes, creation time and path are the
extended attributes user.usmtkit.attrs, .crtime and .winpath
(getfattr -d FILE). See docs/mount.md.

It serves in the foreground until Ctrl-C, SIGTERM or usmtkit umount
MOUNTPOINT; --background returns once the mount is ready. As root it
mounts directly and lets the kernel read directory stores itself (FUSE
passthrough); otherwise it uses fusermount3 (package fuse3).

Examples:
   usmtkit mount /media/usb/USMTMIG /mnt/store
   usmtkit mount --background --case-insensitive store.tar.zst /mnt/store
   usmtkit umount /mnt/store

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "view", Value: "windows", Usage: "windows (one folder per drive) or store (the raw store layout)"},
			&cli.IntFlag{Name: "uid", Value: -1, Usage: "owner of every file (default: you)"},
			&cli.IntFlag{Name: "gid", Value: -1, Usage: "group of every file (default: your group)"},
			&cli.StringFlag{Name: "umask", Value: "000", Usage: "octal bits removed from the modes 0444 (files) and 0555 (folders)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users see the mount (non-root needs user_allow_other in /etc/fuse.conf)"},
			&cli.BoolFlag{Name: "case-insensitive", Usage: "find names that differ only in case, as Windows does (docs/mount.md: limits)"},
			&cli.IntFlag{Name: "cache-size", Value: int(compress.DefaultCacheBytes >> 20), Usage: "MiB of decoded archive data kept in memory (archives only)"},
			&cli.IntFlag{Name: "max-inodes", Value: fusefs.DefaultMaxInodes, Usage: "files and folders the kernel may keep looked up (about 1 KB of memory each) before the oldest are handed back to it; 0 = no limit"},
			&cli.BoolFlag{Name: "background", Usage: "return once the mount is ready and keep serving in the background"},
			&cli.StringFlag{Name: "log-file", Usage: "append the server's messages to this file (useful with --background)"},
			&cli.BoolFlag{Name: "debug", Usage: "log every FUSE request"},
			&cli.BoolFlag{Name: "plain", Usage: "read a folder as a plain tree even when a store lies below it"},
			&cli.BoolFlag{Name: "no-passthrough", Usage: "serve every read through usmtkit (for comparison and debugging)"},
			&cli.BoolFlag{Name: "experimental-mig", Usage: migExperimentalFlagUsage},
			&cli.StringFlag{Name: "stats", EnvVars: []string{"USMTKIT_MOUNT_STATS"}, Usage: "when the mount ends, write how long requests took and what the slowest reads waited for to this JSON file (docs/mount.md)"},
		},
		Action: func(c *cli.Context) error {
			o := &mountOptions{globalOptions: *globalsOf(c), View: c.String("view"), UID: c.Int("uid"), GID: c.Int("gid"),
				Umask: c.String("umask"), AllowOther: c.Bool("allow-other"), CaseInsensitive: c.Bool("case-insensitive"),
				CacheSize: c.Int("cache-size"), MaxInodes: c.Int("max-inodes"), Background: c.Bool("background"), LogFile: c.String("log-file"),
				Debug: c.Bool("debug"), Plain: c.Bool("plain"), NoPassthrough: c.Bool("no-passthrough"), Stats: c.String("stats"),
				ExperimentalMIG: c.Bool("experimental-mig")}
			return runMount(c.Context, o, c.Args().Slice())
		},
	})
	register(&cli.Command{
		Name:      "umount",
		Aliases:   []string{"unmount"},
		Usage:     "stop serving a mounted store",
		ArgsUsage: "MOUNTPOINT [MOUNTPOINT...]",
		Description: `Unmounts a usmtkit mount; the serving process then exits. When programs
still use files in it, they are named and the mount is detached lazily: it
disappears at once and the server exits when they close their files. A
mountpoint left by a killed server ("transport endpoint is not connected")
is detached too.

Examples:
   usmtkit umount /mnt/store

` + exitcodes.Table,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-lazy", Usage: "fail instead of detaching a busy mount"},
		},
		Action: func(c *cli.Context) error {
			o := &umountOptions{globalOptions: *globalsOf(c), NoLazy: c.Bool("no-lazy")}
			return runUmount(c.Context, o, c.Args().Slice())
		},
	})
}

func runMount(ctx context.Context, o *mountOptions, args []string) error {
	if fd := os.Getenv(readyEnv); fd != "" && o.readyW == nil {
		n, err := strconv.Atoi(fd)
		if err != nil {
			return fmt.Errorf("bad %s=%q", readyEnv, fd)
		}
		os.Unsetenv(readyEnv)
		o.readyW = os.NewFile(uintptr(n), "ready-pipe")
		o.Background = false
	}
	err := mount(ctx, o, args)
	if o.readyW != nil { // a --background child that failed before it was ready
		fmt.Fprintf(o.readyW, "err\t%d\t%s\n", exitcodes.FromError(err), strings.ReplaceAll(errString(err), "\n", " "))
		o.readyW.Close()
		o.readyW = nil
	}
	return err
}

func errString(err error) string {
	if err == nil {
		return "the server stopped before the mount was ready"
	}
	return err.Error()
}

func mount(ctx context.Context, o *mountOptions, args []string) error {
	if len(args) < 2 {
		return exitcodes.Usagef("mount needs a STORE and a MOUNTPOINT (an empty folder), e.g. usmtkit mount /media/usb/USMTMIG /mnt/store")
	}
	view, err := fusefs.ParseView(o.View)
	if err != nil {
		return exitcodes.Usagef("--view: " + err.Error())
	}
	umask, err := strconv.ParseUint(o.Umask, 8, 32)
	if err != nil || umask > 0o777 {
		return exitcodes.Usagef(fmt.Sprintf("--umask takes octal bits like 022 or 077 (got %q)", o.Umask))
	}
	if o.CacheSize < 0 {
		return exitcodes.Usagef(fmt.Sprintf("--cache-size takes MiB, 0 or more (got %d)", o.CacheSize))
	}
	if o.MaxInodes < 0 || o.MaxInodes > 0 && o.MaxInodes < 100 {
		return exitcodes.Usagef(fmt.Sprintf("--max-inodes takes 100 or more, or 0 for no limit (got %d)", o.MaxInodes))
	}
	if o.Background {
		return startBackground(ctx, o)
	}
	storeArgs, mntArg := args[:len(args)-1], args[len(args)-1]

	// The mountpoint is checked before the store is even looked at.
	mnt, recovered, err := fusefs.CheckMountpoint(mntArg)
	if err != nil {
		return err
	}
	if recovered {
		o.notef("%s was left mounted by a usmtkit that was killed; detached it", mnt)
	}
	if err := fusefs.CheckOverlap(mnt, storeArgs); err != nil {
		return err
	}
	ds, err := detectAll(storeArgs, o.Plain)
	if err != nil {
		return err
	}
	var roots []string
	for _, d := range ds {
		roots = append(roots, d.Root)
	}
	if err := fusefs.CheckOverlap(mnt, roots); err != nil {
		return err
	}

	logw := io.Writer(o.Stderr)
	if o.LogFile != "" {
		lf, err := os.OpenFile(o.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("opening the log file: %w; give a writable path to --log-file", err)
		}
		defer lf.Close()
		logw = lf
	}
	fopts := fusefs.Options{View: view, UID: uint32(os.Geteuid()), GID: uint32(os.Getegid()), Umask: uint32(umask),
		CaseInsensitive: o.CaseInsensitive, NoPassthrough: o.NoPassthrough, MaxInodes: o.MaxInodes,
		Logger: log.New(logw, "usmtkit: ", log.LstdFlags)}
	if o.MaxInodes == 0 {
		fopts.MaxInodes = -1 // the CLI's 0 is fusefs's "no limit"
	}
	statsPath, err := checkStatsPath(o.Stats, roots)
	if err != nil {
		return err
	}
	if statsPath != "" {
		fopts.Stats = fusefs.NewStats()
	}
	if o.UID >= 0 {
		fopts.UID = uint32(o.UID)
	}
	if o.GID >= 0 {
		fopts.GID = uint32(o.GID)
	}
	var fsys *fusefs.FS
	var closeStores func()
	var what string
	if o.ExperimentalMIG && ds[0].Kind != store.KindSMP {
		fsys, closeStores, what, err = openMountMIG(ctx, ds, o, fopts)
	} else {
		fsys, closeStores, what, err = openForMount(ctx, ds, o, fopts)
	}
	if err != nil {
		return err
	}
	defer closeStores()
	// The stores' roots as opened: with --all-volumes they include the
	// store's other volumes, which the mount point and --stats must keep
	// out of too.
	all := fsys.StoreRoots()
	if err := fusefs.CheckOverlap(mnt, all); err != nil {
		return err
	}
	if _, err := checkStatsPath(o.Stats, all); err != nil {
		return err
	}

	tuneGC()
	srv, err := fsys.Mount(mnt, fusefs.MountConfig{
		FsName:     ds[0].Root,
		AllowOther: o.AllowOther,
		Direct:     os.Geteuid() == 0,
		Debug:      o.Debug,
	})
	if err != nil {
		return err
	}
	mode := "passthrough off"
	switch {
	case srv.Passthrough:
		mode = "passthrough on"
	case !fsys.PassthroughCapable() && !o.NoPassthrough:
		mode = "passthrough off: archive data is decoded by usmtkit"
	case o.NoPassthrough:
		mode = "passthrough off (--no-passthrough)"
	case os.Geteuid() != 0:
		mode = "passthrough off: needs root"
	case srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0:
		mode = "passthrough off: this kernel has no FUSE passthrough"
	}
	line := fmt.Sprintf("serving %s at %s (read-only, %s); press Ctrl-C or run `usmtkit umount %s` to stop", what, mnt, mode, mnt)
	if o.readyW != nil {
		fmt.Fprintf(o.readyW, "%s\t%s\n", readyStatus(o), line)
		o.readyW.Close()
		o.readyW = nil
		detachStdio(o.LogFile)
	} else if !o.Quiet {
		fmt.Fprintln(o.Stdout, line)
	}
	if o.onReady != nil {
		o.onReady(mnt)
	}
	serveUntilStopped(ctx, o, srv, mnt)
	if statsPath != "" {
		if err := writeStats(statsPath, fopts.Stats); err != nil {
			return err
		}
	}
	if n := fsys.EIOCount(); n > 0 {
		return fmt.Errorf("%d reads or lookups failed with an I/O error (causes logged above): %w", n, exitcodes.ErrPartial)
	}
	return migsPartial(o.migs)
}

// openForMount opens what the user named and adapts it: one store, an
// archive with the asked cache size, or every member of a share copy.
func openForMount(ctx context.Context, ds []*store.Detection, o *mountOptions, fopts fusefs.Options) (*fusefs.FS, func(), string, error) {
	d := ds[0]
	what := strings.Join(func() []string {
		var s []string
		for _, x := range ds {
			s = append(s, x.Input)
		}
		return s
	}(), " + ")
	switch d.Kind {
	case store.KindSMP:
		if len(ds) > 1 {
			return nil, nil, "", exitcodes.Usagef("mount one state migration point share copy at a time")
		}
		var members []fusefs.Member
		var opened []store.Store
		for _, m := range d.Members {
			name := m.ID
			if name == "" {
				name = m.Share
			}
			mem := fusefs.Member{Name: name}
			switch {
			case m.Err != "":
				mem.Why = m.Err
			case m.Kind == store.KindMIG && m.Encrypted:
				mem.Why = "it is an encrypted compressed USMT.MIG file"
			case m.Kind == store.KindMIG && o.ExperimentalMIG:
				s, err := openShareMIG(ctx, o, m)
				if err != nil {
					mem.Why = err.Error()
				} else {
					mem.Store = s
					opened = append(opened, s)
				}
			case m.Kind == store.KindMIG:
				mem.Why = "it is a compressed USMT.MIG file, whose format Microsoft does not document: " +
					"mount the share with --experimental-mig to read it (EXPERIMENTAL), or restore it on Windows (UsmtUtils /extract, LoadState)"
			default:
				s, err := store.Open(m.Path)
				if err != nil {
					mem.Why = err.Error()
				} else {
					mem.Store = s
					opened = append(opened, s)
				}
			}
			members = append(members, dedupeMember(members, mem))
		}
		closeAll := func() {
			for _, s := range opened {
				s.Close()
			}
		}
		f, err := fusefs.NewShare(members, fopts)
		if err != nil {
			closeAll()
			return nil, nil, "", err
		}
		what += fmt.Sprintf(" (%d stores)", len(members))
		if len(o.migs) > 0 {
			what += fmt.Sprintf("; %d USMT.MIG read by the EXPERIMENTAL reader: read %s in each", len(o.migs), store.MIGMarkerName)
		}
		return f, closeAll, what, nil
	}
	var s store.Store
	var err error
	if d.Kind == store.KindArchive && len(ds) == 1 {
		cache := int64(o.CacheSize) << 20
		if cache == 0 {
			cache = -1 // no cache
		}
		if objstore.IsURL(d.Root) {
			s, err = openObjectArchive(d.Root, compress.ReaderOptions{CacheBytes: cache})
		} else {
			s, err = compress.Open(d.Root, compress.ReaderOptions{CacheBytes: cache})
		}
	} else {
		s, err = openDetected(&o.globalOptions, ds)
	}
	if err != nil {
		return nil, nil, "", err
	}
	f, err := fusefs.New(s, fopts)
	if err != nil {
		s.Close()
		return nil, nil, "", fmt.Errorf("mounting %s: %w", what, err)
	}
	return f, func() { s.Close() }, what, nil
}

// dedupeMember renames a member whose folder name is already taken (the
// same store id copied into two shares).
func dedupeMember(have []fusefs.Member, m fusefs.Member) fusefs.Member {
	name := m.Name
	for i := 2; ; i++ {
		taken := false
		for _, h := range have {
			if h.Name == m.Name {
				taken = true
			}
		}
		if !taken {
			return m
		}
		m.Name = fmt.Sprintf("%s (%d)", name, i)
	}
}

// serveUntilStopped waits until the mount goes away (usmtkit umount,
// fusermount3 -u) or ctx is cancelled (Ctrl-C, SIGTERM), then unmounts.
// A busy mount is detached lazily and its users are named; a second
// Ctrl-C then cuts the connection.
func serveUntilStopped(ctx context.Context, o *mountOptions, srv *fusefs.Server, mnt string) {
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		o.notef("%s was unmounted; stopped", mnt)
		return
	case <-ctx.Done():
	}
	me, _ := fusefs.MountAt(mnt)
	if err := srv.Unmount(); err == nil {
		<-done
		o.notef("unmounted %s", mnt)
		return
	}
	for _, h := range fusefs.Holders(mnt) {
		o.notef("  in use by %s", h)
	}
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	if err := fusefs.LazyUnmount(mnt); err != nil {
		o.notef("%s is busy and detaching it failed: %v", mnt, err)
	} else {
		o.notef("%s is busy: detached it (it is gone from the tree); still serving the open files until they are closed; Ctrl-C again stops at once", mnt)
	}
	select {
	case <-done:
	case <-again:
		if me != nil {
			if err := fusefs.AbortConn(me.Dev); err != nil {
				o.notef("cutting the FUSE connection: %v", err)
			}
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			o.notef("the kernel did not release the mount within 5 s; exiting anyway")
		}
	}
}

// startBackground re-runs this command line in a new session and returns
// once the child reports the mount ready (or its error).
func startBackground(ctx context.Context, o *mountOptions) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to start it in the background: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting the background server: %w", err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line, rerr := bufio.NewReader(r).ReadString('\n')
	status, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
	switch {
	case status == "ok" || status == readyPartial:
		if !o.Quiet {
			fmt.Fprintf(o.Stdout, "%s (background pid %d)\n", rest, cmd.Process.Pid)
		}
		if status == readyPartial {
			return fmt.Errorf("serving, but some of the store was left out (see EXPERIMENTAL.txt at the mount's root): %w", exitcodes.ErrPartial)
		}
		return nil
	case status == "err":
		codeStr, msg, _ := strings.Cut(rest, "\t")
		code, _ := strconv.Atoi(codeStr)
		<-exited
		return remoteError(code, msg)
	}
	werr := <-exited
	return fmt.Errorf("the background server exited before the mount was ready (%v, %v); run without --background to see why", werr, rerr)
}

// remoteError rebuilds a background child's error so main maps it to the
// exit status the child would have had.
func remoteError(code int, msg string) error {
	var sentinel error
	switch code {
	case exitcodes.Usage:
		return exitcodes.Usagef(msg)
	case exitcodes.NoStore:
		sentinel = store.ErrNoStore
	case exitcodes.Encrypted:
		sentinel = store.ErrEncrypted
	case exitcodes.Unsupported:
		sentinel = store.ErrUnsupported
	case exitcodes.Partial:
		sentinel = exitcodes.ErrPartial
	case exitcodes.Interrupted:
		sentinel = context.Canceled
	}
	return &wrappedMsg{msg: msg, err: sentinel}
}

type wrappedMsg struct {
	msg string
	err error
}

func (w *wrappedMsg) Error() string { return w.msg }
func (w *wrappedMsg) Unwrap() error { return w.err }

// detachStdio points a background server's standard descriptors at
// /dev/null (or the log file) so it outlives the terminal.
func detachStdio(logFile string) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return
	}
	defer null.Close()
	out := null
	if logFile != "" {
		if lf, err := os.OpenFile(logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err == nil {
			defer lf.Close()
			out = lf
		}
	}
	unix.Dup2(int(null.Fd()), 0)
	unix.Dup2(int(out.Fd()), 1)
	unix.Dup2(int(out.Fd()), 2)
}

type umountOptions struct {
	globalOptions
	NoLazy bool
}

func runUmount(ctx context.Context, o *umountOptions, args []string) error {
	if len(args) == 0 {
		return exitcodes.Usagef("umount needs a MOUNTPOINT")
	}
	var errs []error
	for _, a := range args {
		if err := umountOne(o, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func umountOne(o *umountOptions, arg string) error {
	abs, err := filepath.Abs(arg)
	if err != nil {
		return err
	}
	if fusefs.IsStale(abs) {
		if err := fusefs.LazyUnmount(abs); err != nil {
			return fmt.Errorf("%s is left over from a server that died and detaching it failed: %w; try fusermount3 -u -z %s", abs, err, abs)
		}
		o.notef("%s was left over from a server that died; detached it", abs)
		return nil
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("%s: %w", abs, err)
	}
	me, ok := fusefs.MountAt(real)
	if !ok {
		return fmt.Errorf("%s is not mounted; nothing to do (mount lists the mounts)", real)
	}
	if me.FSType != fusefs.FsType {
		return fmt.Errorf("%s is a %s mount, not a usmtkit one: use umount(8) for it", real, me.FSType)
	}
	err = fusefs.Unmount(real)
	if err == nil {
		o.notef("unmounted %s", real)
		return nil
	}
	if !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("unmounting %s: %w", real, err)
	}
	hs := fusefs.Holders(real)
	var who []string
	for _, h := range hs {
		who = append(who, h.String())
	}
	if len(who) == 0 {
		who = []string{"no process found (a file manager may have just let go; try again)"}
	}
	if o.NoLazy {
		return fmt.Errorf("%s is busy, in use by: %s; close those files or leave those folders, then run usmtkit umount again", real, strings.Join(who, "; "))
	}
	if err := fusefs.LazyUnmount(real); err != nil {
		return fmt.Errorf("%s is busy (in use by: %s) and detaching it failed: %w", real, strings.Join(who, "; "), err)
	}
	o.notef("%s was busy, in use by: %s", real, strings.Join(who, "; "))
	o.notef("detached it: it is gone from the tree now, and the server exits once those files are closed")
	return nil
}

// checkStatsPath makes the --stats path absolute (a --background server
// leaves the working directory) and refuses one inside a store
// (safeio.CheckOutside, the one rule).
func checkStatsPath(p string, roots []string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if err := safeio.CheckOutside(abs, roots); errors.Is(err, safeio.ErrInsideStore) {
		return "", exitcodes.Usagef("--stats " + err.Error())
	} else if err != nil {
		return "", err
	}
	return abs, nil
}

// writeStats writes the request statistics of a mount that ended.
func writeStats(path string, s *fusefs.Stats) error {
	b, err := s.MarshalReport()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the request statistics: %w", err)
	}
	return nil
}

// serverGCPercent is the garbage collector's target for a serving
// process. The big buffers of an archive mount (whole decoded chunks,
// compressed frames) live outside the Go heap (compress/reader_bufs.go);
// what is left in it is small and mostly short-lived (go-fuse's request
// and reply buffers, decoded small files, the inodes the kernel holds).
// On the 2 GB benchmark store, reading everything, alternated runs (load
// 2.6-4.3; docs/mount.md, memory, second round): 75 gave 82-86 MiB peak
// RSS at the speed of the build before (549 against 560 MB/s, medians of
// 3); 50 gave 73-77 MiB but 6 % less speed (every collection also empties
// go-fuse's buffer pools, whose refills are zeroed and faulted in again);
// 100 gave 98-103 MiB. A memory limit (GOMEMLIMIT) is not set: the inodes
// the kernel holds grow with the store, and a limit near them makes the
// collector run continuously.
const serverGCPercent = 75

// tuneGC sets serverGCPercent unless GOGC says otherwise. The setting is
// process-wide, so it belongs to the command that serves, not to fusefs.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
}
