// Package exitcodes owns usmtkit's exit status table (docs/cli.md) and the
// one function that turns an error into a status. Codes are never reused
// or renumbered; scripts must treat any code not listed as a failure.
package exitcodes

import (
	"context"
	"errors"

	"github.com/usmtkit/usmtkit/store"
)

const (
	OK          = 0   // everything asked for was done
	Failure     = 1   // the tool itself failed (I/O error on the output, bug, bad environment)
	Usage       = 2   // the command line is wrong
	Partial     = 3   // something was damaged, unreadable, changed or skipped; everything else succeeded
	NoStore     = 10  // nothing usmtkit can read was found at the path
	Encrypted   = 12  // the store is encrypted and cannot be read here
	Unsupported = 13  // the store kind is recognised but its contents cannot be read (USMT.MIG)
	Interrupted = 130 // stopped by Ctrl-C / SIGTERM; partial results were reported
)

// Table is the exit status table as printed in --help and docs/cli.md.
const Table = `EXIT STATUS:
   0    OK: everything asked for was done
   1    failure: usmtkit itself failed (output not writable, internal error)
   2    usage: the command line is wrong
   3    partial: something was damaged, unreadable, changed or skipped; all else succeeded
   10   no store: nothing usmtkit can read was found at the path
   12   encrypted: the store is encrypted and cannot be read here
   13   unsupported: the store kind is recognised but its contents cannot be read (USMT.MIG)
   130  interrupted: stopped by Ctrl-C or SIGTERM; partial results were reported
   Any other code means failure.`

// ErrPartial marks a run that finished but skipped or found damaged data.
// Commands wrap it with the counts: fmt.Errorf("%d files unreadable: %w", n, ErrPartial).
var ErrPartial = errors.New("some entries were damaged, unreadable or skipped")

// UsageError is a command-line mistake.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef builds a UsageError.
func Usagef(msg string) error { return &UsageError{Msg: msg} }

// FromError maps an error to its exit status. It is the only place that
// does (cmd/usmtkit calls it once, in main).
func FromError(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return OK
	case errors.As(err, &ue):
		return Usage
	case errors.Is(err, context.Canceled):
		return Interrupted
	case errors.Is(err, store.ErrEncrypted):
		return Encrypted
	case errors.Is(err, store.ErrUnsupported):
		return Unsupported
	case errors.Is(err, store.ErrNoStore):
		return NoStore
	case errors.Is(err, ErrPartial):
		return Partial
	}
	return Failure
}
