package objstore

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// sharedConfigRegion is the region of the AWS shared config file
// (AWS_CONFIG_FILE, else ~/.aws/config) for the profile AWS_PROFILE (else
// "default"): the `region = ...` line of its section, `[default]` or
// `[profile NAME]`. "" when there is none; a file that cannot be read is
// no error (the region then comes from the default).
func sharedConfigRegion() string {
	path := os.Getenv("AWS_CONFIG_FILE")
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		path = filepath.Join(home, ".aws", "config")
	}
	profile := os.Getenv("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	return configRegion(bufio.NewScanner(f), profile)
}

// configRegion reads the region of profile from an INI-style config.
func configRegion(sc *bufio.Scanner, profile string) string {
	in := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			name := strings.TrimSpace(line[1 : len(line)-1])
			name = strings.TrimSpace(strings.TrimPrefix(name, "profile "))
			in = name == profile
			continue
		}
		if !in {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "region" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
