//go:build !nosim

package verify_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
	"github.com/nitrosigner/nitrosigner/verify"
)

// keyEnclave answers GetKey as an enclave behind a parent: it signs the
// key's statement with its identity key and attests over the nonce.
// tamper plays the parent, which may change anything on the way.
type keyEnclave struct {
	t      *testing.T
	sim    *nsmsim.Simulator
	idKey  ed25519.PrivateKey
	key    *signerv1.Key
	tamper func(nonce []byte, resp *signerv1.GetKeyResponse)
	err    error
}

func newKeyEnclave(t *testing.T, sim *nsmsim.Simulator) *keyEnclave {
	t.Helper()
	_, idKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	return &keyEnclave{t: t, sim: sim, idKey: idKey, key: &signerv1.Key{
		KeyId: "key_0123456789abcdef0123456789abcdef", Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1,
		PublicKey: append([]byte{4}, bytes.Repeat([]byte{0x11}, 64)...), State: signerv1.KeyState_KEY_STATE_ENABLED,
		Addresses: &signerv1.Addresses{Ethereum: "0x1111111111111111111111111111111111111111", BitcoinP2Wpkh: "bc1qenclave"},
	}}
}

func (e *keyEnclave) identity() *signerv1.EnclaveIdentity {
	sum := sha256.Sum256(kmsSPKI)
	return &signerv1.EnclaveIdentity{Version: 1, IdentityPublicKey: e.idKey.Public().(ed25519.PublicKey), KmsPublicKeySha256: sum[:]}
}

// sign makes a proof the way the format is documented in signer.proto,
// written out here rather than taken from the package under test.
func (e *keyEnclave) sign(t testing.TB, key ed25519.PrivateKey, st *signerv1.KeyStatement) *signerv1.KeyProof {
	b := encode(t, st)
	return &signerv1.KeyProof{
		Statement:         b,
		Signature:         ed25519.Sign(key, append([]byte("nitrosigner.v1.KeyStatement\x00"), b...)),
		IdentityPublicKey: key.Public().(ed25519.PublicKey),
	}
}

func statementOf(k *signerv1.Key) *signerv1.KeyStatement {
	return &signerv1.KeyStatement{Version: 1, KeyId: k.GetKeyId(), Algorithm: k.GetAlgorithm(), PublicKey: k.GetPublicKey(), Addresses: k.GetAddresses()}
}

func (e *keyEnclave) GetKey(ctx context.Context, in *signerv1.GetKeyRequest, _ ...grpc.CallOption) (*signerv1.GetKeyResponse, error) {
	if e.err != nil {
		return nil, e.err
	}
	if in.GetKeyId() != e.key.GetKeyId() {
		return nil, status.Error(codes.NotFound, "key not found")
	}
	proof := e.sign(e.t, e.idKey, statementOf(e.key))
	doc, err := e.sim.Attest(ctx, in.GetAttestationNonce(), encodeIdentity(e.identity()), kmsSPKI)
	if err != nil {
		return nil, err
	}
	proof.AttestationDocument = doc
	resp := &signerv1.GetKeyResponse{Key: proto.Clone(e.key).(*signerv1.Key), Proof: proof}
	if e.tamper != nil {
		e.tamper(in.GetAttestationNonce(), resp)
	}
	return resp, nil
}

