package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

var _ signerv1.SignerServiceServer = (*fakeSigner)(nil)

// Canned values returned by fakeSigner.
var (
	secpSignature = bytes.Repeat([]byte{0xab}, 65)
	edSignature   = bytes.Repeat([]byte{0xcd}, 64)
	secpPublicKey = append([]byte{0x04}, bytes.Repeat([]byte{0x11}, 64)...)
	edPublicKey   = bytes.Repeat([]byte{0x22}, 32)
)

const (
	keySecp     = "key_00000000000000000000000000000001"
	keyEd       = "key_00000000000000000000000000000002"
	keyDisabled = "key_00000000000000000000000000000003"
	createdAtMs = int64(1700000000123)
)

// attestInputs is what fakeSigner passes to the simulator and returns to
// the client; OnAttest may change it to inject faults.
type attestInputs struct {
	nonce, userData, publicKey []byte
	identity                   *signerv1.EnclaveIdentity
}

// fakeSigner is an in-memory SignerService with canned keys and signatures.
// Attestation documents come from a real NSM simulator when sim is set.
type fakeSigner struct {
	signerv1.UnimplementedSignerServiceServer

	// OnCall, if set, runs at the start of every RPC; a non-nil error is
	// returned instead of handling the call.
	OnCall func(ctx context.Context, method string) error
	// OnAttest, if set, may alter what GetAttestation sends the simulator
	// and returns.
	OnAttest func(in *attestInputs)
	// OnKey, if set, may alter a key answer and its proof, as a parent
	// could.
	OnKey func(k *signerv1.Key, p *signerv1.KeyProof)

	sim      *nsmsim.Simulator
	identity *signerv1.EnclaveIdentity
	idKey    ed25519.PrivateKey
	kmsSPKI  []byte

	mu        sync.Mutex
	keys      map[string]*signerv1.Key
	calls     []string
	pageSizes []int32
	lastSign  *signerv1.SignRequest
	created   *signerv1.CreateKeyRequest
}

func newFakeSigner() *fakeSigner {
	return &fakeSigner{keys: map[string]*signerv1.Key{
		keySecp: {
			KeyId: keySecp, Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1,
			PublicKey: secpPublicKey, State: signerv1.KeyState_KEY_STATE_ENABLED,
			CreatedAtUnixMs: createdAtMs, Labels: map[string]string{"env": "prod", "team": "payments"},
		},
		keyEd: {
			KeyId: keyEd, Algorithm: signerv1.Algorithm_ALGORITHM_ED25519,
			PublicKey: edPublicKey, State: signerv1.KeyState_KEY_STATE_ENABLED,
			CreatedAtUnixMs: createdAtMs + 1,
		},
		keyDisabled: {
			KeyId: keyDisabled, Algorithm: signerv1.Algorithm_ALGORITHM_ED25519,
			PublicKey: edPublicKey, State: signerv1.KeyState_KEY_STATE_DISABLED,
			CreatedAtUnixMs: createdAtMs + 2,
		},
	}}
}

// fakeIdentitySeed makes the fake enclave's identity key; fakeIdentityHex
// is its public key in hex, as the CLI prints it.
var (
	fakeIdentitySeed = bytes.Repeat([]byte{0x33}, ed25519.SeedSize)
	fakeIdentityHex  = hex.EncodeToString(ed25519.NewKeyFromSeed(fakeIdentitySeed).Public().(ed25519.PublicKey))
)

// withSimulator gives f an NSM simulator and an enclave identity for
// GetAttestation.
func (f *fakeSigner) withSimulator(t *testing.T, cfg nsmsim.Config) *fakeSigner {
	t.Helper()
	sim, err := nsmsim.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { sim.Close() })
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	spki, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	sum := sha256.Sum256(spki)
	idKey := ed25519.NewKeyFromSeed(fakeIdentitySeed)
	idPub := idKey.Public().(ed25519.PublicKey)
	f.sim = sim
	f.kmsSPKI = spki
	f.idKey = idKey
	f.identity = &signerv1.EnclaveIdentity{
		Version:            1,
		IdentityPublicKey:  idPub,
		KmsPublicKeySha256: sum[:],
	}
	return f
}

// keyAnswer is k and, with a simulator, its proof as the enclave makes it
// (with a document when nonce is set), both passed through OnKey.
func (f *fakeSigner) keyAnswer(ctx context.Context, k *signerv1.Key, nonce []byte) (*signerv1.Key, *signerv1.KeyProof, error) {
	k = proto.Clone(k).(*signerv1.Key)
	if f.sim == nil {
		return k, nil, nil
	}
	st, err := proto.MarshalOptions{Deterministic: true}.Marshal(&signerv1.KeyStatement{
		Version: 1, KeyId: k.GetKeyId(), Algorithm: k.GetAlgorithm(), PublicKey: k.GetPublicKey(), Addresses: k.GetAddresses()})
	if err != nil {
		return nil, nil, err
	}
	p := &signerv1.KeyProof{Statement: st, Signature: ed25519.Sign(f.idKey, signerv1.KeyProofMessage(st)),
		IdentityPublicKey: f.identity.GetIdentityPublicKey()}
	if len(nonce) > 0 {
		ud, _ := proto.MarshalOptions{Deterministic: true}.Marshal(f.identity)
		if p.AttestationDocument, err = f.sim.Attest(ctx, nonce, ud, f.kmsSPKI); err != nil {
			return nil, nil, status.Error(codes.Internal, err.Error())
		}
	}
	if f.OnKey != nil {
		f.OnKey(k, p)
	}
	return k, p, nil
}

func (f *fakeSigner) enter(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls = append(f.calls, method)
	f.mu.Unlock()
	if f.OnCall != nil {
		return f.OnCall(ctx, method)
	}
	return nil
}

