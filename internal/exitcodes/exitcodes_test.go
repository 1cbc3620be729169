package exitcodes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/usmtkit/usmtkit/store"
)

func TestFromError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, OK},
		{errors.New("disk full"), Failure},
		{Usagef("bad flag"), Usage},
		{fmt.Errorf("3 files: %w", ErrPartial), Partial},
		{fmt.Errorf("at /x: %w", store.ErrNoStore), NoStore},
		{fmt.Errorf("x: %w", store.ErrEncrypted), Encrypted},
		{fmt.Errorf("x: %w", store.ErrUnsupported), Unsupported},
		{fmt.Errorf("walking: %w", context.Canceled), Interrupted},
		// Interrupted wins over what was found before the stop.
		{errors.Join(fmt.Errorf("x: %w", ErrPartial), context.Canceled), Interrupted},
	} {
		if got := FromError(tc.err); got != tc.want {
			t.Errorf("FromError(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestTableListsEveryCode keeps --help and the constants in step.
func TestTableListsEveryCode(t *testing.T) {
	for _, c := range []int{OK, Failure, Usage, Partial, NoStore, Encrypted, Unsupported, Interrupted} {
		if !strings.Contains(Table, fmt.Sprintf("   %d ", c)) {
			t.Errorf("exit code %d missing from the table", c)
		}
	}
}
