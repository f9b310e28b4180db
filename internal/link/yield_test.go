//go:build unix

package link_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// TestYieldCPU: with ServerConfig.YieldCPU a worker yields once after
// each request it served, and the answers are unchanged; without it, it
// never yields; a request handled on the reader (Inline) does not yield.
func TestYieldCPU(t *testing.T) {
	const worker, inline = 1, 2
	for _, on := range []bool{true, false} {
		yields := link.CountYields(t)
		srv := startServer(t, "", link.ServerConfig{
			Handler: func(_ context.Context, _ uint16, req, resp []byte) ([]byte, error) {
				return append(resp, req...), nil
			},
			Inline:   func(m uint16, _ int) bool { return m == inline },
			YieldCPU: on,
		})
		c := newClient(t, srv.addr, link.ClientConfig{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		// One inline call alone on the connection: handled on the reader.
		var resp wrapperspb.BytesValue
		require.NoError(t, c.Call(ctx, inline, wrapperspb.Bytes([]byte("i")), &resp))
		require.Equal(t, []byte("i"), resp.GetValue())
		require.Zero(t, yields.Load(), "an inline request does not yield")

		const calls = 200
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				var resp wrapperspb.BytesValue
				want := []byte{byte(i)}
				if err := c.Call(ctx, worker, wrapperspb.Bytes(want), &resp); err != nil {
					t.Error(err)
					return
				}
				if string(resp.GetValue()) != string(want) {
					t.Errorf("call %d answered %x", i, resp.GetValue())
				}
			})
		}
		wg.Wait()
		if on {
			// A worker yields after it handed its answer to the writer,
			// so the last yields may follow the last answers.
			require.Eventually(t, func() bool { return yields.Load() >= calls }, 5*time.Second, time.Millisecond)
			require.Equal(t, int64(calls), yields.Load(), "one yield per request served by a worker")
		} else {
			require.Zero(t, yields.Load())
		}
	}
}
