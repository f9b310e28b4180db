package kmsforward_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/transport"
	"github.com/nitrosigner/nitrosigner/parent/internal/kmsforward"
)

// echo copies everything back and half-closes when the client does.
func echo(c net.Conn) {
	_, _ = io.Copy(c, c)
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

// closeWrite half-closes a client connection (unix or tcp).
func closeWrite(t testing.TB, c net.Conn) {
	t.Helper()
	cw, ok := c.(interface{ CloseWrite() error })
	require.True(t, ok, "%T cannot half-close", c)
	require.NoError(t, cw.CloseWrite())
}

// roundTrip writes msg and reads back len(msg) bytes.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
}

// readEnd reads until the forwarder closes c and returns what it read.
func readEnd(t testing.TB, c net.Conn) []byte {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	data, err := io.ReadAll(c)
	if err != nil {
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "connection was not closed")
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			checkLeaks(t)
			cfg, logs := config(t, tcpServer(t, echo))
			f := startForwarder(t, network, cfg)

			payload := make([]byte, 1<<20)
			rand.Read(payload)
			c := f.dial(t)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(payload)
				if err == nil {
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				errc <- err
			}()
			got := readEnd(t, c)
			require.NoError(t, <-errc)
			assert.True(t, bytes.Equal(payload, got), "payload changed in transit (%d bytes back)", len(got))

			open := logs.wait(t, "kms connection open", 1)[0]
			closed := logs.wait(t, "kms connection closed", 1)[0]
			assert.Equal(t, cfg.Target, open["target"])
			assert.Equal(t, strconv.Itoa(len(payload)), closed["bytes_up"])
			assert.Equal(t, strconv.Itoa(len(payload)), closed["bytes_down"])
			assert.Equal(t, "eof", closed["reason"])
			keys := slices.Sorted(maps.Keys(closed))
			assert.Equal(t, []string{"bytes_down", "bytes_up", "conn", "duration", "level", "msg", "reason", "remote", "target"}, keys,
				"connection logs carry counts and addresses, nothing else")
		})
	}
}

