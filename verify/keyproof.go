package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// ErrKeyProof means a key's proof does not show that the enclave vouches for
// the key as described: the proof is missing or malformed, its signature
// does not verify under the enclave's identity key, or its statement
// differs from the key's description.
var ErrKeyProof = errors.New("verify: key proof")

// KeyProof checks that proof is a statement about key signed by the
// identity key of identity, an EnclaveIdentity the caller has already
// verified ([Result.BindIdentity] or [Fetch]). It requires:
//
//   - proof.identity_public_key is identity's identity_public_key;
//   - the Ed25519 signature verifies over [signerv1.KeyProofMessage] of
//     the statement;
//   - the statement is the deterministic encoding of a KeyStatement of
//     version [signerv1.KeyStatementVersion];
//   - its key_id, algorithm, public_key and addresses equal key's.
//
// On success it returns the statement. On failure the error wraps
// [ErrKeyProof]. The proof's attestation_document is not looked at; see
// [AttestedKeyProof].
func KeyProof(key *signerv1.Key, proof *signerv1.KeyProof, identity *signerv1.EnclaveIdentity) (*signerv1.KeyStatement, error) {
	idKey := identity.GetIdentityPublicKey()
	switch {
	case len(idKey) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: no verified enclave identity to check against", ErrKeyProof)
	case proof == nil:
		return nil, fmt.Errorf("%w: the answer carries no proof (a server older than key proofs, or a parent that dropped it)", ErrKeyProof)
	case subtle.ConstantTimeCompare(proof.GetIdentityPublicKey(), idKey) != 1:
		return nil, fmt.Errorf("%w: signed by another identity key than the verified enclave's (another enclave, or a restarted one)", ErrKeyProof)
	case !ed25519.Verify(ed25519.PublicKey(idKey), signerv1.KeyProofMessage(proof.GetStatement()), proof.GetSignature()):
		return nil, fmt.Errorf("%w: signature does not verify under the enclave's identity key", ErrKeyProof)
	}
	st := new(signerv1.KeyStatement)
	if err := proto.Unmarshal(proof.GetStatement(), st); err != nil {
		return nil, fmt.Errorf("%w: statement is not a KeyStatement: %v", ErrKeyProof, err)
	}
	canonical, err := deterministic.Marshal(st)
	switch {
	case err != nil || !bytes.Equal(canonical, proof.GetStatement()):
		return nil, fmt.Errorf("%w: statement is not the deterministic encoding of a KeyStatement", ErrKeyProof)
	case len(st.ProtoReflect().GetUnknown()) > 0 || len(st.GetAddresses().ProtoReflect().GetUnknown()) > 0:
		return nil, fmt.Errorf("%w: statement carries fields this client does not know; update the client", ErrKeyProof)
	case st.GetVersion() != signerv1.KeyStatementVersion:
		return nil, fmt.Errorf("%w: statement version %d, want %d", ErrKeyProof, st.GetVersion(), signerv1.KeyStatementVersion)
	case key == nil:
		return nil, fmt.Errorf("%w: no key to compare with", ErrKeyProof)
	case st.GetKeyId() != key.GetKeyId():
		return nil, fmt.Errorf("%w: statement is about key %q, not %q", ErrKeyProof, st.GetKeyId(), key.GetKeyId())
	case st.GetAlgorithm() != key.GetAlgorithm():
		return nil, fmt.Errorf("%w: key %s: algorithm differs from the enclave's statement", ErrKeyProof, key.GetKeyId())
	case !bytes.Equal(st.GetPublicKey(), key.GetPublicKey()):
		return nil, fmt.Errorf("%w: key %s: public key differs from the enclave's statement", ErrKeyProof, key.GetKeyId())
	case !proto.Equal(st.GetAddresses(), key.GetAddresses()):
		return nil, fmt.Errorf("%w: key %s: addresses differ from the enclave's statement", ErrKeyProof, key.GetKeyId())
	}
	return st, nil
}

// AttestedKeyProof checks a proof that carries its own attestation
// document: [Verify] of the document with opts (opts.Nonce must be the nonce
// the request sent), [Result.BindIdentity], then [KeyProof] against the
// bound identity. It returns the verified document.
func AttestedKeyProof(key *signerv1.Key, proof *signerv1.KeyProof, opts Options) (*Result, error) {
	switch {
	case len(opts.Nonce) == 0:
		return nil, fmt.Errorf("%w: no nonce to check the proof's attestation document against", ErrKeyProof)
	case len(opts.PCRs) == 0 && !opts.AnyImage:
		return nil, ErrNoPCRs
	case len(proof.GetAttestationDocument()) == 0:
		return nil, fmt.Errorf("%w: the proof carries no attestation document", ErrKeyProof)
	}
	res, err := Verify(proof.GetAttestationDocument(), opts)
	if err != nil {
		return nil, err
	}
	id, err := res.BindIdentity()
	if err != nil {
		return nil, err
	}
	if _, err := KeyProof(key, proof, id); err != nil {
		return nil, err
	}
	return res, nil
}

// KeyClient is the part of signerv1.SignerServiceClient that [FetchKey]
// uses; a SignerServiceClient satisfies it.
type KeyClient interface {
	GetKey(ctx context.Context, in *signerv1.GetKeyRequest, opts ...grpc.CallOption) (*signerv1.GetKeyResponse, error)
}

var _ KeyClient = signerv1.SignerServiceClient(nil)

// FetchKey gets key id with a fresh nonce (opts.Nonce if set) and checks the
// answer with [AttestedKeyProof]: the key's public key and addresses are
// then those an enclave with opts' PCRs vouches for, whatever the parent
// that relayed the answer did. A failed request wraps [ErrRequest] and the
// gRPC error.
func FetchKey(ctx context.Context, client KeyClient, id string, opts Options) (*signerv1.Key, *Result, error) {
	if err := opts.prepareRequest(); err != nil {
		return nil, nil, err
	}
	resp, err := client.GetKey(ctx, &signerv1.GetKeyRequest{KeyId: id, AttestationNonce: opts.Nonce})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	res, err := AttestedKeyProof(resp.GetKey(), resp.GetProof(), opts)
	if err != nil {
		return nil, nil, err
	}
	return resp.GetKey(), res, nil
}
