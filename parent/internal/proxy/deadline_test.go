package proxy_test

// Key-management and freeze calls carry the parent's own deadline for
// their store work, so a store that stops answering cannot hold them, or
// the freeze poll, forever.

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// stallingStore answers nothing until the caller's context ends, like an S3
// endpoint that accepts the connection and never answers (the SDK's default
// HTTP client has no response timeout).
type stallingStore struct {
	store.Store
	stall chan struct{} // closed when the first call stalls
}

func (s *stallingStore) Get(ctx context.Context, _ string) ([]byte, string, error) {
	select {
	case <-s.stall:
	default:
		close(s.stall)
	}
	<-ctx.Done()
	return nil, "", ctx.Err()
}

// outcome waits for done, failing after a bound far above the configured
// call timeout.
func outcome(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(3 * time.Second):
		t.Fatalf("%s still hangs 3 s after a 50 ms CallTimeout (client sent no deadline)", what)
		return nil
	}
}

func TestGetKeyBoundedWithoutClientDeadline(t *testing.T) {
	svc := proxy.New(proxy.Config{Enclave: &fakeEnclave{}, Store: &stallingStore{stall: make(chan struct{})},
		CallTimeout: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background()) // gRPC ctx of a client without deadline
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		_, err := svc.GetKey(ctx, &signerv1.GetKeyRequest{KeyId: keyID(1)})
		done <- err
	}()
	err := outcome(t, done, "GetKey")
	require.Contains(t, []codes.Code{codes.DeadlineExceeded, codes.Unavailable}, status.Code(err))
}

// A Freeze whose store read stalls holds the freeze lock: the periodic
// SyncFreeze (which has its own timeout) waiting behind it must still end
// with its context.
func TestStalledFreezeDoesNotBlockThePoll(t *testing.T) {
	st := &stallingStore{stall: make(chan struct{})}
	svc := proxy.New(proxy.Config{Enclave: &freezeEnclave{}, Store: st,
		CallTimeout: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _, _ = svc.Freeze(ctx, &signerv1.FreezeRequest{Reason: "incident"}) }()
	<-st.stall

	done := make(chan error, 1)
	go func() {
		pctx, pcancel := context.WithTimeout(context.Background(), 50*time.Millisecond) // pollFreeze's syncFreeze
		defer pcancel()
		done <- svc.SyncFreeze(pctx)
	}()
	outcome(t, done, "SyncFreeze with a 50 ms context")
}
