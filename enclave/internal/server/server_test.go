package server_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring"
	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring/keyringtest"
	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// fakeAttester records its arguments and can be told to fail.
type fakeAttester struct {
	nonce, userData, publicKey []byte
	err                        error
}

func (f *fakeAttester) Attest(_ context.Context, nonce, userData, publicKey []byte) ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	f.nonce, f.userData, f.publicKey = nonce, userData, publicKey
	return []byte("doc"), nil
}

func newServer(t testing.TB) (*server.Server, *fakeAttester) {
	t.Helper()
	return newServerLog(t, quiet)
}

// newServerLog is newServer with the server's logs sent to log.
func newServerLog(t testing.TB, log *slog.Logger) (*server.Server, *fakeAttester) {
	t.Helper()
	return newServerWith(t, func(c *server.Config) { c.Logger = log })
}

// newServerWith is newServer with its config changed by edit.
func newServerWith(t testing.TB, edit func(*server.Config)) (*server.Server, *fakeAttester) {
	t.Helper()
	att := &fakeAttester{}
	kms := keyringtest.New(testARN, otherARN)
	kr, err := keyring.New(keyring.Config{KMS: kms, KMSKeys: []string{testARN}, Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = kr.Close() })
	idPub, idKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	cfg := server.Config{
		Keyring:      kr,
		Credentials:  kms,
		Attester:     att,
		Identity:     &signerv1.EnclaveIdentity{Version: 1, IdentityPublicKey: idPub},
		IdentityKey:  idKey,
		KMSPublicKey: []byte("spki"),
		Version:      "test",
		Logger:       quiet,
	}
	edit(&cfg)
	s, err := server.New(cfg)
	require.NoError(t, err)
	return s, att
}

const (
	testARN  = "arn:aws:kms:us-east-1:111122223333:key/test"
	otherARN = "arn:aws:kms:us-east-1:444455556666:key/other"
)

var quiet = slog.New(slog.DiscardHandler)

func call[T proto.Message](t testing.TB, s *server.Server, m enclavev1.Method, req proto.Message, resp T) (T, error) {
	t.Helper()
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	out, err := s.Handle(context.Background(), uint16(m), b, nil)
	if err != nil {
		return resp, err
	}
	require.NoError(t, proto.Unmarshal(out, resp))
	return resp, nil
}

func createKey(t testing.TB, s *server.Server, alg signerv1.Algorithm) *signerv1.Key {
	t.Helper()
	return createFull(t, s, alg).GetKey()
}

func createFull(t testing.TB, s *server.Server, alg signerv1.Algorithm) *enclavev1.CreateKeyResponse {
	t.Helper()
	r, err := call(t, s, enclavev1.Method_METHOD_CREATE_KEY,
		&enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{Algorithm: alg}}, &enclavev1.CreateKeyResponse{})
	require.NoError(t, err)
	return r
}

func signReq(id string, digest, msg []byte) *enclavev1.SignRequest {
	r := &signerv1.SignRequest{KeyId: id}
	switch {
	case digest != nil:
		r.Payload = &signerv1.SignRequest_Digest{Digest: digest}
	case msg != nil:
		r.Payload = &signerv1.SignRequest_Message{Message: msg}
	}
	return &enclavev1.SignRequest{Request: r}
}

func TestSignBothAlgorithms(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	ed := createKey(t, s, signerv1.Algorithm_ALGORITHM_ED25519)
	assert.Len(t, k1.GetPublicKey(), 65)
	assert.Len(t, ed.GetPublicKey(), 32)

	digest := make([]byte, 32)
	digest[0] = 7
	r, err := call(t, s, enclavev1.Method_METHOD_SIGN, signReq(k1.GetKeyId(), digest, nil), &enclavev1.SignResponse{})
	require.NoError(t, err)
	sig := r.GetResponse().GetSignature()
	require.Len(t, sig, 65)
	pub, _, err := ecdsa.RecoverCompact(append([]byte{27 + sig[64]}, sig[:64]...), digest)
	require.NoError(t, err)
	assert.Equal(t, k1.GetPublicKey(), pub.SerializeUncompressed())

	r, err = call(t, s, enclavev1.Method_METHOD_SIGN, signReq(ed.GetKeyId(), nil, []byte("hi")), &enclavev1.SignResponse{})
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(ed.GetPublicKey(), []byte("hi"), r.GetResponse().GetSignature()))
	assert.Equal(t, signerv1.Algorithm_ALGORITHM_ED25519, r.GetResponse().GetAlgorithm())
}

