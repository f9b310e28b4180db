package kmsforward_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/transport"
	"github.com/nitrosigner/nitrosigner/parent/internal/kmsforward"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkLeaks fails the test if, once its other cleanups have run, more
// goroutines exist than when it was called. Call it first.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// logRecorder is a slog handler that keeps every record (message and
// attributes as strings) and also writes it to t.Log.
type logRecorder struct {
	t    testing.TB
	mu   sync.Mutex
	recs []map[string]string
}

type recHandler struct {
	r     *logRecorder
	attrs []slog.Attr
}

func newLogger(t testing.TB) (*slog.Logger, *logRecorder) {
	r := &logRecorder{t: t}
	return slog.New(recHandler{r: r}), r
}

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recHandler) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{"msg": rec.Message, "level": rec.Level.String()}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	add := func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	rec.Attrs(add)
	h.r.mu.Lock()
	h.r.recs = append(h.r.recs, m)
	h.r.mu.Unlock()
	h.r.t.Log(b.String())
	return nil
}

func (h recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recHandler{r: h.r, attrs: slices.Concat(h.attrs, as)}
}

func (h recHandler) WithGroup(string) slog.Handler { return h }

// find returns the records with message msg.
func (r *logRecorder) find(msg string) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, m := range r.recs {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// wait waits until n records with message msg exist and returns them.
func (r *logRecorder) wait(t testing.TB, msg string, n int) []map[string]string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d %q log records", n, msg), func() bool { return len(r.find(msg)) >= n })
	return r.find(msg)
}

// forwarder is a running Serve.
type forwarder struct {
	addr   string // transport address to dial
	cancel context.CancelFunc
	done   chan error
}

// startForwarder serves cfg on a fresh unix or tcp listener until the test
// ends (or stop is called).
func startForwarder(t *testing.T, network string, cfg kmsforward.Config) *forwarder {
	t.Helper()
	addr := "tcp://127.0.0.1:0"
	if network == "unix" {
		addr = "unix://" + socketPath(t)
	}
	l, err := transport.Listen(context.Background(), addr)
	require.NoError(t, err)
	if network == "tcp" {
		addr = "tcp://" + l.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &forwarder{addr: addr, cancel: cancel, done: make(chan error, 1)}
	go func() { f.done <- kmsforward.Serve(ctx, l, cfg) }()
	t.Cleanup(func() { f.stop(t) })
	return f
}

// stop cancels Serve and checks that it returns nil promptly. It may be
// called more than once.
func (f *forwarder) stop(t testing.TB) {
	t.Helper()
	f.cancel()
	select {
	case err, ok := <-f.done:
		if ok {
			require.NoError(t, err)
			close(f.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func (f *forwarder) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := transport.Dial(context.Background(), f.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// tcpServer serves handle on 127.0.0.1 until the test ends; it returns the
// host:port. Cleanup closes the listener and open connections and waits for
// the handlers.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// config returns a Config forwarding to target with a test logger.
func config(t testing.TB, target string) (kmsforward.Config, *logRecorder) {
	log, rec := newLogger(t)
	return kmsforward.Config{Target: target, Allow: []string{target}, Logger: log}, rec
}

// socketPath returns a fresh unix socket path short enough for sun_path.
func socketPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.sock")
	if len(p) < 100 {
		return p
	}
	dir, err := filepath.Abs(filepath.Join("/tmp", fmt.Sprintf("kf%d", time.Now().UnixNano())))
	require.NoError(t, err)
	return dir + ".sock"
}
