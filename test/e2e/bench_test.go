package e2e_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// BenchmarkSignEndToEnd signs through client → parent → link → enclave in
// one process (all three share the CPU). `make bench` measures the same path
// with separate processes; this one is for profiling (-cpuprofile).
func BenchmarkSignEndToEnd(b *testing.B) {
	s := startStack(b)
	k, err := s.client.CreateKey(context.Background(), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
	require.NoError(b, err)
	id := k.GetKey().GetKeyId()
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := sha256.Sum256([]byte("x"))
		for pb.Next() {
			d[0]++
			if _, err := s.client.Sign(context.Background(), &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Digest{Digest: d[:]}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGRPCHopOnly is the cost of the client → parent gRPC hop alone: a
// health check, answered by the parent without the enclave.
func BenchmarkGRPCHopOnly(b *testing.B) {
	s := startStack(b)
	h := healthpb.NewHealthClient(s.conn)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
