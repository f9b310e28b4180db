//go:build unix

package link_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nitrosigner/nitrosigner/internal/link"
)

// benchPayload is about the size of a signing request.
const benchPayload = 128

// benchClient starts an echo server on a unix socket and returns a
// connected client.
func benchClient(b *testing.B) *link.Client { return benchClientInline(b, false) }

// benchClientInline is benchClient with the echo method handled on the
// connection's reader when alone (ServerConfig.Inline).
func benchClientInline(b *testing.B, inline bool) *link.Client {
	b.Helper()
	cfg := link.ServerConfig{Handler: func(_ context.Context, _ uint16, req, resp []byte) ([]byte, error) {
		return append(resp, req...), nil
	}}
	if inline {
		cfg.Inline = func(m uint16, _ int) bool { return m == methodEcho }
	}
	srv := startServer(b, "", cfg)
	c := newClient(b, srv.addr, link.ClientConfig{})
	// Connect and warm the pools.
	for range 100 {
		if err := c.Call(b.Context(), methodEcho, wrapperspb.Bytes(nil), &wrapperspb.BytesValue{}); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// processCPU returns the CPU time (user and system) used by the process so
// far: both ends of the link run in it.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs f as the timed part of the benchmark and reports the
// process CPU time per call as cpu-ns/op.
func measure(b *testing.B, f func()) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	f()
	cpu = processCPU(b) - cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkCall is one caller's round trip: the latency path.
func BenchmarkCall(b *testing.B) {
	for _, inline := range []bool{false, true} {
		b.Run(map[bool]string{false: "worker", true: "inline"}[inline], func(b *testing.B) {
			c := benchClientInline(b, inline)
			ctx, cancel := context.WithTimeout(b.Context(), time.Hour)
			defer cancel()
			// As the parent's calls: each carries a 16-digit request id.
			ctx = link.WithRequestID(ctx, "0123456789abcdef")
			req := wrapperspb.Bytes(make([]byte, benchPayload))
			var resp wrapperspb.BytesValue
			measure(b, func() {
				for range b.N {
					if err := c.Call(ctx, methodEcho, req, &resp); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkCallParallel(b *testing.B) {
	c := benchClient(b)
	b.SetParallelism(32)
	measure(b, func() {
		b.RunParallel(func(pb *testing.PB) {
			// One context per goroutine, as each proxied RPC has its
			// own: a shared one would make all callers contend for
			// its Done channel.
			ctx, cancel := context.WithTimeout(b.Context(), time.Hour)
			defer cancel()
			// As the parent's calls: each carries a 16-digit request id.
			ctx = link.WithRequestID(ctx, "0123456789abcdef")
			req := wrapperspb.Bytes(make([]byte, benchPayload))
			var resp wrapperspb.BytesValue
			for pb.Next() {
				if err := c.Call(ctx, methodEcho, req, &resp); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
