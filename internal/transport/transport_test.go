package transport_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/nitrosigner/nitrosigner/internal/transport"
)

// network describes how to get a fresh listen address for one network and
// how to dial a listener on it.
type network struct {
	name string
	// listenAddr returns a new, unused address to listen on.
	listenAddr func(t *testing.T) string
	// dialAddr returns the address that reaches l.
	dialAddr func(t *testing.T, l net.Listener) string
}

// localNetworks are the networks that work on every development machine.
func localNetworks() []network {
	return []network{
		{
			name:       "tcp",
			listenAddr: func(*testing.T) string { return "tcp://127.0.0.1:0" },
			dialAddr: func(_ *testing.T, l net.Listener) string {
				return "tcp://" + l.Addr().String()
			},
		},
		{
			name:       "unix",
			listenAddr: func(t *testing.T) string { return "unix://" + sockPath(t) },
			dialAddr: func(_ *testing.T, l net.Listener) string {
				return "unix://" + l.Addr().String()
			},
		},
	}
}

var sockSeq atomic.Uint64

// sockPath returns a fresh socket path in a short private directory that is
// removed when the test ends. t.TempDir paths embed the test name and can
// exceed the ~108-byte limit on unix socket paths.
func sockPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(shortDir(t), fmt.Sprintf("%d.sock", sockSeq.Add(1)))
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ns")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// listen is transport.Listen that closes the listener when the test ends.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := transport.Listen(t.Context(), addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// makePipe returns a nettest.MakePipe that connects a fresh listener on nw
// to a connection dialed through transport.Dial.
func makePipe(t *testing.T, nw network) nettest.MakePipe {
	t.Helper()
	return func() (c1, c2 net.Conn, stop func(), err error) {
		ctx := context.Background()
		l, err := transport.Listen(ctx, nw.listenAddr(t))
		if err != nil {
			return nil, nil, nil, err
		}
		type accepted struct {
			c   net.Conn
			err error
		}
		ch := make(chan accepted, 1)
		go func() {
			c, err := l.Accept()
			ch <- accepted{c, err}
		}()

		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c1, err = transport.Dial(ctx, nw.dialAddr(t, l))
		if err != nil {
			_ = l.Close()
			<-ch
			return nil, nil, nil, err
		}
		a := <-ch
		if a.err != nil {
			_ = c1.Close()
			_ = l.Close()
			return nil, nil, nil, a.err
		}
		stop = func() {
			_ = c1.Close()
			_ = a.c.Close()
			_ = l.Close()
		}
		return c1, a.c, stop, nil
	}
}

func TestConn(t *testing.T) {
	for _, nw := range localNetworks() {
		t.Run(nw.name, func(t *testing.T) {
			nettest.TestConn(t, makePipe(t, nw))
		})
	}
}

func TestListener(t *testing.T) {
	for _, nw := range localNetworks() {
		t.Run(nw.name, func(t *testing.T) {
			l, err := transport.Listen(t.Context(), nw.listenAddr(t))
			require.NoError(t, err)
			assert.Equal(t, nw.name, l.Addr().Network())
			addr := nw.dialAddr(t, l)

			// Echo server: several concurrent clients are all served.
			served := make(chan struct{})
			go func() {
				defer close(served)
				for {
					c, err := l.Accept()
					if err != nil {
						assert.ErrorIs(t, err, net.ErrClosed)
						return
					}
					go func() {
						defer c.Close()
						_, _ = io.Copy(c, c)
					}()
				}
			}()

			const clients = 8
			errs := make(chan error, clients)
			for i := range clients {
				go func() {
					errs <- echo(t.Context(), addr, fmt.Sprintf("hello %d", i))
				}()
			}
			for range clients {
				assert.NoError(t, <-errs)
			}

			require.NoError(t, l.Close())
			<-served

			_, err = l.Accept()
			assert.ErrorIs(t, err, net.ErrClosed)
			_, err = transport.Dial(t.Context(), addr)
			assert.Error(t, err, "dial after Close must fail")
		})
	}
}

// echo dials addr, writes msg, and checks that msg comes back.
func echo(ctx context.Context, addr, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
	}
	return nil
}