func TestBadInput(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1).GetKeyId()
	ed := createKey(t, s, signerv1.Algorithm_ALGORITHM_ED25519).GetKeyId()
	unknown := "key_0123456789abcdef0123456789abcdef"

	tests := []struct {
		name     string
		method   enclavev1.Method
		req      proto.Message
		wantCode codes.Code
		wantMsg  string
	}{
		{"unknown key", enclavev1.Method_METHOD_SIGN, signReq(unknown, make([]byte, 32), nil), codes.FailedPrecondition, enclavev1.KeyNotLoaded},
		{"unknown key shape", enclavev1.Method_METHOD_SIGN, signReq("nope", make([]byte, 32), nil), codes.FailedPrecondition, enclavev1.KeyNotLoaded},
		{"missing key id", enclavev1.Method_METHOD_SIGN, signReq("", make([]byte, 32), nil), codes.InvalidArgument, "key_id"},
		{"short digest", enclavev1.Method_METHOD_SIGN, signReq(k1, make([]byte, 31), nil), codes.InvalidArgument, "digest: must be 32 bytes, got 31"},
		{"long digest", enclavev1.Method_METHOD_SIGN, signReq(k1, make([]byte, 64), nil), codes.InvalidArgument, "digest"},
		{"empty digest", enclavev1.Method_METHOD_SIGN, signReq(k1, []byte{}, nil), codes.InvalidArgument, "digest"},
		{"empty message", enclavev1.Method_METHOD_SIGN, signReq(ed, nil, []byte{}), codes.InvalidArgument, "message: must not be empty"},
		{"huge message", enclavev1.Method_METHOD_SIGN, signReq(ed, nil, make([]byte, server.MaxMessageSize+1)), codes.InvalidArgument, "message: must be at most"},
		{"no payload", enclavev1.Method_METHOD_SIGN, signReq(ed, nil, nil), codes.InvalidArgument, "payload"},
		{"digest for ed25519", enclavev1.Method_METHOD_SIGN, signReq(ed, make([]byte, 32), nil), codes.InvalidArgument, "digest: ed25519"},
		{"message for secp256k1", enclavev1.Method_METHOD_SIGN, signReq(k1, nil, []byte("x")), codes.InvalidArgument, "message: secp256k1"},
		{"unknown algorithm", enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{Algorithm: 42}}, codes.InvalidArgument, "algorithm"},
		{"unspecified algorithm", enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{}}, codes.InvalidArgument, "algorithm"},
		{"too many labels", enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{
			Algorithm: signerv1.Algorithm_ALGORITHM_ED25519, Labels: manyLabels(17)}}, codes.InvalidArgument, "labels"},
		{"load nothing", enclavev1.Method_METHOD_LOAD_KEYS, &enclavev1.LoadKeysRequest{}, codes.InvalidArgument, "keys"},
		{"load without id", enclavev1.Method_METHOD_LOAD_KEYS, &enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{{SealedKey: []byte{1}}}}, codes.InvalidArgument, "keys.key_id"},
		{"load without blob", enclavev1.Method_METHOD_LOAD_KEYS, &enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{{KeyId: unknown}}}, codes.InvalidArgument, "keys.sealed_key"},
		{"bad state", enclavev1.Method_METHOD_SET_KEY_STATE, &enclavev1.SetKeyStateRequest{KeyId: k1, State: 9}, codes.InvalidArgument, "state"},
		{"state without blob", enclavev1.Method_METHOD_SET_KEY_STATE, &enclavev1.SetKeyStateRequest{KeyId: k1, State: 2}, codes.InvalidArgument, "current.sealed_key"},
		{"rotate to alias", enclavev1.Method_METHOD_ROTATE_KEY, &enclavev1.RotateKeyRequest{KeyId: k1, KmsKeyArn: "alias/x"}, codes.InvalidArgument, "kms_key_arn"},
		{"credentials without secret", enclavev1.Method_METHOD_SET_CREDENTIALS, &enclavev1.SetCredentialsRequest{AccessKeyId: "AKID"}, codes.InvalidArgument, "secret_access_key"},
		{"list in the enclave", enclavev1.Method_METHOD_LIST_KEYS, &enclavev1.ListKeysRequest{}, codes.Unimplemented, "unknown method"},
		{"empty nonce", enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{}, codes.InvalidArgument, "nonce"},
		{"huge nonce", enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: make([]byte, 513)}, codes.InvalidArgument, "nonce"},
		{"empty batch", enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{}}, codes.InvalidArgument, "requests"},
		{"unknown method", enclavev1.Method(999), &enclavev1.PingRequest{}, codes.Unimplemented, "unknown method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, s, tt.method, tt.req, &enclavev1.PingResponse{})
			require.Error(t, err)
			st, ok := status.FromError(err)
			require.True(t, ok)
			assert.Equal(t, tt.wantCode, st.Code(), st.Message())
			assert.Contains(t, st.Message(), tt.wantMsg)
		})
	}
}

