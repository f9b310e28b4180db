package link_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

func TestRoundTrip(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{})
	c := newClient(t, srv.addr, link.ClientConfig{})

	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 100},
		{"read buffer size", 64 << 10},
		{"above read buffer", 100 << 10},
		{"large", 3 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := bytes.Repeat([]byte{0xa5}, tt.size)
			req := wrapperspb.Bytes(value)

			var resp wrapperspb.BytesValue
			require.NoError(t, c.Call(t.Context(), methodEcho, req, &resp))
			assert.Equal(t, tt.size, len(resp.GetValue()))
			assert.True(t, proto.Equal(req, &resp))

			raw, err := proto.Marshal(req)
			require.NoError(t, err)
			var got []byte
			require.NoError(t, c.CallRaw(t.Context(), methodEcho, raw, func(b []byte) error {
				got = bytes.Clone(b)
				return nil
			}))
			assert.Equal(t, raw, got)
		})
	}
}

func TestTransports(t *testing.T) {
	tests := []struct {
		network string
		address func(t *testing.T) string
	}{
		{"unix", func(t *testing.T) string { return socketPath(t) }},
		{"tcp", func(*testing.T) string { return "127.0.0.1:0" }},
	}
	for _, tt := range tests {
		t.Run(tt.network, func(t *testing.T) {
			l, err := net.Listen(tt.network, tt.address(t))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				done <- link.Serve(ctx, l, link.ServerConfig{Handler: testHandler(nil), Logger: testLogger(t)})
			}()
			defer func() {
				cancel()
				assert.NoError(t, <-done)
			}()

			c, err := link.NewClient(link.ClientConfig{
				Dial: func(ctx context.Context) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, tt.network, l.Addr().String())
				},
				Logger: testLogger(t),
			})
			require.NoError(t, err)
			defer c.Close()

			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					want := fmt.Sprintf("call %d", i)
					var resp wrapperspb.StringValue
					assert.NoError(t, c.Call(t.Context(), methodEcho, wrapperspb.String(want), &resp))
					assert.Equal(t, want, resp.GetValue())
				})
			}
			wg.Wait()
		})
	}
}

func TestCallRawCallbackError(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{})
	c := newClient(t, srv.addr, link.ClientConfig{})

	errMine := fmt.Errorf("my error")
	err := c.CallRaw(t.Context(), methodEcho, []byte{1, 2}, func([]byte) error { return errMine })
	assert.ErrorIs(t, err, errMine)
}