// Calls returns the RPCs received so far.
func (f *fakeSigner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeSigner) CreateKey(ctx context.Context, req *signerv1.CreateKeyRequest) (*signerv1.CreateKeyResponse, error) {
	if err := f.enter(ctx, "CreateKey"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.created = req
	k := &signerv1.Key{
		KeyId:           fmt.Sprintf("key_%032x", len(f.keys)+1),
		Algorithm:       req.GetAlgorithm(),
		State:           signerv1.KeyState_KEY_STATE_ENABLED,
		CreatedAtUnixMs: createdAtMs,
		Labels:          req.GetLabels(),
	}
	switch req.GetAlgorithm() {
	case signerv1.Algorithm_ALGORITHM_SECP256K1:
		k.PublicKey = secpPublicKey
	case signerv1.Algorithm_ALGORITHM_ED25519:
		k.PublicKey = edPublicKey
	default:
		return nil, status.Error(codes.InvalidArgument, "algorithm: unsupported")
	}
	f.keys[k.KeyId] = k
	k, p, err := f.keyAnswer(ctx, k, req.GetAttestationNonce())
	return &signerv1.CreateKeyResponse{Key: k, Proof: p}, err
}

func (f *fakeSigner) GetKey(ctx context.Context, req *signerv1.GetKeyRequest) (*signerv1.GetKeyResponse, error) {
	if err := f.enter(ctx, "GetKey"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[req.GetKeyId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "key not found")
	}
	k, p, err := f.keyAnswer(ctx, k, req.GetAttestationNonce())
	return &signerv1.GetKeyResponse{Key: k, Proof: p}, err
}

// ListKeys pages by key id; the page token is the last id of the previous
// page.
func (f *fakeSigner) ListKeys(ctx context.Context, req *signerv1.ListKeysRequest) (*signerv1.ListKeysResponse, error) {
	if err := f.enter(ctx, "ListKeys"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pageSizes = append(f.pageSizes, req.GetPageSize())
	size := int(req.GetPageSize())
	if size == 0 {
		size = 100
	}
	ids := make([]string, 0, len(f.keys))
	for id := range f.keys {
		if id > req.GetPageToken() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	resp := new(signerv1.ListKeysResponse)
	for i, id := range ids {
		if i == size {
			resp.NextPageToken = ids[i-1]
			break
		}
		resp.Keys = append(resp.Keys, f.keys[id])
	}
	return resp, nil
}

func (f *fakeSigner) Sign(ctx context.Context, req *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	if err := f.enter(ctx, "Sign"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastSign = req
	k, ok := f.keys[req.GetKeyId()]
	switch {
	case !ok:
		return nil, status.Error(codes.NotFound, "key not found")
	case k.GetState() != signerv1.KeyState_KEY_STATE_ENABLED:
		return nil, status.Error(codes.FailedPrecondition, "key is disabled")
	}
	resp := &signerv1.SignResponse{KeyId: k.GetKeyId(), Algorithm: k.GetAlgorithm()}
	switch req.GetPayload().(type) {
	case *signerv1.SignRequest_Digest:
		if k.GetAlgorithm() != signerv1.Algorithm_ALGORITHM_SECP256K1 {
			return nil, status.Error(codes.InvalidArgument, "digest: needs a secp256k1 key")
		}
		resp.Signature = secpSignature
	case *signerv1.SignRequest_Message:
		if k.GetAlgorithm() != signerv1.Algorithm_ALGORITHM_ED25519 {
			return nil, status.Error(codes.InvalidArgument, "message: needs an ed25519 key")
		}
		resp.Signature = edSignature
	default:
		return nil, status.Error(codes.InvalidArgument, "payload: missing")
	}
	return resp, nil
}

func (f *fakeSigner) GetAttestation(ctx context.Context, req *signerv1.GetAttestationRequest) (*signerv1.GetAttestationResponse, error) {
	if err := f.enter(ctx, "GetAttestation"); err != nil {
		return nil, err
	}
	if f.sim == nil {
		return nil, status.Error(codes.Unimplemented, "no simulator")
	}
	ud, err := proto.MarshalOptions{Deterministic: true}.Marshal(f.identity)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	in := &attestInputs{
		nonce:     req.GetNonce(),
		userData:  ud,
		publicKey: f.kmsSPKI,
		identity:  proto.Clone(f.identity).(*signerv1.EnclaveIdentity),
	}
	if f.OnAttest != nil {
		f.OnAttest(in)
	}
	doc, err := f.sim.Attest(ctx, in.nonce, in.userData, in.publicKey)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &signerv1.GetAttestationResponse{Document: doc, Identity: in.identity}, nil
}

// startServer serves srv on a unix socket in a short temporary directory
// (socket paths are limited to about 100 bytes) and returns the --addr
// value for it.
func startServer(t *testing.T, srv signerv1.SignerServiceServer, opts ...grpc.ServerOption) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ns")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	lis, err := net.Listen("unix", sock)
	require.NoError(t, err)
	s := grpc.NewServer(opts...)
	signerv1.RegisterSignerServiceServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return "unix://" + sock
}

// runCLI runs the CLI with args and returns its exit status and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, &out, &errOut)
	t.Logf("nitrosigner %q: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errOut.String())
	return code, out.String(), errOut.String()
}

// decodeOne decodes stdout, which must hold exactly one JSON object.
func decodeOne(t *testing.T, stdout string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(stdout)))
	var v map[string]any
	require.NoError(t, dec.Decode(&v), "stdout is not a JSON object")
	var extra any
	require.ErrorIs(t, dec.Decode(&extra), io.EOF, "stdout holds more than one JSON value")
	return v
}

// keysOf returns the sorted keys of m.
func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
