package objstore

import "testing"

// A name ending in / (or a bucket alone) is a prefix; ParseURL takes one
// object's name, ParsePrefix a prefix's.
func TestPrefixNames(t *testing.T) {
	for _, c := range []struct {
		name   string
		prefix bool
		bucket string
		key    string
		bad    bool
	}{
		{name: "s3://b/site12/", prefix: true, bucket: "b", key: "site12/"},
		{name: "s3://b/", prefix: true, bucket: "b", key: ""},
		{name: "s3://b", prefix: true, bucket: "b", key: ""},
		{name: "s3://b/a/b/", prefix: true, bucket: "b", key: "a/b/"},
		{name: "s3:///x/", prefix: true, bad: true},
		{name: "s3://b/pc.tar.zst", bucket: "b", key: "pc.tar.zst"},
		{name: "/srv/x/", bad: true},
	} {
		if got := IsPrefix(c.name); got != c.prefix {
			t.Errorf("IsPrefix(%q) = %v", c.name, got)
		}
		parse := ParseURL
		if c.prefix {
			parse = ParsePrefix
		}
		loc, err := parse(c.name)
		if (err != nil) != c.bad || err == nil && (loc.Bucket != c.bucket || loc.Key != c.key) {
			t.Errorf("%q: %+v %v", c.name, loc, err)
		}
	}
	if _, err := ParsePrefix("s3://b/pc.tar.zst"); err == nil {
		t.Error("ParsePrefix took an object's name")
	}
}
