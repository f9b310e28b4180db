//go:build !nosim

package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

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

var (
	simNow   = time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)
	simImage = []byte("nitrosigner enclave v1")
	kmsSPKI  = []byte("DER SubjectPublicKeyInfo of the enclave's RSA key")
)

// newSim starts a simulator with a fixed clock, away from any real
// /dev/nsm.
func newSim(t *testing.T, debug bool) *nsmsim.Simulator {
	t.Helper()
	cfg := nsmsim.Config{Image: simImage, Debug: debug, Now: func() time.Time { return simNow }}
	cfg.DevicePath = filepath.Join(t.TempDir(), "nsm")
	sim, err := nsmsim.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

func identity() *signerv1.EnclaveIdentity {
	sum := sha256.Sum256(kmsSPKI)
	return &signerv1.EnclaveIdentity{
		Version:            1,
		IdentityPublicKey:  bytes.Repeat([]byte{0x33}, 32),
		KmsPublicKeySha256: sum[:],
	}
}

func encode(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	return b
}

func simOptions(sim *nsmsim.Simulator) verify.Options {
	return verify.Options{Roots: []*x509.Certificate{sim.Root()}, Now: func() time.Time { return simNow }, AnyImage: true}
}

func TestVerifySimulatorDocument(t *testing.T) {
	sim := newSim(t, false)
	nonce := []byte("fresh nonce")
	doc, err := sim.Attest(t.Context(), nonce, encode(t, identity()), kmsSPKI)
	require.NoError(t, err)
	pcr0, _, pcr2 := nsmsim.MeasureImage(simImage)
	other0, _, _ := nsmsim.MeasureImage([]byte("nitrosigner enclave v2"))

	opts := simOptions(sim)
	opts.Nonce = nonce
	opts.PCRs = map[int][]byte{0: pcr0, 2: pcr2}
	res, err := verify.Verify(doc, opts)
	require.NoError(t, err)
	sum := sha256.Sum256(sim.Root().Raw)
	assert.Equal(t, sum[:], mustHex(t, res.RootSHA256))
	assert.NotEqual(t, verify.AWSRootSHA256, res.RootSHA256)
	assert.Equal(t, sim.ModuleID(), res.ModuleID)
	assert.Equal(t, sim.PCRs(), res.PCRs)

	id, err := res.BindIdentity()
	require.NoError(t, err)
	assert.True(t, proto.Equal(identity(), id))
	assert.Same(t, id, res.Identity)

	_, err = verify.Verify(doc, verify.Options{Now: opts.Now})
	require.ErrorIs(t, err, verify.ErrUntrusted, "a simulator document must not verify against the AWS root")
	opts.PCRs = map[int][]byte{0: other0}
	_, err = verify.Verify(doc, opts)
	require.ErrorIs(t, err, verify.ErrPCRMismatch)
}

func TestBindIdentity(t *testing.T) {
	sim := newSim(t, false)
	good := identity()
	with := func(change func(id *signerv1.EnclaveIdentity)) []byte {
		id := identity()
		change(id)
		return encode(t, id)
	}
	// Field 2 before field 1: the same value, not the deterministic
	// encoding.
	var reordered []byte
	reordered = protowire.AppendTag(reordered, 2, protowire.BytesType)
	reordered = protowire.AppendBytes(reordered, good.GetIdentityPublicKey())
	reordered = protowire.AppendTag(reordered, 1, protowire.VarintType)
	reordered = protowire.AppendVarint(reordered, 1)
	reordered = protowire.AppendTag(reordered, 3, protowire.BytesType)
	reordered = protowire.AppendBytes(reordered, good.GetKmsPublicKeySha256())
	// A field added by a newer enclave (e.g. 5), encoded after the known
	// ones as deterministic encoding does.
	extended := protowire.AppendTag(encode(t, good), 5, protowire.BytesType)
	extended = protowire.AppendBytes(extended, []byte("future key"))

	tests := []struct {
		name      string
		userData  []byte
		publicKey []byte
		want      string // error substring; empty: success
	}{
		{"bound", encode(t, good), kmsSPKI, ""},
		{"unknown later field", extended, kmsSPKI, ""},
		{"other kms key", encode(t, good), []byte("another key"), "does not match the identity's kms_public_key_sha256"},
		{"no public key", encode(t, good), nil, "no public_key"},
		{"no user data", nil, kmsSPKI, "no user_data"},
		{"not protobuf", []byte{0xff, 0xff}, kmsSPKI, "user_data is not an EnclaveIdentity"},
		{"not deterministic", reordered, kmsSPKI, "not the deterministic encoding"},
		{"version 2", with(func(id *signerv1.EnclaveIdentity) { id.Version = 2 }), kmsSPKI, "identity version 2"},
		{"version 0", with(func(id *signerv1.EnclaveIdentity) { id.Version = 0 }), kmsSPKI, "identity version 0"},
		{"short identity key", with(func(id *signerv1.EnclaveIdentity) { id.IdentityPublicKey = []byte{1, 2, 3} }), kmsSPKI, "identity_public_key is 3 bytes"},
		{"no kms hash", with(func(id *signerv1.EnclaveIdentity) { id.KmsPublicKeySha256 = nil }), kmsSPKI, "kms_public_key_sha256 is 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := sim.Attest(t.Context(), nil, tt.userData, tt.publicKey)
			require.NoError(t, err)
			res, err := verify.Verify(doc, simOptions(sim))
			require.NoError(t, err, "the document itself is valid")
			id, err := res.BindIdentity()
			if tt.want != "" {
				require.ErrorIs(t, err, verify.ErrIdentity)
				assert.Contains(t, err.Error(), tt.want)
				assert.Nil(t, id)
				assert.Nil(t, res.Identity)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, good.GetVersion(), id.GetVersion())
			assert.Equal(t, good.GetIdentityPublicKey(), id.GetIdentityPublicKey())
			assert.Equal(t, good.GetKmsPublicKeySha256(), id.GetKmsPublicKeySha256())
			assert.Same(t, id, res.Identity)
		})
	}
}

