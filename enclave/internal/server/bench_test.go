package server_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// BenchmarkHandleSign is one secp256k1 digest Sign through the enclave's
// request handler (decode, keyring, signature, encode), without the link.
// Compare with BenchmarkSignDigestSecp256k1 in enclave/internal/sign, the
// signature alone.
func BenchmarkHandleSign(b *testing.B) {
	s, _ := newServer(b)
	k := createKey(b, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	req, err := proto.Marshal(signReq(k.GetKeyId(), make([]byte, 32), nil))
	require.NoError(b, err)
	ctx := context.Background()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Handle(ctx, uint16(enclavev1.Method_METHOD_SIGN), req, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandleSignConcurrent is Sign through the handler from 32
// goroutines per P, as the link runs requests under load, with and without
// the batching of concurrent secp256k1 signatures: a raw digest and an
// EIP-1559 transaction. cpu-ns/op is the process's CPU time per call
// (getrusage), the figure batching lowers.
func BenchmarkHandleSignConcurrent(b *testing.B) {
	tx, err := proto.Marshal(chainReq("", fieldsTx(eip1559Fields)))
	require.NoError(b, err)
	for _, payload := range []string{"digest", "eth_transaction"} {
		for _, off := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/NoBatching=%v", payload, off), func(b *testing.B) {
				s, _ := newServerWith(b, func(c *server.Config) { c.NoBatching = off })
				k := createKey(b, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
				var r enclavev1.SignRequest
				if payload == "digest" {
					r.Request = signReq(k.GetKeyId(), make([]byte, 32), nil).GetRequest()
				} else {
					require.NoError(b, proto.Unmarshal(tx, &r))
					r.Request.KeyId = k.GetKeyId()
				}
				req, err := proto.Marshal(&r)
				require.NoError(b, err)
				b.SetParallelism(32)
				var before, after syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
				b.RunParallel(func(pb *testing.PB) {
					buf := make([]byte, 0, 512)
					for pb.Next() {
						if _, err := s.Handle(context.Background(), uint16(enclavev1.Method_METHOD_SIGN), req, buf[:0]); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
				cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
				b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
