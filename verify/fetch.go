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
	if err := opts.prepareRequest(); err != nil {
		return nil, err
	}
	resp, err := client.GetAttestation(ctx, &signerv1.GetAttestationRequest{Nonce: opts.Nonce})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
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

// prepareRequest checks, before any request, that opts pin the image (or
// say AnyImage), and sets Nonce to a fresh [NewNonce] unless given; the
// nonce must be 1..MaxNonceSize bytes.
func (o *Options) prepareRequest() error {
	if len(o.PCRs) == 0 && !o.AnyImage {
		return ErrNoPCRs
	}
	if o.Nonce == nil {
		var err error
		if o.Nonce, err = NewNonce(o.Rand); err != nil {
			return err
		}
	}
	if len(o.Nonce) == 0 || len(o.Nonce) > MaxNonceSize {
		return fmt.Errorf("verify: nonce is %d bytes, want 1..%d", len(o.Nonce), MaxNonceSize)
	}
	return nil
}
