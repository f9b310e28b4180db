package link_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// TestRequestIDCarried: the request id of the caller's context reaches the
// handler's context, with the call's bytes (CallRaw) or a message (Call);
// an id the link does not carry is not sent.
func TestRequestIDCarried(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{})
	c := newClient(t, srv.addr, link.ClientConfig{})
	tests := []struct{ name, id, want string }{
		{"id", "req-42", "req-42"},
		{"longest", strings.Repeat("a", link.MaxRequestIDLen), strings.Repeat("a", link.MaxRequestIDLen)},
		{"none", "", ""},
		{"too long", strings.Repeat("a", link.MaxRequestIDLen+1), ""},
		{"space", "req 42", ""},
		{"newline", "req\n42", ""},
		{"non-ASCII", "réq", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := link.WithRequestID(t.Context(), tt.id)
			var raw wrapperspb.StringValue
			require.NoError(t, c.CallRaw(ctx, methodRequestID, nil, func(b []byte) error {
				return proto.Unmarshal(b, &raw)
			}))
			assert.Equal(t, tt.want, raw.GetValue(), "CallRaw")

			var resp wrapperspb.StringValue
			require.NoError(t, c.Call(ctx, methodRequestID, wrapperspb.String("x"), &resp))
			assert.Equal(t, tt.want, resp.GetValue(), "Call")
		})
	}
}

// TestRequestIDOnTheWire: a hand-built frame's request id reaches the
// handler, with a deadline or without one, and the payload after it is
// intact; a frame whose id is too long, runs past the frame or is not
// printable ASCII closes the connection.
func TestRequestIDOnTheWire(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{})
	exchange := func(t *testing.T, stream []byte) []byte {
		t.Helper()
		conn, err := net.Dial("unix", srv.addr)
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = conn.Write(stream)
		require.NoError(t, err)
		require.NoError(t, conn.(*net.UnixConn).CloseWrite())
		got, err := io.ReadAll(conn)
		require.NoError(t, err)
		return got
	}
	magic := []byte(link.Magic)

	for _, timeout := range []uint32{0, 1_000_000} {
		conn, err := net.Dial("unix", srv.addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = conn.Write(concat(magic,
			reqFrameID(1, methodRequestID, 7, timeout, "abc-1", nil),
			reqFrameID(1, methodEcho, 8, timeout, "abc-2", []byte("payload"))))
		require.NoError(t, err)
		id, err := proto.Marshal(wrapperspb.String("abc-1"))
		require.NoError(t, err)
		want := [][]byte{respFrame(2, 0, 7, id), respFrame(2, 0, 8, []byte("payload"))}
		got := make([]byte, len(magic)+len(want[0])+len(want[1]))
		_, err = io.ReadFull(conn, got)
		require.NoError(t, err)
		for _, w := range want {
			assert.True(t, bytes.Contains(got, w), "timeout %d: %q lacks %q", timeout, got, w)
		}
	}

	bad := []struct {
		name  string
		frame []byte
	}{
		{"too long", reqFrameID(1, methodEcho, 1, 0, strings.Repeat("a", link.MaxRequestIDLen+1), nil)},
		{"space", reqFrameID(1, methodEcho, 1, 0, "a b", nil)},
		{"control", reqFrameID(1, methodEcho, 1, 0, "a\x00b", nil)},
		{"past the frame", func() []byte {
			f := reqFrameID(1, methodEcho, 1, 0, "", nil)
			f[len(f)-1] = 10 // an id length with no id bytes in the frame
			return append(f, "0123456789"...)
		}()},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(t, concat(magic, tt.frame, reqFrame(1, methodEcho, 2, 0, []byte("after"))))
			assert.Equal(t, magic, got, "the server must close without answering")
		})
	}
}

// TestLogRequestIDs: lines logged with a handler's context carry its
// request id; lines without one carry none.
func TestLogRequestIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(link.LogRequestIDs(slog.NewTextHandler(&buf, nil))).With("component", "x")
	log.InfoContext(link.WithRequestID(context.Background(), "req-7"), "with")
	log.InfoContext(context.Background(), "without")
	log.InfoContext(link.WithRequestID(context.Background(), "bad id"), "invalid")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], "component=x request_id=req-7")
	assert.NotContains(t, lines[1], "request_id")
	assert.NotContains(t, lines[2], "request_id")
}

// TestLogRequestIDsOnce: wrapping twice adds the id once.
func TestLogRequestIDsOnce(t *testing.T) {
	var buf bytes.Buffer
	h := link.LogRequestIDs(link.LogRequestIDs(slog.NewTextHandler(&buf, nil)))
	slog.New(h).InfoContext(link.WithRequestID(context.Background(), "req-8"), "twice")
	assert.Equal(t, 1, strings.Count(buf.String(), "request_id="), buf.String())
}

// TestPreambleNamesOtherVersion: the server's log names a peer of another
// release as such; a stranger's bytes are not echoed.
func TestPreambleNamesOtherVersion(t *testing.T) {
	for _, tt := range []struct{ preamble, want, not string }{
		{"NSL1", "(it speaks NSL1): the parent and the enclave image are from different releases", ""},
		{"GET ", "bad preamble: peer does not speak " + link.Magic, "GET"},
	} {
		logs := make(chan string, 16)
		srv := startServer(t, "", link.ServerConfig{
			Logger: slog.New(notifyHandler{Handler: testLogger(t).Handler(), ch: logs}),
		})
		conn, err := net.Dial("unix", srv.addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		_, err = conn.Write([]byte(tt.preamble + "/ HTTP/1.1\r\n"))
		require.NoError(t, err)
		var line string
		for line == "" {
			select {
			case l := <-logs:
				if strings.Contains(l, "closing connection") {
					line = l
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no log line about the closed connection", tt.preamble)
			}
		}
		assert.Contains(t, line, tt.want)
		if tt.not != "" {
			assert.NotContains(t, line, tt.not)
		}
	}
}