func manyLabels(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[string(rune('a'+i))] = "v"
	}
	return m
}

func TestMalformedBytes(t *testing.T) {
	s, _ := newServer(t)
	_, err := s.Handle(context.Background(), uint16(enclavev1.Method_METHOD_SIGN), []byte{0xff, 0xff, 0xff}, nil)
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestSignBatch(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1).GetKeyId()
	var reqs []*signerv1.SignRequest
	for i := range 40 {
		d := make([]byte, 32)
		d[0] = byte(i)
		reqs = append(reqs, signReq(k1, d, nil).GetRequest())
	}
	reqs[7] = signReq(k1, make([]byte, 3), nil).GetRequest()
	reqs[9] = signReq("key_0123456789abcdef0123456789abcdef", make([]byte, 32), nil).GetRequest()
	r, err := call(t, s, enclavev1.Method_METHOD_SIGN_BATCH,
		&enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{Requests: reqs}}, &enclavev1.SignBatchResponse{})
	require.NoError(t, err)
	res := r.GetResponse().GetResults()
	require.Len(t, res, 40)
	for i, x := range res {
		switch i {
		case 7:
			assert.Equal(t, int32(codes.InvalidArgument), x.GetError().GetCode())
		case 9:
			assert.Equal(t, int32(codes.FailedPrecondition), x.GetError().GetCode())
			assert.Equal(t, enclavev1.KeyNotLoaded, x.GetError().GetMessage())
		default:
			require.NotNil(t, x.GetResponse(), i)
			assert.Len(t, x.GetResponse().GetSignature(), 65)
		}
	}

	tooMany := make([]*signerv1.SignRequest, server.MaxBatch+1)
	for i := range tooMany {
		tooMany[i] = reqs[0]
	}
	_, err = call(t, s, enclavev1.Method_METHOD_SIGN_BATCH,
		&enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{Requests: tooMany}}, &enclavev1.SignBatchResponse{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestAttestationBindsIdentity(t *testing.T) {
	s, att := newServer(t)
	r, err := call(t, s, enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: []byte("n0nce")}, &enclavev1.GetAttestationResponse{})
	require.NoError(t, err)
	assert.Equal(t, []byte("doc"), r.GetResponse().GetDocument())
	assert.Equal(t, []byte("n0nce"), att.nonce)
	assert.Equal(t, []byte("spki"), att.publicKey)
	var id signerv1.EnclaveIdentity
	require.NoError(t, proto.Unmarshal(att.userData, &id))
	assert.True(t, proto.Equal(&id, r.GetResponse().GetIdentity()))
}

func TestInternalErrorsAreOpaque(t *testing.T) {
	s, att := newServer(t)
	att.err = errors.New("nsm ioctl failed: secret detail")
	_, err := call(t, s, enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: []byte("n")}, &enclavev1.GetAttestationResponse{})
	st, _ := status.FromError(err)
	assert.Equal(t, codes.Internal, st.Code())
	assert.NotContains(t, st.Message(), "secret")
}

