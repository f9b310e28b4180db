package verify

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Client is the part of signerv1.SignerServiceClient that [Fetch] uses;
// a SignerServiceClient satisfies it.
type Client interface {
	GetAttestation(ctx context.Context, in *signerv1.GetAttestationRequest, opts ...grpc.CallOption) (*signerv1.GetAttestationResponse, error)
}

var _ Client = signerv1.SignerServiceClient(nil)

// Fetch asks the server for an attestation document over a nonce (a fresh
// [NewNonce] unless opts.Nonce is set) and verifies it completely:
// [Verify] with opts and that nonce, then [Result.BindIdentity], then that
// the identity the server sent alongside the document equals the bound one.
// The Result's Identity is set.
//
// A failed request returns an error wrapping [ErrRequest] and the gRPC
// error (so status.Code works on it); a failed check returns an error
// wrapping the sentinel of [Verify] or [ErrIdentity]. In both cases the
// Result is nil.
func Fetch(ctx context.Context, client Client, opts Options) (*Result, error) {
	if len(opts.PCRs) == 0 && !opts.AnyImage {
		return nil, ErrNoPCRs
	}
	nonce := opts.Nonce
	if nonce == nil {
		var err error
		if nonce, err = NewNonce(opts.Rand); err != nil {
			return nil, err
		}
	}
	if len(nonce) == 0 || len(nonce) > MaxNonceSize {
		return nil, fmt.Errorf("verify: nonce is %d bytes, want 1..%d", len(nonce), MaxNonceSize)
	}
	resp, err := client.GetAttestation(ctx, &signerv1.GetAttestationRequest{Nonce: nonce})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	opts.Nonce = nonce
	res, err := Verify(resp.GetDocument(), opts)
	if err != nil {
		return nil, err
	}
	id, err := res.BindIdentity()
	if err != nil {
		return nil, err
	}
	switch claimed := resp.GetIdentity(); {
	case claimed == nil:
		return nil, fmt.Errorf("%w: server sent no enclave identity", ErrIdentity)
	case !proto.Equal(claimed, id):
		return nil, fmt.Errorf("%w: identity in the response differs from the one in the document's user_data", ErrIdentity)
	}
	return res, nil
}
