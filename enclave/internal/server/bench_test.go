package server_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

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