func TestConcurrentCalls(t *testing.T) {
	const goroutines, calls = 64, 500
	srv := startServer(t, "", link.ServerConfig{})
	c := newClient(t, srv.addr, link.ClientConfig{})

	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			var resp wrapperspb.StringValue
			for i := range calls {
				want := fmt.Sprintf("goroutine %d call %d", g, i)
				if i%7 == 3 {
					// Mix in errors so that both kinds of response
					// interleave.
					err := c.Call(t.Context(), methodNotFound, wrapperspb.String(want), &resp)
					if status.Code(err) != codes.NotFound {
						errs <- fmt.Errorf("%s: got %v, want NotFound", want, err)
						return
					}
					continue
				}
				if err := c.Call(t.Context(), methodEcho, wrapperspb.String(want), &resp); err != nil {
					errs <- fmt.Errorf("%s: %w", want, err)
					return
				}
				if resp.GetValue() != want {
					errs <- fmt.Errorf("got %q, want %q", resp.GetValue(), want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestErrors(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{})
	c := newClient(t, srv.addr, link.ClientConfig{})

	tests := []struct {
		name     string
		method   uint16
		wantCode codes.Code
		wantMsg  string
	}{
		{"status error", methodNotFound, codes.NotFound, "key not found"},
		{"plain error", methodPlain, codes.Internal, "internal error"},
		{"wrapped status", methodWrapped, codes.PermissionDenied, "policy denies"},
		{"unknown method", 999, codes.Unimplemented, "unknown method 999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp wrapperspb.BytesValue
			err := c.Call(t.Context(), tt.method, wrapperspb.Bytes(nil), &resp)
			s, ok := status.FromError(err)
			require.True(t, ok, "not a status error: %v", err)
			assert.Equal(t, tt.wantCode, s.Code())
			assert.Equal(t, tt.wantMsg, s.Message())
			assert.NotContains(t, err.Error(), secret)
		})
	}
}

func TestDeadline(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := startServer(t, "", link.ServerConfig{Handler: testHandler(started)})
	c := newClient(t, srv.addr, link.ClientConfig{CallTimeout: 7 * time.Second})

	t.Run("client deadline", func(t *testing.T) {
		// start before the deadline is set: a pause between the two
		// would otherwise make the call look early.
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		err := c.Call(ctx, methodBlock, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		elapsed := time.Since(start)
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		assert.GreaterOrEqual(t, elapsed, 50*time.Millisecond)
		assert.Less(t, elapsed, 300*time.Millisecond)
		<-started
	})

	t.Run("client cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			<-started
			cancel()
		}()
		err := c.Call(ctx, methodBlock, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		assert.Equal(t, codes.Canceled, status.Code(err), "%v", err)
	})

	t.Run("already expired", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), -time.Second)
		defer cancel()
		err := c.Call(ctx, methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
	})

	// The server's context carries the client's remaining time.
	tests := []struct {
		name     string
		timeout  time.Duration // 0: no deadline on the caller's ctx
		min, max time.Duration
	}{
		{"caller deadline", 2 * time.Second, 1500 * time.Millisecond, 2 * time.Second},
		{"call timeout", 0, 6500 * time.Millisecond, 7 * time.Second},
		{"deadline beyond the call timeout", 3 * time.Hour, 6500 * time.Millisecond, 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.timeout != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			var resp durationpb.Duration
			require.NoError(t, c.Call(ctx, methodDeadline, wrapperspb.Bytes(nil), &resp))
			got := resp.AsDuration()
			assert.GreaterOrEqual(t, got, tt.min)
			assert.LessOrEqual(t, got, tt.max)
		})
	}

	t.Run("call timeout without the server's help", func(t *testing.T) {
		// The handler ignores its context and never answers: the
		// client's own timer must end the call, although ctx allows an
		// hour.
		hang := make(chan struct{})
		srv := startServer(t, "", link.ServerConfig{
			Handler: func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
				<-hang
				return resp, nil
			},
		})
		t.Cleanup(func() { close(hang) })
		c := newClient(t, srv.addr, link.ClientConfig{CallTimeout: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		// Without a working timer the call would hang: end it as
		// Canceled instead, which fails the test.
		guard := time.AfterFunc(3*time.Second, cancel)
		defer guard.Stop()
		start := time.Now()
		err := c.Call(ctx, methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		elapsed := time.Since(start)
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		assert.GreaterOrEqual(t, elapsed, 100*time.Millisecond)
		assert.Less(t, elapsed, time.Second)
	})

	t.Run("timeout_us saturates", func(t *testing.T) {
		long := newClient(t, srv.addr, link.ClientConfig{CallTimeout: 5 * time.Hour})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Hour)
		defer cancel()
		var resp durationpb.Duration
		require.NoError(t, long.Call(ctx, methodDeadline, wrapperspb.Bytes(nil), &resp))
		assert.GreaterOrEqual(t, resp.AsDuration(), 71*time.Minute)
		assert.LessOrEqual(t, resp.AsDuration(), 72*time.Minute)
	})

	t.Run("handler honours deadline", func(t *testing.T) {
		// The server cancels the handler when timeout_us passes, even if
		// the client stops waiting later.
		done := make(chan time.Duration, 1)
		srv := startServer(t, "", link.ServerConfig{
			Handler: func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
				start := time.Now()
				<-ctx.Done()
				done <- time.Since(start)
				return nil, ctx.Err()
			},
		})
		c := newClient(t, srv.addr, link.ClientConfig{})
		cctx, ccancel := context.WithTimeout(t.Context(), 80*time.Millisecond)
		defer ccancel()
		err := c.Call(cctx, 1, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
		select {
		case d := <-done:
			assert.Less(t, d, 200*time.Millisecond)
		case <-time.After(2 * time.Second):
			t.Fatal("handler context was not cancelled")
		}
	})
}

func TestMaxConcurrent(t *testing.T) {
	started := make(chan struct{}, 2)
	srv := startServer(t, "", link.ServerConfig{Handler: testHandler(started), MaxConcurrent: 2})
	c := newClient(t, srv.addr, link.ClientConfig{})

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			err := c.Call(ctx, methodBlock, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
			assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
		})
	}
	<-started
	<-started
	err := c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	wg.Wait()

	// The blocked handlers end with their deadline; then there is room.
	assert.Eventually(t, func() bool {
		return c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{}) == nil
	}, 5*time.Second, 10*time.Millisecond)
}