// fakeClient serves GetAttestation from a simulator, like the enclave
// does; hooks inject faults.
type fakeClient struct {
	sim      *nsmsim.Simulator
	identity *signerv1.EnclaveIdentity
	// onAttest may change the nonce, user_data and public key sent to the
	// simulator, and the identity returned.
	onAttest func(nonce, userData, publicKey *[]byte, id **signerv1.EnclaveIdentity)
	err      error

	mu     sync.Mutex
	nonces [][]byte
}

func (f *fakeClient) GetAttestation(ctx context.Context, in *signerv1.GetAttestationRequest, _ ...grpc.CallOption) (*signerv1.GetAttestationResponse, error) {
	f.mu.Lock()
	f.nonces = append(f.nonces, in.GetNonce())
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	nonce, ud, pub := in.GetNonce(), encodeIdentity(f.identity), kmsSPKI
	id := proto.Clone(f.identity).(*signerv1.EnclaveIdentity)
	if f.onAttest != nil {
		f.onAttest(&nonce, &ud, &pub, &id)
	}
	doc, err := f.sim.Attest(ctx, nonce, ud, pub)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &signerv1.GetAttestationResponse{Document: doc, Identity: id}, nil
}

func encodeIdentity(id *signerv1.EnclaveIdentity) []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(id)
	return b
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestFetch(t *testing.T) {
	sim := newSim(t, false)
	debugSim := newSim(t, true)
	pcr0, _, _ := nsmsim.MeasureImage(simImage)

	tests := []struct {
		name     string
		sim      *nsmsim.Simulator
		onAttest func(nonce, userData, publicKey *[]byte, id **signerv1.EnclaveIdentity)
		rpcErr   error
		opts     func(o *verify.Options)
		wantErr  error
		want     string
	}{
		{name: "verified", opts: func(o *verify.Options) { o.PCRs = map[int][]byte{0: pcr0} }},
		{name: "given nonce", opts: func(o *verify.Options) { o.Nonce = []byte{0xc0, 0xff, 0xee} }},
		{name: "request failed", rpcErr: status.Error(codes.Unavailable, "enclave down"), wantErr: verify.ErrRequest, want: "enclave down"},
		{name: "replayed document", onAttest: func(n, _, _ *[]byte, _ **signerv1.EnclaveIdentity) { *n = []byte("old nonce") }, wantErr: verify.ErrNonceMismatch},
		{name: "no nonce in document", onAttest: func(n, _, _ *[]byte, _ **signerv1.EnclaveIdentity) { *n = nil }, wantErr: verify.ErrNonceMismatch},
		{name: "wrong image", opts: func(o *verify.Options) { o.PCRs = map[int][]byte{0: make([]byte, 48)} }, wantErr: verify.ErrPCRMismatch},
		{name: "untrusted root", opts: func(o *verify.Options) { o.Roots = nil }, wantErr: verify.ErrUntrusted},
		{name: "stale", opts: func(o *verify.Options) { o.Now = func() time.Time { return simNow.Add(10 * time.Minute) } }, wantErr: verify.ErrStale},
		{name: "debug refused", sim: debugSim, wantErr: verify.ErrDebugMode},
		{name: "debug allowed", sim: debugSim, opts: func(o *verify.Options) { o.AllowDebug = true }},
		{name: "identity not in response", onAttest: func(_, _, _ *[]byte, id **signerv1.EnclaveIdentity) { *id = nil }, wantErr: verify.ErrIdentity, want: "server sent no enclave identity"},
		{name: "response claims another identity", onAttest: func(_, _, _ *[]byte, id **signerv1.EnclaveIdentity) {
			(*id).IdentityPublicKey = bytes.Repeat([]byte{0x44}, 32)
		}, wantErr: verify.ErrIdentity, want: "identity in the response differs"},
		{name: "user_data not an identity", onAttest: func(_, ud, _ *[]byte, _ **signerv1.EnclaveIdentity) { *ud = []byte{0xff, 0xff} }, wantErr: verify.ErrIdentity, want: "user_data is not an EnclaveIdentity"},
		{name: "kms key not bound", onAttest: func(_, _, pub *[]byte, _ **signerv1.EnclaveIdentity) { *pub = []byte("another key") }, wantErr: verify.ErrIdentity, want: "kms_public_key_sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sim
			if tt.sim != nil {
				s = tt.sim
			}
			client := &fakeClient{sim: s, identity: identity(), onAttest: tt.onAttest, err: tt.rpcErr}
			opts := simOptions(s)
			if tt.opts != nil {
				tt.opts(&opts)
			}
			res, err := verify.Fetch(t.Context(), client, opts)
			require.Len(t, client.nonces, 1)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), tt.want)
				assert.Nil(t, res)
				if tt.rpcErr != nil {
					assert.Equal(t, codes.Unavailable, status.Code(err))
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, client.nonces[0], res.Nonce)
			if opts.Nonce != nil {
				assert.Equal(t, opts.Nonce, client.nonces[0])
			} else {
				assert.Len(t, client.nonces[0], verify.NonceSize)
			}
			require.NotNil(t, res.Identity)
			assert.True(t, proto.Equal(identity(), res.Identity))
		})
	}
}

