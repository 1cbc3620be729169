package store

import "testing"

func TestMountOfRoot(t *testing.T) {
	m, err := MountOf("/")
	if err != nil || m.MountPoint != "/" || m.FSType == "" {
		t.Fatalf("MountOf(/) = %+v, %v", m, err)
	}
}
