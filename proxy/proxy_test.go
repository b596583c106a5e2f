package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/popbridge/popbridge/imapback"
	"github.com/popbridge/popbridge/pop3front"
)

func TestUpstreamErrorsMapToResponseCodes(t *testing.T) {
	other := errors.New("something else")
	for _, tc := range []struct {
		err  error
		want error
	}{
		{nil, nil},
		{fmt.Errorf("%w: NO", imapback.ErrAuthFailed), pop3front.ErrAuthFailed},
		{fmt.Errorf("%w: dial", imapback.ErrUnavailable), pop3front.ErrUnavailable},
		{fmt.Errorf("%w: SELECT", imapback.ErrMailbox), errMailbox},
		{fmt.Errorf("%w: SELECT", imapback.ErrInUse), pop3front.ErrInUse},
		{fmt.Errorf("%w: UID 7", imapback.ErrGone), pop3front.ErrNoMessage},
		{other, other},
	} {
		if got := popError(slog.New(slog.DiscardHandler), tc.err); got != tc.want {
			t.Errorf("popError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
