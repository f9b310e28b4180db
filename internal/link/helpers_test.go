package link_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// Methods of testHandler.
const (
	methodEcho      uint16 = iota + 1 // echo the request
	methodNotFound                    // status NotFound "key not found"
	methodPlain                       // a non-status error carrying a secret
	methodWrapped                     // a wrapped status error
	methodBlock                       // block until ctx ends, return ctx.Err()
	methodDeadline                    // return the remaining ctx deadline as a Duration (-1s if none)
	methodHuge                        // return a response bigger than any test MaxFrame
	methodRequestID                   // return the request id of ctx as a StringValue
)

const secret = "s3cr3t-key-material"

// testHandler serves the methods above. started, if set, receives a value
// each time methodBlock starts.
func testHandler(started chan<- struct{}) link.Handler {
	return func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
		switch method {
		case methodEcho:
			return append(resp, req...), nil
		case methodNotFound:
			return nil, status.Error(codes.NotFound, "key not found")
		case methodPlain:
			return nil, errors.New("unwrap key: " + secret)
		case methodWrapped:
			return nil, fmt.Errorf("sign with %s: %w", secret, status.Error(codes.PermissionDenied, "policy denies"))
		case methodBlock:
			if started != nil {
				started <- struct{}{}
			}
			<-ctx.Done()
			return nil, ctx.Err()
		case methodDeadline:
			d := -time.Second
			if dl, ok := ctx.Deadline(); ok {
				d = time.Until(dl)
			}
			return proto.MarshalOptions{}.MarshalAppend(resp, durationpb.New(d))
		case methodHuge:
			return append(resp, make([]byte, 128<<10)...), nil
		case methodRequestID:
			// The same before and after Done builds the lazy context.
			id := link.RequestID(ctx)
			_ = ctx.Done()
			if after := link.RequestID(ctx); after != id {
				return nil, status.Errorf(codes.Internal, "request id %q became %q", id, after)
			}
			return proto.MarshalOptions{}.MarshalAppend(resp, wrapperspb.String(id))
		}
		return nil, status.Errorf(codes.Unimplemented, "unknown method %d", method)
	}
}

// testLogger returns a logger that writes to t.Log.
func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// notifyHandler passes records to Handler and sends each one's message and
// attributes, as text, on ch without blocking.
type notifyHandler struct {
	slog.Handler
	ch chan<- string
}

func (h notifyHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	select {
	case h.ch <- b.String():
	default:
	}
	return h.Handler.Handle(ctx, r)
}

// socketPath returns a fresh unix socket path short enough for sun_path.
func socketPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "l.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "link")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "l.sock")
}

// server is a running Serve call.
type server struct {
	addr string
	stop func() // cancels Serve and waits for it; idempotent
}

// startServer runs Serve on a unix socket at path (a fresh one if empty)
// until the test ends.
func startServer(t testing.TB, path string, cfg link.ServerConfig) *server {
	t.Helper()
	if path == "" {
		path = socketPath(t)
	}
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	if cfg.Handler == nil {
		cfg.Handler = testHandler(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Serve(ctx, l, cfg) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after cancellation")
		}
	})
	t.Cleanup(stop)
	return &server{addr: path, stop: stop}
}

// newClient returns a client dialling the unix socket at path, closed when
// the test ends.
func newClient(t testing.TB, path string, cfg link.ClientConfig) *link.Client {
	t.Helper()
	if cfg.Dial == nil {
		cfg.Dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := link.NewClient(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}
