package hardlinkscan

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLstatLive finds a live file whose case differs from the store's,
// never through a symlink, never by guessing between two spellings, and
// below a path longer than PATH_MAX.
func TestLstatLive(t *testing.T) {
	root := t.TempDir()
	write := func(rel string) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Users/JDoe/Documents/Report.docx")
	write("Users/two/a.txt")
	write("Users/TWO/a.txt")
	write("elsewhere/secret.txt")
	os.Symlink(root+"/elsewhere", root+"/Users/link")

	p, st, err := lstatLive(root, "users/jdoe/documents/report.DOCX")
	if err != nil || p != root+"/Users/JDoe/Documents/Report.docx" || st.Size == 0 {
		t.Errorf("case-insensitive: %q %v", p, err)
	}
	if _, _, err := lstatLive(root, "Users/Two/a.txt"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("ambiguous case: %v, want ENOENT", err)
	}
	for _, rel := range []string{"users/LINK/secret.txt", "Users/link/secret.txt"} {
		if _, _, err := lstatLive(root, rel); err == nil {
			t.Errorf("%s: followed a symlink below the live root", rel)
		}
	}
	if p, st, err := lstatLive(root, "Users/link"); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("the link itself: %q %v", p, err)
	}

	// A live path past PATH_MAX, with one component in another case.
	d, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(d.Fd())
	var rel []string
	for i := 0; i < 40; i++ {
		n := strings.Repeat("x", 120) + string(rune('A'+i%26))
		if err := unix.Mkdirat(fd, n, 0o755); err != nil {
			t.Fatal(err)
		}
		nfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fd != int(d.Fd()) {
			unix.Close(fd)
		}
		fd = nfd
		rel = append(rel, n)
	}
	ffd, err := unix.Openat(fd, "deep.txt", unix.O_WRONLY|unix.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(ffd)
	unix.Close(fd)
	d.Close()
	rel[10] = strings.ToLower(rel[10])
	p, st, err = lstatLive(root, strings.Join(rel, "/")+"/deep.txt")
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || len(p) < 4096 {
		t.Errorf("deep live path: %d bytes, %v", len(p), err)
	}
}