func TestFrameLimits(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{MaxFrame: 1024})
	c := newClient(t, srv.addr, link.ClientConfig{MaxFrame: 64 << 10})
	small := newClient(t, srv.addr, link.ClientConfig{MaxFrame: 1024})

	tests := []struct {
		name     string
		client   *link.Client
		method   uint16
		size     int
		wantCode codes.Code
	}{
		{"fits", c, methodEcho, 900, codes.OK},
		{"server limit", c, methodEcho, 4 << 10, codes.Unavailable},
		{"client limit", small, methodEcho, 4 << 10, codes.ResourceExhausted},
		{"response too large", c, methodHuge, 0, codes.ResourceExhausted},
		{"recovered", c, methodEcho, 900, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.client.Call(t.Context(), tt.method, wrapperspb.Bytes(make([]byte, tt.size)), &wrapperspb.BytesValue{})
			assert.Equal(t, tt.wantCode, status.Code(err), "%v", err)
		})
	}
}

func TestUnavailable(t *testing.T) {
	path := socketPath(t)
	c := newClient(t, path, link.ClientConfig{})

	// Nothing listens yet: the call fails fast, well within its deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Call(ctx, methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Equal(t, "enclave unavailable", status.Convert(err).Message(), "no socket paths or OS errors reach callers")
	assert.Less(t, time.Since(start), time.Second)

	// The same client recovers once the server is up.
	startServer(t, path, link.ServerConfig{})
	assert.Eventually(t, func() bool {
		return c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{}) == nil
	}, 5*time.Second, 20*time.Millisecond)
}

func TestServerStopsMidCall(t *testing.T) {
	const calls = 16
	path := socketPath(t)
	started := make(chan struct{}, calls)
	srv := startServer(t, path, link.ServerConfig{Handler: testHandler(started)})
	c := newClient(t, path, link.ClientConfig{})

	errs := make(chan error, calls)
	for range calls {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			errs <- c.Call(ctx, methodBlock, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		}()
	}
	for range calls {
		<-started
	}
	stopped := time.Now()
	srv.stop()
	for range calls {
		err := <-errs
		assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	}
	assert.Less(t, time.Since(stopped), time.Second)

	// A new server on the same path serves the same client again.
	startServer(t, path, link.ServerConfig{})
	assert.Eventually(t, func() bool {
		return c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{}) == nil
	}, 5*time.Second, 20*time.Millisecond)
}

func TestPeerDiesMidCall(t *testing.T) {
	// A raw peer that reads the request and drops the connection without
	// answering, as a crashed enclave would.
	l, err := net.Listen("unix", socketPath(t))
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		conn.Write([]byte(link.Magic)) //nolint:errcheck // the test checks the client
		conn.Read(make([]byte, 64))    //nolint:errcheck // the test checks the client
		time.Sleep(50 * time.Millisecond)
		conn.Close()
	}()
	c := newClient(t, l.Addr().String(), link.ClientConfig{})
	start := time.Now()
	err = c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	assert.Less(t, time.Since(start), time.Second)
}

// TestConnectionHooks: OnConnect runs for each new connection and
// OnDisconnect for each lost one, but not when Close ends the connection.
func TestConnectionHooks(t *testing.T) {
	path := socketPath(t)
	connected, disconnected := make(chan struct{}, 4), make(chan struct{}, 4)
	c := newClient(t, path, link.ClientConfig{
		OnConnect:    func() { connected <- struct{}{} },
		OnDisconnect: func() { disconnected <- struct{}{} },
	})
	echo := func() error { return c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{}) }
	wait := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s", what)
		}
	}

	srv := startServer(t, path, link.ServerConfig{})
	require.NoError(t, echo())
	wait(connected, "OnConnect for the first connection")
	srv.stop()
	wait(disconnected, "OnDisconnect when the server went away")

	startServer(t, path, link.ServerConfig{})
	require.Eventually(t, func() bool { return echo() == nil }, 5*time.Second, 20*time.Millisecond)
	wait(connected, "OnConnect for the new connection")

	require.NoError(t, c.Close())
	select {
	case <-disconnected:
		t.Fatal("OnDisconnect ran for Close")
	case <-time.After(100 * time.Millisecond):
	}
	assert.Empty(t, connected)
}

