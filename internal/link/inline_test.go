//go:build unix

package link_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// TestInlineMethods: a quick method named by ServerConfig.Inline is
// answered, and a slow method not named there never holds up the
// connection's reader, so a quick request sent while it runs is answered
// at once.
func TestInlineMethods(t *testing.T) {
	const quick, slow = 1, 2
	release := make(chan struct{})
	srv := startServer(t, "", link.ServerConfig{
		Handler: func(ctx context.Context, m uint16, req, resp []byte) ([]byte, error) {
			if m == slow {
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return append(resp, req...), nil
		},
		Inline: func(m uint16, _ int) bool { return m == quick },
	})
	c := newClient(t, srv.addr, link.ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var resp wrapperspb.BytesValue
	require.NoError(t, c.Call(ctx, quick, wrapperspb.Bytes([]byte("a")), &resp))
	require.Equal(t, []byte("a"), resp.GetValue())

	slowDone := make(chan error, 1)
	go func() { slowDone <- c.Call(ctx, slow, wrapperspb.Bytes([]byte("s")), &wrapperspb.BytesValue{}) }()
	for range 50 {
		require.NoError(t, c.Call(ctx, quick, wrapperspb.Bytes([]byte("b")), &resp), "quick calls pass a running slow one")
		require.Equal(t, []byte("b"), resp.GetValue())
	}
	select {
	case err := <-slowDone:
		t.Fatalf("slow call finished before release: %v", err)
	default:
	}
	close(release)
	require.NoError(t, <-slowDone)
}

// TestUrgentMethods: a method named by ServerConfig.Urgent is handled on
// the reader even while other requests are in flight, where an Inline one
// goes to a worker. Which of the two served a request shows in the yields:
// only workers yield.
func TestUrgentMethods(t *testing.T) {
	const urgent, quick, slow = 1, 2, 3
	yields := link.CountYields(t)
	started, release := make(chan struct{}), make(chan struct{})
	srv := startServer(t, "", link.ServerConfig{
		Handler: func(ctx context.Context, m uint16, req, resp []byte) ([]byte, error) {
			if m == slow {
				close(started)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return append(resp, req...), nil
		},
		Inline:   func(m uint16, _ int) bool { return m == quick || m == urgent },
		Urgent:   func(m uint16) bool { return m == urgent },
		YieldCPU: true,
	})
	c := newClient(t, srv.addr, link.ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	slowDone := make(chan error, 1)
	go func() { slowDone <- c.Call(ctx, slow, wrapperspb.Bytes([]byte("s")), &wrapperspb.BytesValue{}) }()
	<-started

	const n = 20
	var resp wrapperspb.BytesValue
	for range n {
		require.NoError(t, c.Call(ctx, urgent, wrapperspb.Bytes([]byte("u")), &resp))
		require.Equal(t, []byte("u"), resp.GetValue())
	}
	require.Zero(t, yields.Load(), "urgent calls are served on the reader")
	for range n {
		require.NoError(t, c.Call(ctx, quick, wrapperspb.Bytes([]byte("q")), &resp))
	}
	// A worker yields after it handed its answer over: the last may lag.
	require.Eventually(t, func() bool { return yields.Load() >= n }, 5*time.Second, time.Millisecond)
	require.Equal(t, int64(n), yields.Load(), "quick calls in company go to workers")
	close(release)
	require.NoError(t, <-slowDone)
}

// TestOverBudgetIsRefusedNotWaitedFor: a request that would take the
// payloads in progress over the server's budget is answered with
// ResourceExhausted at once, and the reader goes on reading: an urgent
// ping sent behind it is answered while the budget is still held.
func TestOverBudgetIsRefusedNotWaitedFor(t *testing.T) {
	const hold, ping = 1, 2
	link.SetRequestBudget(t, 1000)
	started, release := make(chan struct{}, 8), make(chan struct{})
	srv := startServer(t, "", link.ServerConfig{
		Handler: func(ctx context.Context, m uint16, req, resp []byte) ([]byte, error) {
			if m == hold {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return append(resp, req...), nil
		},
		Urgent:   func(m uint16) bool { return m == ping },
		MaxFrame: 256,
	})
	c := newClient(t, srv.addr, link.ClientConfig{MaxFrame: 256})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	big := wrapperspb.Bytes(make([]byte, 200))
	held := make(chan error, 4)
	for range 4 { // 4 × about 200 bytes of the 1000-byte budget
		go func() { held <- c.Call(ctx, hold, big, &wrapperspb.BytesValue{}) }()
		<-started
	}
	err := c.Call(ctx, hold, big, &wrapperspb.BytesValue{})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "over budget: %v", err)
	var resp wrapperspb.BytesValue
	require.NoError(t, c.Call(ctx, ping, wrapperspb.Bytes([]byte("p")), &resp), "the reader still reads")
	require.Equal(t, []byte("p"), resp.GetValue())

	close(release)
	for range 4 {
		require.NoError(t, <-held)
	}
	require.NoError(t, c.Call(ctx, hold, big, &wrapperspb.BytesValue{}), "the budget is back")
}
