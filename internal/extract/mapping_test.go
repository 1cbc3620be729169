package extract

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMappings(t *testing.T) {
	for _, c := range []struct {
		in   string
		want UserMap
		bad  bool
	}{
		{in: "jdoe=jsmith", want: UserMap{"jdoe", "jsmith"}},
		{in: `CORP\jdoe=CORP\jsmith`, want: UserMap{"jdoe", "jsmith"}},
		{in: "jdoe", bad: true},
		{in: "=jsmith", bad: true},
		{in: "jdoe=", bad: true},
		{in: "jdoe=a/b", bad: true},
		{in: "jdoe=..", bad: true},
	} {
		got, err := ParseUserMap(c.in)
		var ue *UsageError
		if c.bad != (err != nil) || (err != nil && !errors.As(err, &ue)) || (!c.bad && got != c.want) {
			t.Errorf("ParseUserMap(%q) = %+v, %v", c.in, got, err)
		}
	}
	for _, c := range []struct {
		in   string
		want DriveMap
		bad  bool
	}{
		{in: "D=C", want: DriveMap{"D", "C"}},
		{in: "d:=c:", want: DriveMap{"D", "C"}},
		{in: "DD=C", bad: true},
		{in: "1=C", bad: true},
		{in: "D", bad: true},
	} {
		got, err := ParseDriveMap(c.in)
		if c.bad != (err != nil) || (!c.bad && got != c.want) {
			t.Errorf("ParseDriveMap(%q) = %+v, %v", c.in, got, err)
		}
	}
	if err := checkMappings([]UserMap{{"a", "b"}, {"A", "c"}}, nil); err == nil {
		t.Error("one user mapped twice was accepted")
	}
	if err := checkMappings(nil, []DriveMap{{"D", "C"}, {"D", "E"}}); err == nil {
		t.Error("one drive mapped twice was accepted")
	}
}

func TestMapComps(t *testing.T) {
	users := []UserMap{{"jdoe", "jsmith"}, {"olduser", "newuser"}}
	drives := []DriveMap{{"D", "C"}}
	for in, want := range map[string]string{
		"C/Users/JDoe/Documents/a.txt":                        "C/Users/jsmith/Documents/a.txt",
		"D/Documents and Settings/olduser/My Documents/o.doc": "C/Users/newuser/My Documents/o.doc",
		"D/Data/shared.xlsx":                                  "C/Data/shared.xlsx",
		"C/Users/asmith/cat.jpg":                              "C/Users/asmith/cat.jpg",
		"C/Data/jdoe/x.txt":                                   "C/Data/jdoe/x.txt", // only profile folders move
		"C/Users":                                             "C/Users",
	} {
		c := strings.Split(in, "/")
		mapComps(c, users, drives)
		if got := strings.Join(c, "/"); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
}