// FuzzHandle feeds arbitrary bytes to every method: the server must answer
// with a response or a status error, never panic.
func FuzzHandle(f *testing.F) {
	seed := func(m enclavev1.Method, msg proto.Message) {
		b, _ := proto.Marshal(msg)
		f.Add(uint16(m), b)
	}
	seed(enclavev1.Method_METHOD_SIGN, signReq("key_0123456789abcdef0123456789abcdef", make([]byte, 32), nil))
	seed(enclavev1.Method_METHOD_SIGN, signReq("key_0123456789abcdef0123456789abcdef", nil, []byte("m")))
	seed(enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{
		Requests: []*signerv1.SignRequest{signReq("k", make([]byte, 32), nil).GetRequest()}}})
	seed(enclavev1.Method_METHOD_CREATE_KEY, &enclavev1.CreateKeyRequest{Request: &signerv1.CreateKeyRequest{Algorithm: 2, Labels: map[string]string{"a": "b"}}})
	seed(enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: []byte("n")})
	s, _ := newServer(f)
	c := createFull(f, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	ed := createKey(f, s, signerv1.Algorithm_ALGORITHM_ED25519)
	for _, r := range chainSeeds(f, c.GetKey(), ed) {
		seed(enclavev1.Method_METHOD_SIGN, r)
	}
	blobs := &enclavev1.SealedBlobs{KeyId: c.GetKey().GetKeyId(), SealedKey: c.GetSealedKey(), SealedKek: c.GetSealedKek()}
	seed(enclavev1.Method_METHOD_LOAD_KEYS, &enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{blobs}})
	seed(enclavev1.Method_METHOD_DESCRIBE_KEYS, &enclavev1.DescribeKeysRequest{Keys: []*enclavev1.SealedBlobs{blobs}})
	seed(enclavev1.Method_METHOD_SET_KEY_STATE, &enclavev1.SetKeyStateRequest{KeyId: blobs.KeyId, State: 2, Current: blobs})
	seed(enclavev1.Method_METHOD_ROTATE_KEY, &enclavev1.RotateKeyRequest{KeyId: blobs.KeyId, Current: blobs})
	seed(enclavev1.Method_METHOD_SET_CREDENTIALS, &enclavev1.SetCredentialsRequest{AccessKeyId: "a", SecretAccessKey: "b"})
	seed(enclavev1.Method_METHOD_SET_FREEZE, &enclavev1.SetFreezeRequest{State: &signerv1.FreezeState{Frozen: true, Reason: "r", ChangedAtUnixMs: 1}})
	seed(enclavev1.Method_METHOD_SET_FREEZE, &enclavev1.SetFreezeRequest{State: &signerv1.FreezeState{}})
	seed(enclavev1.Method_METHOD_APPLY_KEY_CHANGES, &enclavev1.ApplyKeyChangesRequest{Seq: 3, Changes: []*enclavev1.KeyChange{
		{KeyId: blobs.KeyId, Generation: 2}, {KeyId: ed.GetKeyId(), Deleted: true}}})
	seed(enclavev1.Method_METHOD_APPLY_KEY_CHANGES, &enclavev1.ApplyKeyChangesRequest{Seq: 4, EvictAll: true})
	f.Fuzz(func(t *testing.T, method uint16, req []byte) {
		out, err := s.Handle(context.Background(), method, req, nil)
		if err != nil {
			_, ok := status.FromError(err)
			require.True(t, ok, "non-status error %v", err)
			require.Nil(t, out)
		}
	})
}

func TestStats(t *testing.T) {
	s, _ := newServer(t)
	createKey(t, s, signerv1.Algorithm_ALGORITHM_ED25519)
	createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	r, err := call(t, s, enclavev1.Method_METHOD_GET_STATS, &enclavev1.GetStatsRequest{}, &enclavev1.GetStatsResponse{})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r.GetKeys())
	assert.Equal(t, "test", r.GetVersion())
	assert.Positive(t, r.GetUserCpuMicros()+r.GetSystemCpuMicros())
	assert.Positive(t, r.GetHeapBytes())
	assert.Positive(t, r.GetGoroutines())
}

func blobsOf(c *enclavev1.CreateKeyResponse) *enclavev1.SealedBlobs {
	return &enclavev1.SealedBlobs{KeyId: c.GetKey().GetKeyId(), SealedKey: c.GetSealedKey(), SealedKek: c.GetSealedKek()}
}

func TestCreateReturnsSealedBlobsAndSealing(t *testing.T) {
	s, _ := newServer(t)
	c := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	require.NotEmpty(t, c.GetSealedKey())
	require.NotEmpty(t, c.GetSealedKek())
	k := c.GetKey()
	assert.Equal(t, testARN, k.GetSealing().GetKmsKeyArn())
	assert.EqualValues(t, 1, k.GetSealing().GetGeneration())
	assert.Equal(t, signerv1.KeyState_KEY_STATE_ENABLED, k.GetState())
}