func TestDialCancelledContext(t *testing.T) {
	tcp := listen(t, "tcp://127.0.0.1:0")
	unix := listen(t, "unix://"+sockPath(t))
	tests := []struct {
		name string
		addr string
	}{
		{name: "tcp", addr: "tcp://" + tcp.Addr().String()},
		{name: "unix", addr: "unix://" + unix.Addr().String()},
		// Never reaches the device: the cancelled context is checked first.
		{name: "vsock", addr: "vsock://3:8000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()

			start := time.Now()
			c, err := transport.Dial(ctx, tt.addr)
			if c != nil {
				_ = c.Close()
			}
			require.ErrorIs(t, err, context.Canceled)
			assert.Contains(t, err.Error(), tt.addr)
			assert.Less(t, time.Since(start), time.Second, "dial did not fail fast")

			d, err := transport.Dialer(tt.addr)
			require.NoError(t, err)
			_, err = d(ctx, "ignored")
			assert.ErrorIs(t, err, context.Canceled)
		})
	}
}

func TestDialUnusedUnixPath(t *testing.T) {
	addr := "unix://" + sockPath(t)
	_, err := transport.Dial(t.Context(), addr)
	require.Error(t, err)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.Contains(t, err.Error(), addr)
}

func TestDialInvalid(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		wantMsg string
	}{
		{name: "malformed", addr: "tcp://127.0.0.1", wantMsg: "missing port"},
		{name: "vsock cid any", addr: "vsock://any:8000", wantMsg: `CID "any" can only be listened on`},
		{name: "vsock numeric cid any", addr: "vsock://4294967295:8000", wantMsg: `CID "any" can only be listened on`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := transport.Dial(t.Context(), tt.addr)
			require.ErrorIs(t, err, transport.ErrInvalidAddress)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Contains(t, err.Error(), tt.addr)

			d, err := transport.Dialer(tt.addr)
			require.ErrorIs(t, err, transport.ErrInvalidAddress)
			assert.Nil(t, d)
		})
	}
}

func TestDialer(t *testing.T) {
	for _, nw := range localNetworks() {
		t.Run(nw.name, func(t *testing.T) {
			l := listen(t, nw.listenAddr(t))
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					_, _ = io.WriteString(c, "hi")
					_ = c.Close()
				}
			}()

			dial, err := transport.Dialer(nw.dialAddr(t, l))
			require.NoError(t, err)
			// The target argument is ignored, as grpc passes its own.
			for _, target := range []string{"", "passthrough:///enclave"} {
				c, err := dial(t.Context(), target)
				require.NoError(t, err)
				got, err := io.ReadAll(c)
				assert.NoError(t, err)
				assert.Equal(t, "hi", string(got))
				assert.NoError(t, c.Close())
			}
		})
	}
}

func TestListenErrors(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	busy := listen(t, "tcp://127.0.0.1:0")

	tests := []struct {
		name    string
		ctx     context.Context
		cfg     transport.ListenConfig
		addr    string
		wantErr error
		wantMsg string
	}{
		{
			name:    "malformed",
			addr:    "unix://x.sock",
			wantErr: transport.ErrInvalidAddress,
			wantMsg: "not absolute",
		},
		{
			name:    "cancelled context",
			ctx:     cancelled,
			addr:    "tcp://127.0.0.1:0",
			wantErr: context.Canceled,
			wantMsg: "listen tcp://127.0.0.1:0",
		},
		{
			name:    "tcp port in use",
			addr:    "tcp://" + busy.Addr().String(),
			wantMsg: "address already in use",
		},
		{
			name:    "bad unix mode",
			cfg:     transport.ListenConfig{UnixSocketMode: fs.ModeSetuid | 0o600},
			addr:    "unix:///tmp/never-created.sock",
			wantMsg: "has bits other than permissions",
		},
		{
			name:    "unix missing directory",
			addr:    "unix:///nonexistent-nitrosigner-dir/x.sock",
			wantErr: fs.ErrNotExist,
			wantMsg: "listen unix:///nonexistent-nitrosigner-dir/x.sock",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			l, err := tt.cfg.Listen(ctx, tt.addr)
			if l != nil {
				_ = l.Close()
			}
			require.Error(t, err)
			assert.Nil(t, l)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}
