package link

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var secret = []byte("AKIDEXAMPLE/wJalrXUtnFEMI/K7MDENG")

// The writer's queue and a served request's buffer are reused; both are
// wiped once used, so that a request's secrets do not linger in them.
func TestBuffersWipedAfterUse(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b) //nolint:errcheck // ends when the pipe closes
	w := newWriter(a, 1<<20, time.Second, "", func(f func()) { go f() }, func(error) {})
	defer w.stop(nil)
	require.NoError(t, w.send([]byte("hdr"), secret, false, true))
	w.mu.Lock()
	queue := w.spare[:cap(w.spare)]
	w.mu.Unlock()
	require.False(t, bytes.Contains(queue, secret), "the written queue still holds the request")

	s, err := newServer(ServerConfig{Handler: func(context.Context, uint16, []byte, []byte) ([]byte, error) { return nil, nil }})
	require.NoError(t, err)
	require.NoError(t, s.mem.Acquire(context.Background(), int64(len(secret))))
	req := getBuf()
	*req = append((*req)[:0], secret...)
	s.releaseReq(req)
	require.False(t, bytes.Contains((*req)[:cap(*req)], secret), "a served request's buffer still holds it")
}