func TestLifecycleThroughHandle(t *testing.T) {
	s, _ := newServer(t)
	c := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	id := c.GetKey().GetKeyId()
	digest := make([]byte, 32)

	// Describe authenticates and describes; a swapped blob is DataLoss.
	other := createFull(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1)
	swapped := blobsOf(other)
	swapped.KeyId = id
	d, err := call(t, s, enclavev1.Method_METHOD_DESCRIBE_KEYS,
		&enclavev1.DescribeKeysRequest{Keys: []*enclavev1.SealedBlobs{blobsOf(c), swapped}}, &enclavev1.DescribeKeysResponse{})
	require.NoError(t, err)
	assert.Equal(t, c.GetKey().GetPublicKey(), d.GetKeys()[0].GetKey().GetPublicKey())
	assert.Equal(t, int32(codes.DataLoss), d.GetKeys()[1].GetError().GetCode())

	// Disable: a new blob, applied once loaded.
	st, err := call(t, s, enclavev1.Method_METHOD_SET_KEY_STATE, &enclavev1.SetKeyStateRequest{
		KeyId: id, State: signerv1.KeyState_KEY_STATE_DISABLED, Current: blobsOf(c)}, &enclavev1.SetKeyStateResponse{})
	require.NoError(t, err)
	assert.Equal(t, signerv1.KeyState_KEY_STATE_DISABLED, st.GetKey().GetState())
	loaded, err := call(t, s, enclavev1.Method_METHOD_LOAD_KEYS, &enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{
		{KeyId: id, SealedKey: st.GetSealedKey(), SealedKek: c.GetSealedKek()}, swapped}}, &enclavev1.LoadKeysResponse{})
	require.NoError(t, err)
	assert.Zero(t, loaded.GetResults()[0].GetCode())
	assert.Equal(t, int32(codes.DataLoss), loaded.GetResults()[1].GetCode())
	_, err = call(t, s, enclavev1.Method_METHOD_SIGN, signReq(id, digest, nil), &enclavev1.SignResponse{})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "disabled")

	// The older, enabled blob cannot be replayed into this enclave.
	loaded, err = call(t, s, enclavev1.Method_METHOD_LOAD_KEYS,
		&enclavev1.LoadKeysRequest{Keys: []*enclavev1.SealedBlobs{blobsOf(c)}}, &enclavev1.LoadKeysResponse{})
	require.NoError(t, err)
	assert.Equal(t, int32(codes.Aborted), loaded.GetResults()[0].GetCode())

	// Rotation to a KMS key the enclave does not trust is PermissionDenied.
	_, err = call(t, s, enclavev1.Method_METHOD_ROTATE_KEY, &enclavev1.RotateKeyRequest{
		KeyId: id, KmsKeyArn: otherARN, Current: blobsOf(c)}, &enclavev1.RotateKeyResponse{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	rot, err := call(t, s, enclavev1.Method_METHOD_ROTATE_KEY, &enclavev1.RotateKeyRequest{
		KeyId: id, Current: &enclavev1.SealedBlobs{KeyId: id, SealedKey: st.GetSealedKey(), SealedKek: c.GetSealedKek()}},
		&enclavev1.RotateKeyResponse{})
	require.NoError(t, err)
	assert.NotEqual(t, c.GetKey().GetSealing().GetKekId(), rot.GetKey().GetSealing().GetKekId())
	assert.Equal(t, c.GetKey().GetPublicKey(), rot.GetKey().GetPublicKey())
	assert.NotEmpty(t, rot.GetSealedKek())

	// Evict: the key must be loaded again.
	_, err = call(t, s, enclavev1.Method_METHOD_EVICT_KEY, &enclavev1.EvictKeyRequest{KeyId: id}, &enclavev1.EvictKeyResponse{})
	require.NoError(t, err)
	_, err = call(t, s, enclavev1.Method_METHOD_SIGN, signReq(id, digest, nil), &enclavev1.SignResponse{})
	assert.Equal(t, enclavev1.KeyNotLoaded, status.Convert(err).Message())

	_, err = call(t, s, enclavev1.Method_METHOD_SET_CREDENTIALS,
		&enclavev1.SetCredentialsRequest{AccessKeyId: "AKID", SecretAccessKey: "s"}, &enclavev1.SetCredentialsResponse{})
	require.NoError(t, err)
}
