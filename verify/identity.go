package verify

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// IdentityVersion is the EnclaveIdentity format version this package
// understands.
const IdentityVersion = 1

var deterministic = proto.MarshalOptions{Deterministic: true}

// BindIdentity decodes the enclave identity that a nitrosigner enclave
// binds into its documents and checks the binding. It requires that:
//
//   - user_data is present and is the deterministic protobuf encoding of a
//     nitrosigner.v1.EnclaveIdentity (no other encoding of the same value
//     is accepted);
//   - the identity has version IdentityVersion, a 32-byte Ed25519
//     identity_public_key and a 32-byte kms_public_key_sha256;
//   - the document's public_key is present and its SHA-256 equals
//     kms_public_key_sha256, so the key KMS encrypts to is the identity's.
//
// On success it sets r.Identity and returns it; on failure it returns an
// error wrapping [ErrIdentity] and leaves r unchanged. Documents from other
// software (including every real AWS document in the project's test data)
// fail this step: binding is specific to nitrosigner and only meaningful on
// a Result that [Verify] returned.
func (r *Result) BindIdentity() (*signerv1.EnclaveIdentity, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: no verified document", ErrIdentity)
	}
	if r.UserData == nil {
		return nil, fmt.Errorf("%w: document has no user_data", ErrIdentity)
	}
	id := new(signerv1.EnclaveIdentity)
	if err := proto.Unmarshal(r.UserData, id); err != nil {
		return nil, fmt.Errorf("%w: user_data is not an EnclaveIdentity: %v", ErrIdentity, err)
	}
	canonical, err := deterministic.Marshal(id)
	if err != nil || !bytes.Equal(canonical, r.UserData) {
		return nil, fmt.Errorf("%w: user_data is not the deterministic encoding of an EnclaveIdentity", ErrIdentity)
	}
	switch {
	case id.GetVersion() != IdentityVersion:
		return nil, fmt.Errorf("%w: identity version %d, want %d", ErrIdentity, id.GetVersion(), IdentityVersion)
	case len(id.GetIdentityPublicKey()) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: identity_public_key is %d bytes, want %d", ErrIdentity, len(id.GetIdentityPublicKey()), ed25519.PublicKeySize)
	case len(id.GetKmsPublicKeySha256()) != sha256.Size:
		return nil, fmt.Errorf("%w: kms_public_key_sha256 is %d bytes, want %d", ErrIdentity, len(id.GetKmsPublicKeySha256()), sha256.Size)
	case r.PublicKey == nil:
		return nil, fmt.Errorf("%w: document has no public_key", ErrIdentity)
	}
	sum := sha256.Sum256(r.PublicKey)
	if subtle.ConstantTimeCompare(sum[:], id.GetKmsPublicKeySha256()) != 1 {
		return nil, fmt.Errorf("%w: document public_key does not match the identity's kms_public_key_sha256", ErrIdentity)
	}
	r.Identity = id
	return id, nil
}
