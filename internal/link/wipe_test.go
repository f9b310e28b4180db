package link_test

import (
	"bytes"
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

var credential = []byte("AKIDEXAMPLE/wJalrXUtnFEMI/K7MDENG")

// The writer's queue and a served request's buffer are reused; both are
// wiped once used, so that a request's secrets do not linger in them.
func TestBuffersWipedAfterUse(t *testing.T) {
	queue, err := link.WrittenQueue([]byte("hdr"), credential)
	require.NoError(t, err)
	require.False(t, bytes.Contains(queue, credential), "the written queue still holds the request")

	mem, err := link.ReleasedRequest(credential)
	require.NoError(t, err)
	require.False(t, bytes.Contains(mem, credential), "a served request's buffer still holds it")
}

// A client's request frames are wiped before their buffers go back to the
// pool: after Call and CallRaw, including a request that outgrows the
// pooled buffer, and after an encoding that failed half-way.
func TestClientFramesWiped(t *testing.T) {
	released := link.WatchFrameBuffers(t)
	// The handler answers nothing, so that no response bytes (which share
	// the buffer pool in this one process) put the credential back.
	var carried atomic.Int64
	srv := startServer(t, "", link.ServerConfig{Handler: func(_ context.Context, _ uint16, req, resp []byte) ([]byte, error) {
		if bytes.Contains(req, credential) {
			carried.Add(1)
		}
		return resp[:0], nil
	}})
	c := newClient(t, srv.addr, link.ClientConfig{})
	ctx := context.Background()

	var got wrapperspb.StringValue
	require.NoError(t, c.Call(ctx, methodEcho, wrapperspb.String(string(credential)), &got))
	big := append(bytes.Repeat([]byte{'x'}, 64<<10), credential...)
	require.NoError(t, c.CallRaw(ctx, methodEcho, big, func([]byte) error { return nil }))
	require.EqualValues(t, 2, carried.Load(), "both requests must have carried the credential")

	// Invalid UTF-8 in a string field fails the encoding after the field
	// was written: into the pooled buffer, or, for a long request, into a
	// larger one the encoder grew.
	err := c.Call(ctx, methodEcho, wrapperspb.String(string(credential)+"\xff"), &got)
	require.Equal(t, codes.Internal, status.Code(err), "%v", err)
	long := strings.Repeat("x", 4096) + string(credential) + "\xff"
	before := len(released())
	err = c.Call(ctx, methodEcho, wrapperspb.String(long), &got)
	require.Equal(t, codes.Internal, status.Code(err), "%v", err)
	grown := false
	for _, b := range released()[before:] {
		grown = grown || cap(b) > len(long)
	}
	require.True(t, grown, "the buffer the failed encoding grew must be released too")

	bufs := released()
	require.GreaterOrEqual(t, len(bufs), 5, "every call must release its frame through releaseFrame")
	for i, b := range bufs {
		require.False(t, bytes.Contains(b, credential), "released frame buffer %d still holds the request", i)
	}
}
