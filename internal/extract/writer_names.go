package extract

import (
	"fmt"
	"strings"
)

// validName rejects names that could leave the folder they are created in.
func validName(n string) error {
	switch {
	case n == "", n == ".", n == "..":
		return fmt.Errorf("unsafe name %q", n)
	case strings.ContainsAny(n, "/\x00"):
		return fmt.Errorf("unsafe name %q (holds a slash or NUL)", n)
	}
	return nil
}

// outName chooses the name written for a store name in folder d, records
// it, and reports escapes and collisions.
func (w *writer) outName(d *wdir, orig, winPath string, folder bool) (string, error) {
	if err := validName(orig); err != nil {
		return "", problem("refused", "%s: %v: not extracted", winPath, err)
	}
	name := orig
	if prev, ok := d.taken[foldKey(orig)]; folder && ok && prev == orig {
		// The same folder name again: a restore mapping (--map-user,
		// --map-drive) merges two store folders into one DEST folder.
		// Files never merge: a second file of the same name is a conflict.
		return orig, nil
	}
	if w.tgt.WindowsNames {
		if d.taken == nil {
			d.taken = map[string]string{}
		}
		out, escaped, collided, ok := escapeUnique(orig, w.tgt.ASCIIOnly, func(n string) bool { _, t := d.taken[foldKey(n)]; return t })
		if !ok {
			return "", problem("refused", "%s: the name appears twice in the store folder: not extracted", winPath)
		}
		d.taken[foldKey(out)] = orig
		name = out
		rel := joinRel(d.rel, out)
		if collided {
			w.res.Collisions = append(w.res.Collisions, Rename{Path: winPath, Written: rel})
			w.report("collision", winPath, "differs only in case from a name already written in its folder; written as "+rel)
		} else if escaped {
			w.res.Escaped = append(w.res.Escaped, Rename{Path: winPath, Written: rel})
			w.report("escaped", winPath, "written as "+rel)
		}
	} else if name = shortenName(orig, orig); name != orig {
		rel := joinRel(d.rel, name)
		w.res.Escaped = append(w.res.Escaped, Rename{Path: winPath, Written: rel})
		w.report("escaped", winPath, fmt.Sprintf("the name is %d bytes long, more than file systems allow (255): written as %s", len(orig), rel))
	}
	rel := joinRel(d.rel, name)
	for _, f := range w.forbid {
		if under(rel, f, w.tgt.WindowsNames) {
			return "", problem("refused", "%s: would be written to %s/%s, inside the source store: not extracted", winPath, w.dest, rel)
		}
	}
	return name, nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// under reports whether rel is f or lies below it.
func under(rel, f string, fold bool) bool {
	if fold {
		rel, f = foldKey(rel), foldKey(f)
	}
	return rel == f || strings.HasPrefix(rel, f+"/")
}

func (w *writer) report(kind, path, msg string) {
	if w.opts.Notice != nil {
		w.opts.Notice(kind, path, msg)
	}
}
