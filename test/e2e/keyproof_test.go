package e2e_test

import (
	"crypto/x509"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
	"github.com/nitrosigner/nitrosigner/verify"
)

// TestKeyProofs: the enclave vouches for every key it creates or describes,
// and a client checks that against an attestation document from the same
// answer, so a parent cannot show an address of its own.
func TestKeyProofs(t *testing.T) {
	w := newWorld(t, worldOptions{})
	stop := startEnclaveCfg(t, w.enclaveConfig(t))
	startParent(t, w.parentConfig())
	_, c := dialParent(t, w.parentURL)
	opts := func() verify.Options {
		nonce, err := verify.NewNonce(nil)
		require.NoError(t, err)
		return verify.Options{Roots: []*x509.Certificate{w.sim.Root()}, PCRs: map[int][]byte{0: w.sim.PCRs()[0]}, Nonce: nonce}
	}

	// CreateKey with a nonce: the proof carries a document over it.
	o := opts()
	cr, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1, AttestationNonce: o.Nonce})
	require.NoError(t, err)
	res, err := verify.AttestedKeyProof(cr.GetKey(), cr.GetProof(), o)
	require.NoError(t, err)
	require.NotNil(t, res.Identity)
	id := res.Identity

	// Without a nonce the proof is checked against the identity verified
	// above (the same enclave).
	ed, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err)
	assert.Empty(t, ed.GetProof().GetAttestationDocument())
	st, err := verify.KeyProof(ed.GetKey(), ed.GetProof(), id)
	require.NoError(t, err)
	assert.NotEmpty(t, st.GetAddresses().GetSolana())

	// GetKey: one call, checked end to end.
	k, res, err := verify.FetchKey(ctx(t), c, cr.GetKey().GetKeyId(), opts())
	require.NoError(t, err)
	assert.True(t, proto.Equal(id, res.Identity))
	assert.Equal(t, cr.GetKey().GetPublicKey(), k.GetPublicKey())
	assert.NotEmpty(t, k.GetAddresses().GetEthereum())
	assert.NotEmpty(t, k.GetAddresses().GetBitcoinP2Wpkh())

	// What a parent could do to an answer is caught.
	swapped := proto.Clone(cr.GetKey()).(*signerv1.Key)
	swapped.Addresses.Ethereum = "0x000000000000000000000000000000000000dEaD"
	_, err = verify.KeyProof(swapped, cr.GetProof(), id)
	require.ErrorIs(t, err, verify.ErrKeyProof)
	_, err = verify.KeyProof(ed.GetKey(), cr.GetProof(), id)
	require.ErrorIs(t, err, verify.ErrKeyProof, "a proof of another key")

	// A proof made by the enclave before it restarted names the old
	// identity key.
	stop()
	stop = startEnclaveCfg(t, w.enclaveConfig(t))
	defer func() { stop() }()
	waitReady(t, c)
	_, res2, err := verify.FetchKey(ctx(t), c, cr.GetKey().GetKeyId(), opts())
	require.NoError(t, err)
	assert.False(t, proto.Equal(id, res2.Identity), "a restarted enclave has a new identity key")
	_, err = verify.KeyProof(cr.GetKey(), cr.GetProof(), res2.Identity)
	require.ErrorIs(t, err, verify.ErrKeyProof)

	// Bad nonces are refused by the enclave before any work.
	_, err = c.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: cr.GetKey().GetKeyId(), AttestationNonce: make([]byte, 513)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "attestation_nonce")
	before, err := c.ListKeys(ctx(t), &signerv1.ListKeysRequest{})
	require.NoError(t, err)
	_, err = c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519, AttestationNonce: make([]byte, 513)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	after, err := c.ListKeys(ctx(t), &signerv1.ListKeysRequest{})
	require.NoError(t, err)
	assert.Len(t, after.GetKeys(), len(before.GetKeys()), "no key is made for a refused nonce")
}