func TestFetchNonces(t *testing.T) {
	sim := newSim(t, false)
	client := &fakeClient{sim: sim, identity: identity()}
	for range 2 {
		_, err := verify.Fetch(t.Context(), client, simOptions(sim))
		require.NoError(t, err)
	}
	require.Len(t, client.nonces, 2)
	assert.NotEqual(t, client.nonces[0], client.nonces[1], "each Fetch sends a fresh nonce")

	opts := simOptions(sim)
	opts.Rand = bytes.NewReader(bytes.Repeat([]byte{9}, verify.NonceSize))
	res, err := verify.Fetch(t.Context(), client, opts)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{9}, verify.NonceSize), res.Nonce, "nonce drawn from Options.Rand")

	opts.Rand = failingReader{}
	_, err = verify.Fetch(t.Context(), client, opts)
	require.ErrorContains(t, err, "no entropy")

	for _, n := range [][]byte{{}, make([]byte, verify.MaxNonceSize+1)} {
		opts := simOptions(sim)
		opts.Nonce = n
		_, err = verify.Fetch(t.Context(), client, opts)
		require.ErrorContains(t, err, "want 1..512")
	}
	assert.Len(t, client.nonces, 3, "invalid nonces are refused before any request")
}

func TestFetchRequiresPCRs(t *testing.T) {
	opts := verify.Options{}
	_, err := verify.Fetch(t.Context(), nil, opts)
	require.ErrorIs(t, err, verify.ErrNoPCRs, "no request is made without PCRs")
}
