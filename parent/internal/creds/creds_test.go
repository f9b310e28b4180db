package creds

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
)

type fakeEnclave struct {
	mu   sync.Mutex
	got  []*enclavev1.SetCredentialsRequest
	fail error
}

func (f *fakeEnclave) Call(_ context.Context, method uint16, req, _ proto.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if enclavev1.Method(method) != enclavev1.Method_METHOD_SET_CREDENTIALS {
		return errors.New("unexpected method")
	}
	if f.fail != nil {
		return f.fail
	}
	f.got = append(f.got, proto.Clone(req).(*enclavev1.SetCredentialsRequest))
	return nil
}

func (f *fakeEnclave) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

type countingProvider struct {
	mu      sync.Mutex
	calls   int
	expires time.Time
}

func (p *countingProvider) Retrieve(context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret", SessionToken: "tok",
		CanExpire: !p.expires.IsZero(), Expires: p.expires, Source: "test"}, nil
}

func TestPushCarriesCredentialsAndExpiry(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	prov := &countingProvider{expires: exp}
	enc := &fakeEnclave{}
	p := New(prov, enc, slog.New(slog.DiscardHandler))
	require.NoError(t, p.Push(context.Background()))
	require.NoError(t, p.Push(context.Background()))
	require.Equal(t, 2, enc.count())
	got := enc.got[0]
	require.Equal(t, "AKID", got.GetAccessKeyId())
	require.Equal(t, "secret", got.GetSecretAccessKey())
	require.Equal(t, "tok", got.GetSessionToken())
	require.LessOrEqual(t, got.GetExpiresUnixMs(), exp.UnixMilli())
	require.GreaterOrEqual(t, got.GetExpiresUnixMs(), exp.Add(-ExpiryWindow).UnixMilli(), "the cache's early expiry")
	require.Equal(t, 1, prov.calls, "credentials are cached between pushes")

	enc.fail = errors.New("enclave unavailable")
	require.ErrorContains(t, p.Push(context.Background()), "push to enclave")
}

func TestNextPushBeforeExpiry(t *testing.T) {
	now := time.Now()
	p := &Pusher{now: func() time.Time { return now }}
	require.Equal(t, time.Minute, p.next(time.Minute), "no expiry: every interval")
	p.expires = now.Add(7 * time.Minute)
	require.Equal(t, 7*time.Minute, p.next(10*time.Minute), "at the (early) expiry")
	p.expires = now.Add(-time.Minute)
	require.Equal(t, time.Second, p.next(10*time.Minute), "already late: soon")
}

func TestRunStopsWithContext(t *testing.T) {
	enc := &fakeEnclave{}
	p := New(&countingProvider{}, enc, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx, time.Hour); close(done) }()
	require.Eventually(t, func() bool { return enc.count() == 1 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func TestRefreshCoalesces(t *testing.T) {
	enc := &fakeEnclave{}
	p := New(&countingProvider{}, enc, slog.New(slog.DiscardHandler))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { require.NoError(t, p.Refresh(context.Background())) })
	}
	wg.Wait()
	require.Equal(t, 1, enc.count(), "one push for a burst")
}