// TestHalfClose checks that EOF passes through in one direction while the
// other keeps flowing: the target answers only after the client's EOF.
func TestHalfClose(t *testing.T) {
	checkLeaks(t)
	target := tcpServer(t, func(c net.Conn) {
		data, err := io.ReadAll(c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%d bytes, sha256 %x", len(data), sha256.Sum256(data))
	})
	cfg, logs := config(t, target)
	f := startForwarder(t, "unix", cfg)
	c := f.dial(t)
	_, err := c.Write([]byte("request"))
	require.NoError(t, err)
	closeWrite(t, c)
	assert.Equal(t, fmt.Sprintf("7 bytes, sha256 %x", sha256.Sum256([]byte("request"))), string(readEnd(t, c)))
	closed := logs.wait(t, "kms connection closed", 1)[0]
	assert.Equal(t, "7", closed["bytes_up"])
	assert.Equal(t, "eof", closed["reason"])
}

// TestTLS runs a TLS handshake and an HTTPS request through the forwarder,
// as the enclave does with KMS.
func TestTLS(t *testing.T) {
	checkLeaks(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || !r.TLS.HandshakeComplete {
			http.Error(w, "no TLS", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "hello over %s", r.Proto)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	cfg, _ := config(t, ts.Listener.Addr().String())
	f := startForwarder(t, "tcp", cfg)

	client := ts.Client()
	tr := client.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return transport.Dial(ctx, f.addr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	for range 3 { // reuses the connection
		resp, err := client.Get(ts.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		assert.Equal(t, "hello over HTTP/2.0", string(body))
	}
}

func TestConfigRefused(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		allow   []string
		wantErr error
		wantMsg string
	}{
		{name: "empty allowlist", target: "kms.us-east-1.amazonaws.com:443", wantErr: kmsforward.ErrNotAllowed},
		{name: "other host", target: "evil.example.com:443", allow: []string{"kms.us-east-1.amazonaws.com:443"}, wantErr: kmsforward.ErrNotAllowed},
		{name: "other port", target: "kms.us-east-1.amazonaws.com:80", allow: []string{"kms.us-east-1.amazonaws.com:443"}, wantErr: kmsforward.ErrNotAllowed},
		{name: "suffix is not a match", target: "kms.us-east-1.amazonaws.com.evil.com:443", allow: []string{"kms.us-east-1.amazonaws.com:443"}, wantErr: kmsforward.ErrNotAllowed},
		{name: "ip for host", target: "52.46.128.1:443", allow: []string{"kms.us-east-1.amazonaws.com:443"}, wantErr: kmsforward.ErrNotAllowed},
		{name: "no target", allow: []string{"kms.us-east-1.amazonaws.com:443"}, wantMsg: "target"},
		{name: "target without port", target: "kms.us-east-1.amazonaws.com", allow: []string{"kms.us-east-1.amazonaws.com"}, wantMsg: "missing port"},
		{name: "named port", target: "kms.us-east-1.amazonaws.com:https", allow: []string{"kms.us-east-1.amazonaws.com:https"}, wantMsg: "port from 1 to 65535"},
		{name: "port zero", target: "kms:0", allow: []string{"kms:0"}, wantMsg: "port from 1 to 65535"},
		{name: "bad allow entry", target: "kms:443", allow: []string{"kms:443", "junk"}, wantMsg: "allowlist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			sock := socketPath(t)
			err := kmsforward.Run(context.Background(), kmsforward.Config{
				Listen: "unix://" + sock, Target: tt.target, Allow: tt.allow,
			})
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			assert.ErrorContains(t, err, tt.wantMsg)
			assert.NoFileExists(t, sock, "Run must refuse before listening")

			l, lerr := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, lerr)
			err = kmsforward.Serve(context.Background(), l, kmsforward.Config{Target: tt.target, Allow: tt.allow})
			require.Error(t, err)
			_, aerr := l.Accept()
			require.ErrorIs(t, aerr, net.ErrClosed, "Serve closes the listener it refuses")
		})
	}
}

func TestAllowNormalised(t *testing.T) {
	checkLeaks(t)
	target := tcpServer(t, echo)
	_, port, err := net.SplitHostPort(target)
	require.NoError(t, err)
	cfg, _ := config(t, "LOCALHOST:0"+port)
	cfg.Allow = []string{"other:443", "localhost:" + port}
	f := startForwarder(t, "tcp", cfg)
	roundTrip(t, f.dial(t), "case and leading zeros do not matter")
}

func TestMaxConns(t *testing.T) {
	checkLeaks(t)
	cfg, logs := config(t, tcpServer(t, echo))
	cfg.MaxConns = 2
	f := startForwarder(t, "unix", cfg)

	c1, c2 := f.dial(t), f.dial(t)
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")

	c3 := f.dial(t)
	assert.Empty(t, readEnd(t, c3), "the connection over the limit is closed at once")
	refused := logs.wait(t, "kms connection refused: limit reached", 1)[0]
	assert.Equal(t, "2", refused["max_conns"])

	c1.Close()
	logs.wait(t, "kms connection closed", 1)
	c4 := f.dial(t)
	roundTrip(t, c4, "a slot is free again")
	roundTrip(t, c2, "two still works")
}

func TestIdleTimeout(t *testing.T) {
	checkLeaks(t)
	serverSaw := make(chan error, 1)
	target := tcpServer(t, func(c net.Conn) {
		_, err := io.Copy(c, c)
		serverSaw <- err
	})
	cfg, logs := config(t, target)
	cfg.IdleTimeout = 100 * time.Millisecond
	f := startForwarder(t, "unix", cfg)

	c := f.dial(t)
	roundTrip(t, c, "ping")
	assert.Empty(t, readEnd(t, c), "an idle connection is closed")
	closed := logs.wait(t, "kms connection closed", 1)[0]
	assert.Equal(t, "idle", closed["reason"])
	assert.Equal(t, "4", closed["bytes_up"])
	assert.Equal(t, "4", closed["bytes_down"])
	select {
	case <-serverSaw:
	case <-time.After(10 * time.Second):
		t.Fatal("the target's side was not closed")
	}
}

// TestIdleOneWay checks that traffic in one direction keeps a connection
// alive although the other is silent for longer than IdleTimeout.
func TestIdleOneWay(t *testing.T) {
	checkLeaks(t)
	// 2.5 idle periods in all, a byte every idle/20: a stall of the
	// machine shorter than 475 ms cannot look like an idle connection.
	const idle, chunks = 500 * time.Millisecond, 50
	target := tcpServer(t, func(c net.Conn) {
		for range chunks {
			if _, err := c.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(idle / 20)
		}
	})
	cfg, logs := config(t, target)
	cfg.IdleTimeout = idle
	f := startForwarder(t, "tcp", cfg)

	c := f.dial(t)
	start := time.Now()
	got := readEnd(t, c)
	require.Greater(t, time.Since(start), 2*idle, "the test did not run past the idle timeout")
	assert.Equal(t, bytes.Repeat([]byte{'x'}, chunks), got, "the silent client direction did not cut the stream")
	assert.Empty(t, logs.find("kms connection closed"), "the client's direction is still open")
	closeWrite(t, c)
	closed := logs.wait(t, "kms connection closed", 1)[0]
	assert.Equal(t, "eof", closed["reason"])
}

func TestShutdownClosesConnections(t *testing.T) {
	checkLeaks(t)
	cfg, logs := config(t, tcpServer(t, echo))
	f := startForwarder(t, "unix", cfg)
	conns := []net.Conn{f.dial(t), f.dial(t), f.dial(t)}
	for i, c := range conns {
		roundTrip(t, c, "conn "+strconv.Itoa(i))
	}
	f.stop(t)
	for _, c := range conns {
		assert.Empty(t, readEnd(t, c))
	}
	for _, rec := range logs.wait(t, "kms connection closed", 3) {
		assert.Equal(t, "shutdown", rec["reason"])
	}
	_, err := transport.Dial(context.Background(), f.addr)
	require.Error(t, err, "the listener is closed")
}

func TestDialFailure(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		checkLeaks(t)
		cfg, logs := config(t, "kms.example.com:443")
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if network != "tcp" || addr != "kms.example.com:443" {
				return nil, fmt.Errorf("unexpected dial %s %s", network, addr)
			}
			return nil, errors.New("connection refused")
		}
		f := startForwarder(t, "unix", cfg)
		assert.Empty(t, readEnd(t, f.dial(t)))
		failed := logs.wait(t, "kms connection dial failed", 1)[0]
		assert.Equal(t, "connection refused", failed["error"])
		assert.Empty(t, logs.find("kms connection open"))
	})
	t.Run("timeout", func(t *testing.T) {
		checkLeaks(t)
		cfg, logs := config(t, "kms.example.com:443")
		cfg.DialTimeout = 50 * time.Millisecond
		deadlines := make(chan time.Duration, 1)
		cfg.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			dl, _ := ctx.Deadline()
			deadlines <- time.Until(dl)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		f := startForwarder(t, "unix", cfg)
		assert.Empty(t, readEnd(t, f.dial(t)))
		left := <-deadlines
		assert.True(t, left > 0 && left <= 50*time.Millisecond, "dial deadline %v", left)
		failed := logs.wait(t, "kms connection dial failed", 1)[0]
		assert.Equal(t, context.DeadlineExceeded.Error(), failed["error"])
	})
}

func TestRun(t *testing.T) {
	checkLeaks(t)
	target := tcpServer(t, echo)
	log, logs := newLogger(t)
	sock := socketPath(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- kmsforward.Run(ctx, kmsforward.Config{
			Listen: "unix://" + sock, Target: target, Allow: []string{target}, Logger: log,
		})
	}()
	logs.wait(t, "kms forwarder listening", 1)
	c, err := transport.Dial(context.Background(), "unix://"+sock)
	require.NoError(t, err)
	defer c.Close()
	roundTrip(t, c, "through Run")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	assert.Empty(t, readEnd(t, c))
	assert.NoFileExists(t, sock, "the socket file is removed")
}

func TestRunErrors(t *testing.T) {
	cfg := kmsforward.Config{Target: "kms:443", Allow: []string{"kms:443"}}
	require.ErrorContains(t, kmsforward.Run(context.Background(), cfg), "Listen address is required")
	cfg.Listen = "vsock://:8000"
	require.ErrorIs(t, kmsforward.Run(context.Background(), cfg), transport.ErrInvalidAddress)
	cfg.Listen, cfg.MaxConns = "unix:///nonexistent", -1
	require.ErrorContains(t, kmsforward.Run(context.Background(), cfg), "must not be negative")
}
