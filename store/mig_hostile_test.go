package store

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/fixtures"
)

// setVar sets a package limit for one test.
func setVar[T any](t *testing.T, v *T, to T) {
	old := *v
	*v = to
	t.Cleanup(func() { *v = old })
}

func openMIGBytes(t *testing.T, data []byte) (*MIGInfo, *MIGStore) {
	t.Helper()
	info, err := walkMIG(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := openMIGReader(context.Background(), bytes.NewReader(data), info, 0, "USMT.MIG", MIGStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info, s
}

func leftOutSays(s *MIGStore, why string) bool {
	left, _ := s.LeftOut()
	for _, l := range left {
		if strings.Contains(l.Why, why) {
			return true
		}
	}
	return false
}

// TestMIGBombCap: a payload inflating past the limit (1 TiB, lowered here
// to 1 MiB) is CORRUPTED for verify and left out by the reader, after
// inflating no more than the limit.
func TestMIGBombCap(t *testing.T) {
	setVar(t, &migMaxInflate, 1<<20)
	data := fixtures.BuildMIGRecords([]fixtures.MIGSpec{
		{Name: `File\C:\a.txt`, Content: []byte("a")},
		{Name: `File\C:\bomb.bin`, Payload: fixtures.ZlibBombPayload(4)},
	})
	info, s := openMIGBytes(t, data)
	var checks []MIGRecordCheck
	verifyMIG(context.Background(), bytes.NewReader(data), info, true, func(c MIGRecordCheck) { checks = append(checks, c) })
	if len(checks) != 2 || checks[1].OK || !strings.Contains(checks[1].Detail, "inflates past 1 MiB (a zlib bomb?)") || checks[1].Inflated > 1<<20+256<<10 {
		t.Errorf("verify: %+v", checks)
	}
	if s.Files() != 1 || !leftOutSays(s, "zlib bomb") {
		t.Errorf("reader: %d files, left out %+v", s.Files(), s.leftOut)
	}
}

// TestMIGRecordCap: past migMaxRecords (lowered to 3) the walk stops and
// says so: WalkCapped for info, ls and verify; a left-out entry for the
// reader, which shows the records before it.
func TestMIGRecordCap(t *testing.T) {
	setVar(t, &migMaxRecords, 3)
	var specs []fixtures.MIGSpec
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		specs = append(specs, fixtures.MIGSpec{Name: `File\C:\` + n, Content: []byte(n)})
	}
	info, s := openMIGBytes(t, fixtures.BuildMIGRecords(specs))
	if !info.WalkCapped || info.Records != 3 {
		t.Errorf("walk: %+v", info)
	}
	if s.Files() != 3 || !leftOutSays(s, "the walk stops after 3 records") {
		t.Errorf("reader: %d files, left out %+v", s.Files(), s.leftOut)
	}
}

// TestMIGIndexCap: past the index's memory limit (lowered here) the rest
// of the file is left out, and said.
func TestMIGIndexCap(t *testing.T) {
	setVar(t, &migStoreMaxIndex, 400)
	var specs []fixtures.MIGSpec
	for i := 0; i < 50; i++ {
		specs = append(specs, fixtures.MIGSpec{Name: `File\C:\dir\file` + strings.Repeat("x", i), Content: []byte("x")})
	}
	_, s := openMIGBytes(t, fixtures.BuildMIGRecords(specs))
	if s.Files() == 0 || s.Files() >= 50 || !leftOutSays(s, "the most usmtkit holds") {
		t.Errorf("reader: %d files, left out %+v", s.Files(), s.leftOut)
	}
}