func TestClose(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := startServer(t, "", link.ServerConfig{Handler: testHandler(started)})
	c := newClient(t, srv.addr, link.ClientConfig{})

	errc := make(chan error, 1)
	go func() {
		errc <- c.Call(t.Context(), methodBlock, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
	}()
	<-started
	require.NoError(t, c.Close())
	assert.Equal(t, codes.Canceled, status.Code(<-errc))
	err := c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
	assert.Equal(t, codes.Canceled, status.Code(err))
	require.NoError(t, c.Close())
}

func TestConfigValidation(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		tests := []struct {
			name string
			cfg  link.ServerConfig
		}{
			{"no handler", link.ServerConfig{}},
			{"tiny frame", link.ServerConfig{Handler: testHandler(nil), MaxFrame: 10}},
			{"negative concurrency", link.ServerConfig{Handler: testHandler(nil), MaxConcurrent: -1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l, err := net.Listen("unix", socketPath(t))
				require.NoError(t, err)
				assert.Error(t, link.Serve(t.Context(), l, tt.cfg))
			})
		}
	})
	t.Run("client", func(t *testing.T) {
		dial := func(context.Context) (net.Conn, error) { return nil, net.ErrClosed }
		tests := []struct {
			name string
			cfg  link.ClientConfig
		}{
			{"no dial", link.ClientConfig{}},
			{"tiny frame", link.ClientConfig{Dial: dial, MaxFrame: 10}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := link.NewClient(tt.cfg)
				assert.Error(t, err)
			})
		}
	})
}

func TestWriteStall(t *testing.T) {
	t.Run("server stops reading", func(t *testing.T) {
		// A peer that accepts and never reads: the client's writes
		// block, and the watchdog fails the connection.
		l, err := net.Listen("unix", socketPath(t))
		require.NoError(t, err)
		var held []net.Conn
		var mu sync.Mutex
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				c.Close()
			}
		})
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, conn)
				mu.Unlock()
			}
		}()
		c := newClient(t, l.Addr().String(), link.ClientConfig{WriteTimeout: 200 * time.Millisecond})

		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		start := time.Now()
		errs := make(chan error, 2)
		go func() {
			errs <- c.Call(ctx, methodEcho, wrapperspb.Bytes(make([]byte, 3<<20)), &wrapperspb.BytesValue{})
		}()
		time.Sleep(20 * time.Millisecond)
		go func() {
			errs <- c.Call(ctx, methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{})
		}()
		for range 2 {
			err := <-errs
			assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		}
		assert.Less(t, time.Since(start), 2*time.Second)
	})

	t.Run("client stops reading", func(t *testing.T) {
		logged := make(chan string, 100)
		srv := startServer(t, "", link.ServerConfig{
			WriteTimeout: 200 * time.Millisecond,
			Logger:       slog.New(notifyHandler{testLogger(t).Handler(), logged}),
		})
		conn, err := net.Dial("unix", srv.addr)
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))

		// Send requests whose echoes exceed every buffer, read nothing.
		go func() {
			if _, err := conn.Write([]byte(link.Magic)); err != nil {
				return
			}
			payload := make([]byte, 64<<10)
			for i := range 200 {
				if _, err := conn.Write(reqFrame(1, methodEcho, uint64(i), 0, payload)); err != nil {
					return
				}
			}
		}()
		timeout := time.After(20 * time.Second)
	wait:
		for {
			select {
			case msg := <-logged:
				if strings.Contains(msg, "write blocked") {
					break wait
				}
			case <-timeout:
				t.Fatal("the server never reported the blocked write")
			}
		}
		// The server gave up: what it wrote is followed by the end of
		// the stream, not by a hang until the read deadline.
		_, err = io.Copy(io.Discard, conn)
		if err != nil {
			// Closing with unread requests resets the connection.
			assert.ErrorIs(t, err, syscall.ECONNRESET)
		}
	})
}

// A WriteTimeout of a few nanoseconds is odd but valid; it must not crash
// the writer's watchdog (its tick is a quarter of the timeout).
func TestTinyWriteTimeout(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{WriteTimeout: time.Nanosecond})
	c := newClient(t, srv.addr, link.ClientConfig{WriteTimeout: 3 * time.Nanosecond})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out wrapperspb.BytesValue
	require.NoError(t, c.Call(ctx, methodEcho, wrapperspb.Bytes([]byte("x")), &out))
	assert.Equal(t, []byte("x"), out.GetValue())
}
