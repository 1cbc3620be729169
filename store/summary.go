package store

import (
	"context"
	"sort"
)

// Summary is what one walk of a store tells: counts, bytes, users, drives
// and everything that could not be read.
type Summary struct {
	Files    int64 `json:"files"`
	Dirs     int64 `json:"dirs"`
	Symlinks int64 `json:"symlinks"`
	Others   int64 `json:"others"` // FIFOs, sockets, devices: listed, never read
	Control  int64 `json:"control_files"`
	// BytesApparent counts every file; BytesUnique counts each hard-link
	// group once (by device and inode, never by link count).
	BytesApparent int64 `json:"bytes_apparent"`
	BytesUnique   int64 `json:"bytes_unique"`
	// MultiLinked counts files whose inode has other links (inside or
	// outside the store): a hard-link store has many. InStoreLinkGroups counts
	// groups with more than one path inside the store.
	MultiLinked       int64 `json:"multi_linked_files"`
	InStoreLinkGroups int64 `json:"in_store_link_groups"`
	// LinkedOutside counts files whose link count is higher than the
	// number of their paths inside the store: other links exist (the live
	// profile of a hard-link store). ntfs-3g may count a DOS 8.3 name as
	// a link, so this is a strong hint, not proof; hardlinkscan decides.
	LinkedOutside int64 `json:"linked_outside_files"`
	// EFSFiles counts files carrying the NTFS encrypted attribute (IsEFS):
	// their bytes are raw EFS data, readable as content only on Windows.
	EFSFiles int64 `json:"efs_files"`
	EFSBytes int64 `json:"efs_bytes"`

	Drives []DriveSummary `json:"drives"`
	Users  []UserSummary  `json:"users"`

	Problems     []Problem `json:"problems"`      // the first MaxProblems
	ProblemCount int64     `json:"problem_count"` // all of them
}

// DriveSummary counts one drive letter's files.
type DriveSummary struct {
	Drive string `json:"drive"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// UserSummary counts one profile folder's files.
type UserSummary struct {
	Drive string `json:"drive"`
	Name  string `json:"name"`
	Path  string `json:"path"` // C:\Users\jdoe
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// Problem is an entry that could not be read completely.
type Problem struct {
	StorePath string `json:"store_path"`
	Error     string `json:"error"`
}

// MaxProblems bounds how many problems a summary keeps in memory; the
// count keeps going.
const MaxProblems = 1000

// Summarize walks the store once. progress, when non-nil, is called after
// every entry with the running totals.
func Summarize(ctx context.Context, s Store, progress func(files, bytes int64)) (*Summary, error) {
	sum := &Summary{}
	drives := map[string]*DriveSummary{}
	users := map[string]*UserSummary{}
	// Only multi-link files need remembering to count unique bytes; a
	// group seen twice inside the store is an in-store link group.
	type group struct{ paths, nlink uint32 }
	seenGroups := map[uint64]*group{}
	err := s.Walk(ctx, func(e *Entry, err error) error {
		if err != nil {
			sum.ProblemCount++
			if len(sum.Problems) < MaxProblems {
				sum.Problems = append(sum.Problems, Problem{StorePath: e.StorePath, Error: err.Error()})
			}
		}
		switch e.Type {
		case TypeDir:
			if e.StorePath != "" {
				sum.Dirs++
			}
			return nil
		case TypeSymlink:
			sum.Symlinks++
			return nil
		case TypeOther:
			sum.Others++
			return nil
		}
		if e.Control {
			sum.Control++
		}
		if IsEFS(e) {
			sum.EFSFiles++
			sum.EFSBytes += e.Size
		}
		sum.Files++
		sum.BytesApparent += e.Size
		unique := true
		if e.Nlink > 1 && e.LinkID != 0 {
			sum.MultiLinked++
			g := seenGroups[e.LinkID]
			switch {
			case g == nil:
				seenGroups[e.LinkID] = &group{paths: 1, nlink: e.Nlink}
			case g.paths == 1:
				g.paths++
				sum.InStoreLinkGroups++
				unique = false
			default:
				g.paths++
				unique = false
			}
		}
		if unique {
			sum.BytesUnique += e.Size
		}
		if dl := DriveOf(e.WinPath); dl != "" {
			d := drives[dl]
			if d == nil {
				d = &DriveSummary{Drive: dl}
				drives[dl] = d
			}
			d.Files++
			d.Bytes += e.Size
			if u := UserOf(e.WinPath); u != "" {
				key := dl + "|" + u
				us := users[key]
				if us == nil {
					us = &UserSummary{Drive: dl, Name: u, Path: profilePath(e.WinPath)}
					users[key] = us
				}
				us.Files++
				us.Bytes += e.Size
			}
		}
		if progress != nil {
			progress(sum.Files, sum.BytesApparent)
		}
		return nil
	})
	for _, g := range seenGroups {
		if g.nlink > g.paths {
			sum.LinkedOutside += int64(g.paths)
		}
	}
	for _, d := range drives {
		sum.Drives = append(sum.Drives, *d)
	}
	sort.Slice(sum.Drives, func(i, j int) bool { return sum.Drives[i].Drive < sum.Drives[j].Drive })
	for _, u := range users {
		sum.Users = append(sum.Users, *u)
	}
	sort.Slice(sum.Users, func(i, j int) bool { return sum.Users[i].Path < sum.Users[j].Path })
	return sum, err
}

// profilePath cuts a Windows path to its profile folder (C:\Users\jdoe).
func profilePath(win string) string {
	n := 0
	for i := 3; i < len(win); i++ {
		if win[i] == '\\' {
			n++
			if n == 2 {
				return win[:i]
			}
		}
	}
	return win
}
