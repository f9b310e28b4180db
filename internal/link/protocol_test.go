package link_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// The frame encoders below follow the specification in doc.go
// independently of the package's own code.

func reqFrame(kind byte, method uint16, id uint64, timeoutMicros uint32, payload []byte) []byte {
	return reqFrameID(kind, method, id, timeoutMicros, "", payload)
}

// reqFrameID is reqFrame with a request id.
func reqFrameID(kind byte, method uint16, id uint64, timeoutMicros uint32, rid string, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(16+len(rid)+len(payload)))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, method)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint32(b, timeoutMicros)
	b = append(b, byte(len(rid)))
	b = append(b, rid...)
	return append(b, payload...)
}

func respFrame(kind byte, code uint16, id uint64, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(11+len(payload)))
	b = append(b, kind)
	b = binary.BigEndian.AppendUint16(b, code)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, payload...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestWireFormat(t *testing.T) {
	// A hand-built request gets a hand-checked response.
	srv := startServer(t, "", link.ServerConfig{})
	conn, err := net.Dial("unix", srv.addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))

	_, err = conn.Write(concat([]byte(link.Magic),
		reqFrame(1, methodEcho, 0x0102030405060708, 1_000_000, []byte("hello")),
		reqFrame(1, methodNotFound, 9, 0, nil)))
	require.NoError(t, err)

	want := concat([]byte(link.Magic),
		respFrame(2, 0, 0x0102030405060708, []byte("hello")),
		respFrame(2, uint16(codes.NotFound), 9, []byte("key not found")))
	got := make([]byte, len(want))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	// Responses may come in any order.
	if !bytes.Equal(got, want) {
		swapped := concat([]byte(link.Magic),
			respFrame(2, uint16(codes.NotFound), 9, []byte("key not found")),
			respFrame(2, 0, 0x0102030405060708, []byte("hello")))
		assert.Equal(t, swapped, got)
	}
}

func TestServerRejectsGarbage(t *testing.T) {
	srv := startServer(t, "", link.ServerConfig{MaxFrame: 4096})
	valid := reqFrame(1, methodEcho, 1, 0, []byte("x"))

	tests := []struct {
		name       string
		stream     []byte
		closeWrite bool // end the stream; otherwise the server must close on its own
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: enclave\r\n\r\n"), false},
		{"other version", concat([]byte("NSL1"), valid), false},
		{"short length", concat([]byte(link.Magic), []byte{0, 0, 0, 3}, make([]byte, 20)), false},
		{"huge length", concat([]byte(link.Magic), []byte{0xff, 0xff, 0xff, 0xff}, make([]byte, 20)), false},
		{"over MaxFrame", concat([]byte(link.Magic), reqFrame(1, methodEcho, 1, 0, make([]byte, 5000))), false},
		{"response kind", concat([]byte(link.Magic), respFrame(2, 0, 1, make([]byte, 8))), false},
		{"unknown kind", concat([]byte(link.Magic), reqFrame(7, methodEcho, 1, 0, nil)), false},
		{"valid then garbage", concat([]byte(link.Magic), valid, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}), false},
		{"truncated header", concat([]byte(link.Magic), valid[:9]), true},
		{"truncated payload", concat([]byte(link.Magic), valid[:len(valid)-1]), true},
		{"truncated preamble", []byte("NS"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("unix", srv.addr)
			require.NoError(t, err)
			defer conn.Close()
			require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
			_, err = conn.Write(tt.stream)
			require.NoError(t, err)
			if tt.closeWrite {
				require.NoError(t, conn.(*net.UnixConn).CloseWrite())
			}
			got, err := io.ReadAll(conn)
			require.NoError(t, err, "server did not close the connection")
			assert.True(t, bytes.HasPrefix(got, []byte(link.Magic)), "got %q", got)
		})
	}

	// The server survives and serves well-behaved clients.
	c := newClient(t, srv.addr, link.ClientConfig{})
	require.NoError(t, c.Call(t.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{}))
}

// rawServer accepts connections on a fresh unix socket; on each, it reads
// the preamble and one request, writes what reply returns for the request's
// id and payload, and then hangs up if hangUp is set or waits for the client
// to.
func rawServer(t *testing.T, reply func(id uint64, payload []byte) []byte, hangUp bool) string {
	t.Helper()
	l, err := net.Listen("unix", socketPath(t))
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				head := make([]byte, 4+4+16)
				if _, err := io.ReadFull(conn, head); err != nil {
					return
				}
				payload := make([]byte, binary.BigEndian.Uint32(head[4:])-16)
				if _, err := io.ReadFull(conn, payload); err != nil {
					return
				}
				payload = payload[head[23]:]                                   // after the request id
				conn.Write(reply(binary.BigEndian.Uint64(head[11:]), payload)) //nolint:errcheck // the test checks the client
				if !hangUp {
					io.Copy(io.Discard, conn) //nolint:errcheck // wait for the client to hang up
				}
			})
		}
	})
	return l.Addr().String()
}

