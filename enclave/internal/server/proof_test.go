package server_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// checkProof verifies p as documented in signer.proto, independently of
// the verify package.
func checkProof(t *testing.T, idPub []byte, k *signerv1.Key, p *signerv1.KeyProof) {
	t.Helper()
	require.NotNil(t, p)
	assert.Equal(t, idPub, p.GetIdentityPublicKey())
	assert.True(t, ed25519.Verify(idPub, append([]byte("nitrosigner.v1.KeyStatement\x00"), p.GetStatement()...), p.GetSignature()))
	var st signerv1.KeyStatement
	require.NoError(t, proto.Unmarshal(p.GetStatement(), &st))
	assert.Equal(t, uint32(1), st.GetVersion())
	assert.Equal(t, k.GetKeyId(), st.GetKeyId())
	assert.Equal(t, k.GetAlgorithm(), st.GetAlgorithm())
	assert.Equal(t, k.GetPublicKey(), st.GetPublicKey())
	assert.True(t, proto.Equal(k.GetAddresses(), st.GetAddresses()))
	assert.NotEmpty(t, st.GetAddresses().GetEthereum()+st.GetAddresses().GetSolana())
}

func TestKeyProofs(t *testing.T) {
	s, att := newServer(t)
	a, err := call(t, s, enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: []byte("n0")}, &enclavev1.GetAttestationResponse{})
	require.NoError(t, err)
	idPub := a.GetResponse().GetIdentity().GetIdentityPublicKey()
	require.Len(t, idPub, ed25519.PublicKeySize)

	// CreateKey: a proof always; a document over the nonce when asked.
	c := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	checkProof(t, idPub, c.GetKey(), c.GetProof())
	assert.Empty(t, c.GetProof().GetAttestationDocument())
	r, err := call(t, s, enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{
		Algorithm: signerv1.Algorithm_ALGORITHM_ED25519, AttestationNonce: []byte("client nonce")}}, &enclavev1.CreateKeyResponse{})
	require.NoError(t, err)
	checkProof(t, idPub, r.GetKey(), r.GetProof())
	assert.Equal(t, []byte("doc"), r.GetProof().GetAttestationDocument())
	assert.Equal(t, []byte("client nonce"), att.nonce)

	// DescribeKeys proves only when asked.
	items := []*enclavev1.SealedBlobs{{KeyId: c.GetKey().GetKeyId(), SealedKey: c.GetSealedKey(), SealedKek: c.GetSealedKek()}}
	d, err := call(t, s, enclavev1.Method_METHOD_DESCRIBE_KEYS, &enclavev1.DescribeKeysRequest{Keys: items}, &enclavev1.DescribeKeysResponse{})
	require.NoError(t, err)
	assert.Nil(t, d.GetKeys()[0].GetProof())
	d, err = call(t, s, enclavev1.Method_METHOD_DESCRIBE_KEYS, &enclavev1.DescribeKeysRequest{Keys: items, Prove: true, AttestationNonce: []byte("n2")}, &enclavev1.DescribeKeysResponse{})
	require.NoError(t, err)
	checkProof(t, idPub, d.GetKeys()[0].GetKey(), d.GetKeys()[0].GetProof())
	assert.Equal(t, []byte("n2"), att.nonce)

	// Bad nonces are refused before any work.
	for _, req := range []proto.Message{
		&enclavev1.DescribeKeysRequest{Keys: items, AttestationNonce: []byte("n")},
		&enclavev1.DescribeKeysRequest{Keys: items, Prove: true, AttestationNonce: make([]byte, 513)},
		&enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519, AttestationNonce: make([]byte, 513)}},
	} {
		m := enclavev1.Method_METHOD_DESCRIBE_KEYS
		if _, ok := req.(*enclavev1.CreateKeyRequest); ok {
			m = enclavev1.Method_METHOD_CREATE_KEY
		}
		_, err := call(t, s, m, req, &enclavev1.PingResponse{})
		assert.Equal(t, codes.InvalidArgument, status.Code(err))
		assert.Contains(t, status.Convert(err).Message(), "attestation_nonce")
	}
}