func TestFetchKey(t *testing.T) {
	sim := newSim(t, false)
	pcr0, _, _ := nsmsim.MeasureImage(simImage)
	_, attackerKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	attackerPub := append([]byte{4}, bytes.Repeat([]byte{0x66}, 64)...)

	tests := []struct {
		name    string
		tamper  func(e *keyEnclave, nonce []byte, resp *signerv1.GetKeyResponse)
		opts    func(o *verify.Options)
		rpcErr  error
		wantErr error
		want    string
	}{
		{name: "verified"},
		{name: "public key swapped", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) { r.Key.PublicKey = attackerPub },
			wantErr: verify.ErrKeyProof, want: "public key differs"},
		{name: "address swapped", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			r.Key.Addresses.Ethereum = "0x6666666666666666666666666666666666666666"
		},
			wantErr: verify.ErrKeyProof, want: "addresses differ"},
		{name: "address added", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) { r.Key.Addresses.Solana = "attacker" },
			wantErr: verify.ErrKeyProof, want: "addresses differ"},
		{name: "algorithm swapped", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			r.Key.Algorithm = signerv1.Algorithm_ALGORITHM_P256
		},
			wantErr: verify.ErrKeyProof, want: "algorithm differs"},
		{name: "statement swapped too", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			r.Key.PublicKey = attackerPub
			r.Proof.Statement = encode(t, statementOf(r.Key))
		}, wantErr: verify.ErrKeyProof, want: "signature does not verify"},
		{name: "signed by the parent's own key", tamper: func(e *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			r.Key.PublicKey = attackerPub
			doc := r.Proof.AttestationDocument
			r.Proof = e.sign(t, attackerKey, statementOf(r.Key))
			r.Proof.AttestationDocument = doc
		}, wantErr: verify.ErrKeyProof, want: "another identity key"},
		{name: "proof of another key", tamper: func(e *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			other := statementOf(r.Key)
			other.KeyId = "key_ffffffffffffffffffffffffffffffff"
			doc := r.Proof.AttestationDocument
			r.Proof = e.sign(t, e.idKey, other)
			r.Proof.AttestationDocument = doc
		}, wantErr: verify.ErrKeyProof, want: `statement is about key "key_ffff`},
		{name: "statement with an unknown field", tamper: func(e *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			st := statementOf(r.Key)
			st.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 1))
			doc := r.Proof.AttestationDocument
			r.Proof = e.sign(t, e.idKey, st)
			r.Proof.AttestationDocument = doc
		}, wantErr: verify.ErrKeyProof, want: "fields this client does not know"},
		{name: "statement not deterministic", tamper: func(e *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			// The same statement with its version field last.
			st := statementOf(r.Key)
			st.Version = 0
			b := protowire.AppendVarint(protowire.AppendTag(encode(t, st), 1, protowire.VarintType), 1)
			doc := r.Proof.AttestationDocument
			r.Proof = &signerv1.KeyProof{Statement: b, IdentityPublicKey: e.idKey.Public().(ed25519.PublicKey),
				Signature: ed25519.Sign(e.idKey, append([]byte("nitrosigner.v1.KeyStatement\x00"), b...)), AttestationDocument: doc}
		}, wantErr: verify.ErrKeyProof, want: "deterministic"},
		{name: "statement version 2", tamper: func(e *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			st := statementOf(r.Key)
			st.Version = 2
			doc := r.Proof.AttestationDocument
			r.Proof = e.sign(t, e.idKey, st)
			r.Proof.AttestationDocument = doc
		}, wantErr: verify.ErrKeyProof, want: "version 2"},
		{name: "proof dropped", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) { r.Proof = nil },
			wantErr: verify.ErrKeyProof, want: "no attestation document"},
		{name: "document dropped", tamper: func(_ *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) { r.Proof.AttestationDocument = nil },
			wantErr: verify.ErrKeyProof, want: "no attestation document"},
		{name: "replayed document", tamper: func(e *keyEnclave, _ []byte, r *signerv1.GetKeyResponse) {
			doc, err := e.sim.Attest(t.Context(), []byte("an older nonce"), encodeIdentity(e.identity()), kmsSPKI)
			require.NoError(t, err)
			r.Proof.AttestationDocument = doc
		}, wantErr: verify.ErrNonceMismatch},
		{name: "wrong image", opts: func(o *verify.Options) { o.PCRs = map[int][]byte{0: make([]byte, 48)} }, wantErr: verify.ErrPCRMismatch},
		{name: "untrusted root", opts: func(o *verify.Options) { o.Roots = nil }, wantErr: verify.ErrUntrusted},
		{name: "request failed", rpcErr: status.Error(codes.Unavailable, "enclave down"), wantErr: verify.ErrRequest, want: "enclave down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newKeyEnclave(t, sim)
			e.err = tt.rpcErr
			if tt.tamper != nil {
				e.tamper = func(nonce []byte, r *signerv1.GetKeyResponse) { tt.tamper(e, nonce, r) }
			}
			opts := simOptions(sim)
			opts.AnyImage, opts.PCRs = false, map[int][]byte{0: pcr0}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			k, res, err := verify.FetchKey(t.Context(), e, e.key.GetKeyId(), opts)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), tt.want)
				assert.Nil(t, k)
				assert.Nil(t, res)
				return
			}
			require.NoError(t, err)
			assert.True(t, proto.Equal(e.key, k))
			assert.True(t, proto.Equal(e.identity(), res.Identity))
			assert.Len(t, res.Nonce, verify.NonceSize)
		})
	}
}

func TestFetchKeyRequiresPCRs(t *testing.T) {
	_, _, err := verify.FetchKey(t.Context(), nil, "key_0123456789abcdef0123456789abcdef", verify.Options{})
	require.ErrorIs(t, err, verify.ErrNoPCRs, "no request is made without PCRs")
}

// TestKeyProofAgainstKnownIdentity checks a proof without a document
// against an identity verified before, as a client does for CreateKey
// answers when it attested the enclave first.
func TestKeyProofAgainstKnownIdentity(t *testing.T) {
	e := newKeyEnclave(t, newSim(t, false))
	proof := e.sign(t, e.idKey, statementOf(e.key))
	st, err := verify.KeyProof(e.key, proof, e.identity())
	require.NoError(t, err)
	assert.Equal(t, e.key.GetKeyId(), st.GetKeyId())

	_, err = verify.KeyProof(e.key, proof, nil)
	require.ErrorIs(t, err, verify.ErrKeyProof)
	other := newKeyEnclave(t, e.sim)
	_, err = verify.KeyProof(e.key, proof, other.identity())
	require.ErrorIs(t, err, verify.ErrKeyProof, "a restarted enclave has a new identity key")
	proof.Signature[0] ^= 1
	_, err = verify.KeyProof(e.key, proof, e.identity())
	require.ErrorContains(t, err, "signature does not verify")
}