func TestClientRejectsBadServer(t *testing.T) {
	magic := []byte(link.Magic)
	tests := []struct {
		name     string
		reply    func(id uint64, payload []byte) []byte
		wantCode codes.Code
		wantMsg  string
		hangUp   bool
	}{
		{
			name: "unknown id dropped",
			reply: func(id uint64, p []byte) []byte {
				return concat(magic, respFrame(2, 0, id+1000, []byte("junk")), respFrame(2, 0, id, p))
			},
			wantCode: codes.OK,
		},
		{
			name:     "bad preamble",
			reply:    func(uint64, []byte) []byte { return []byte("HTTP/1.1 400 Bad Request\r\n\r\n") },
			wantCode: codes.Unavailable,
			wantMsg:  "enclave unavailable",
		},
		{
			name:     "request kind",
			reply:    func(id uint64, p []byte) []byte { return concat(magic, reqFrame(1, 1, id, 0, p)) },
			wantCode: codes.Unavailable,
		},
		{
			name:     "oversize",
			reply:    func(id uint64, p []byte) []byte { return concat(magic, []byte{0x7f, 0, 0, 0}) },
			wantCode: codes.Unavailable,
		},
		{
			name:     "undecodable response",
			reply:    func(id uint64, p []byte) []byte { return concat(magic, respFrame(2, 0, id, []byte{0xff})) },
			wantCode: codes.Internal,
		},
		{
			name: "invalid utf-8 message",
			reply: func(id uint64, p []byte) []byte {
				return concat(magic, respFrame(2, uint16(codes.NotFound), id, []byte("no\xffkey")))
			},
			wantCode: codes.NotFound,
			wantMsg:  "no\uFFFDkey",
		},
		{
			name:     "hang up",
			reply:    func(uint64, []byte) []byte { return magic },
			hangUp:   true,
			wantCode: codes.Unavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := rawServer(t, tt.reply, tt.hangUp)
			c := newClient(t, addr, link.ClientConfig{})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var resp wrapperspb.StringValue
			err := c.Call(ctx, methodEcho, wrapperspb.String("hi"), &resp)
			assert.Equal(t, tt.wantCode, status.Code(err), "%v", err)
			if tt.wantMsg != "" {
				assert.Equal(t, tt.wantMsg, status.Convert(err).Message())
			}
			assert.True(t, utf8.ValidString(status.Convert(err).Message()))
			if tt.wantCode == codes.OK {
				assert.Equal(t, "hi", resp.GetValue())
			}
		})
	}
}

// pipeListener hands out one in-memory connection that reads stream and
// discards writes, then blocks until closed.
type pipeListener struct {
	conn      *streamConn
	accepted  bool
	closeOnce sync.Once
	closed    chan struct{}
}

func newPipeListener(stream []byte) *pipeListener {
	return &pipeListener{
		conn:   &streamConn{r: bytes.NewReader(stream), closed: make(chan struct{})},
		closed: make(chan struct{}),
	}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	if !l.accepted {
		l.accepted = true
		return l.conn, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// streamConn is a net.Conn that reads a fixed stream.
type streamConn struct {
	mu        sync.Mutex
	r         *bytes.Reader
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *streamConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.r.Read(p)
}

func (c *streamConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
		return len(p), nil
	}
}

func (c *streamConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *streamConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func FuzzServerFrames(f *testing.F) {
	magic := []byte(link.Magic)
	f.Add([]byte{})
	f.Add(magic)
	f.Add(concat(magic, reqFrame(1, methodEcho, 1, 0, []byte("hello"))))
	f.Add(concat(magic, reqFrameID(1, methodEcho, 1, 1000, "req-1", []byte("hello")), reqFrameID(1, methodRequestID, 2, 0, "x", nil)))
	f.Add(concat(magic,
		reqFrame(1, methodEcho, 1, 1000, []byte("a")),
		reqFrame(1, methodNotFound, 2, 0, nil),
		reqFrame(1, methodPlain, 3, 0, nil),
		reqFrame(1, methodWrapped, 4, 0, nil),
		reqFrame(1, methodBlock, 5, 1, nil),
		reqFrame(1, methodDeadline, 6, 500, nil),
		reqFrame(1, methodHuge, 7, 0, nil),
		reqFrame(1, 999, 8, 0, nil)))
	f.Add(concat(magic, reqFrame(1, methodBlock, 1, 0, nil)))
	f.Add(concat(magic, []byte{0xff, 0xff, 0xff, 0xff}))
	f.Add(concat(magic, reqFrame(1, methodEcho, 1, 0, make([]byte, 5000))))
	f.Add(concat(magic, respFrame(2, 0, 1, nil)))
	f.Add(concat(magic, reqFrame(1, methodEcho, 1, 0, []byte("hello"))[:10]))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))

	f.Fuzz(func(t *testing.T, stream []byte) {
		l := newPipeListener(stream)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			done <- link.Serve(ctx, l, link.ServerConfig{
				Handler:       testHandler(nil),
				MaxFrame:      4096,
				MaxConcurrent: 4,
			})
		}()
		// The server must close the connection once the stream ends
		// or turns bad.
		select {
		case <-l.conn.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("server did not close the connection")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
	})
}

// TestClientSilentServer: a peer that accepts but never sends its preamble
// is given up after DialTimeout, so calls fail with Unavailable instead of
// waiting out their deadlines on a dead connection.
func TestClientSilentServer(t *testing.T) {
	path := socketPath(t)
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := newClient(t, path, link.ClientConfig{DialTimeout: 100 * time.Millisecond})
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		err := c.Call(ctx, methodEcho, wrapperspb.String("hi"), &wrapperspb.StringValue{})
		return status.Code(err) == codes.Unavailable
	}, 5*time.Second, 10*time.Millisecond)
}
