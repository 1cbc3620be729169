package store_test

import (
	"context"
	"syscall"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
	"github.com/usmtkit/usmtkit/store"
)

// TestHardLinkStoreOnNTFS opens a hard-link store on a real NTFS volume
// mounted with ntfs-3g: the store's files share inodes with the live
// profile, and Windows attributes and creation times come from ntfs-3g.
func TestHardLinkStoreOnNTFS(t *testing.T) {
	vol := fixtures.NewNTFSVolume(t, 64)
	hl := fixtures.HardLinkStore(t, vol.Mount)
	// Mark one live file hidden+read-only through ntfs-3g, as Windows would.
	linked := hl.Linked[0]
	if err := fixtures.SetNTFSAttrib(hl.LivePath(linked), 0x1|0x2|0x20); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(hl.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := store.Summarize(context.Background(), s, nil)
	if err != nil || sum.ProblemCount != 0 {
		t.Fatalf("summary %+v %v", sum, err)
	}
	if sum.LinkedOutside != int64(len(hl.Linked)) {
		t.Errorf("files linked outside the store: %d, want %d", sum.LinkedOutside, len(hl.Linked))
	}
	e, err := s.Stat(linked)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(hl.LivePath(linked), &st); err != nil {
		t.Fatal(err)
	}
	if e.Ino != st.Ino || e.Dev != uint64(st.Dev) || e.Nlink < 2 {
		t.Fatalf("store entry %d/%d nlink %d does not share the live inode %d/%d", e.Dev, e.Ino, e.Nlink, st.Dev, st.Ino)
	}
	if !e.HasWinAttr || e.WinAttrs&0x3 != 0x3 {
		t.Fatalf("windows attributes not read from ntfs-3g: %v %#x", e.HasWinAttr, e.WinAttrs)
	}
	crt, err := fixtures.ReadNTFSCrtime(hl.LivePath(linked))
	if err != nil {
		t.Fatal(err)
	}
	if !e.HasBtime || e.BtimeNs != crt.UnixNano() {
		t.Fatalf("creation time %v %d, want %d from system.ntfs_crtime_be", e.HasBtime, e.BtimeNs, crt.UnixNano())
	}
	copied, err := s.Stat(hl.Copied[0])
	if err != nil {
		t.Fatal(err)
	}
	var cst syscall.Stat_t
	syscall.Lstat(hl.LivePath(hl.Copied[0]), &cst)
	if copied.Ino == cst.Ino {
		t.Fatal("the copied file must not share the live inode")
	}
}
