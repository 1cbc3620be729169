package store

import "testing"

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/mnt/a\040b\134c`); got != `/mnt/a b\c` {
		t.Errorf("unescapeMount: %q", got)
	}
}

func TestMountOfRoot(t *testing.T) {
	m, err := MountOf("/")
	if err != nil || m.MountPoint != "/" || m.FSType == "" {
		t.Fatalf("MountOf(/) = %+v, %v", m, err)
	}
}
