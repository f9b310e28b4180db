// Package e2e runs the whole signing path in one process: the enclave
// (enclave.Run with the NSM simulator) and the parent proxy (parent.Run),
// joined by the link over a unix socket, driven by the generated gRPC client
// over another unix socket. Signatures are checked with code independent of
// the enclave's: Go's crypto/ed25519 and libsecp256k1 (via go-ethereum's cgo
// binding) for public-key recovery.
package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gethcrypto "github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
	"github.com/nitrosigner/nitrosigner/parent"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// testLog sends slog output to t.Logf.
func testLog(t testing.TB) *slog.Logger {
	if _, bench := t.(*testing.B); bench {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Logf("%s", p); return len(p), nil }

// sockDir returns a short directory for unix sockets (paths are limited to
// about 108 bytes, which t.TempDir can exceed).
func sockDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ns")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type stack struct {
	client     signerv1.SignerServiceClient
	conn       *grpc.ClientConn
	sim        *nsmsim.Simulator
	enclaveURL string
	parentURL  string
	world      *world
}

// startParent runs parent.Run with cfg until the test ends or stop is
// called.
func startParent(t testing.TB, cfg parent.Config) (stop func()) {
	t.Helper()
	listening := make(chan struct{})
	cfg.OnListen = func(_ net.Addr) { close(listening) }
	// Short, so that health follows the enclave quickly; not so short that
	// a race-built test binary on a loaded 2-core machine leaves a ping
	// unanswered for a whole interval, which resets the link (and failed
	// a CreateKey in CI at 100 ms).
	cfg.HealthInterval = time.Second
	if cfg.Logger == nil {
		cfg.Logger = testLog(t)
	}
	return runService(t, "parent", 10*time.Second, listening, func(ctx context.Context) error { return parent.Run(ctx, cfg) })
}

func dialParent(t testing.TB, url string) (*grpc.ClientConn, signerv1.SignerServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient(url, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn, signerv1.NewSignerServiceClient(conn)
}

func startStack(t testing.TB) *stack {
	t.Helper()
	return newWorld(t, worldOptions{}).start(t)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEndToEnd(t *testing.T) {
	s := startStack(t)
	c := s.client

	// secp256k1: create, sign a digest, recover the public key with libsecp256k1.
	k1, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
	require.NoError(t, err)
	require.Len(t, k1.GetKey().GetPublicKey(), 65)
	digest := sha256.Sum256([]byte("pay 1 BTC to bob"))
	sr, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k1.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Digest{Digest: digest[:]}})
	require.NoError(t, err)
	sig := sr.GetSignature()
	require.Len(t, sig, 65)
	recovered, err := gethcrypto.Ecrecover(digest[:], sig)
	require.NoError(t, err)
	assert.Equal(t, k1.GetKey().GetPublicKey(), recovered, "libsecp256k1 recovers the key's public key")
	assert.True(t, gethcrypto.VerifySignature(recovered, digest[:], sig[:64]), "low-S signature verifies")

	// ed25519: create, sign a message, verify with the standard library.
	ed, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err)
	msg := []byte("solana transfer message")
	sr, err = c.Sign(ctx(t), &signerv1.SignRequest{KeyId: ed.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: msg}})
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(ed.GetKey().GetPublicKey(), msg, sr.GetSignature()))

	// GetKey and ListKeys see both.
	got, err := c.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: ed.GetKey().GetKeyId()})
	require.NoError(t, err)
	assert.True(t, proto.Equal(ed.GetKey(), got.GetKey()))
	list, err := c.ListKeys(ctx(t), &signerv1.ListKeysRequest{})
	require.NoError(t, err)
	assert.Len(t, list.GetKeys(), 2)

	// Batch: both keys in one call.
	br, err := c.SignBatch(ctx(t), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{
		{KeyId: k1.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Digest{Digest: digest[:]}},
		{KeyId: ed.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: msg}},
	}})
	require.NoError(t, err)
	require.Len(t, br.GetResults(), 2)
	assert.Equal(t, sig, br.GetResults()[0].GetResponse().GetSignature(), "RFC 6979: same digest, same signature")
	assert.True(t, ed25519.Verify(ed.GetKey().GetPublicKey(), msg, br.GetResults()[1].GetResponse().GetSignature()))

	// Attestation over a fresh nonce verifies against the simulator root and
	// binds the identity in user_data.
	nonce := make([]byte, 32)
	_, err = rand.Read(nonce)
	require.NoError(t, err)
	ar, err := c.GetAttestation(ctx(t), &signerv1.GetAttestationRequest{Nonce: nonce})
	require.NoError(t, err)
	doc, err := attest.Verify(ar.GetDocument(), attest.Options{Roots: []*x509.Certificate{s.sim.Root()}, Nonce: nonce})
	require.NoError(t, err)
	var id signerv1.EnclaveIdentity
	require.NoError(t, proto.Unmarshal(doc.UserData, &id))
	assert.True(t, proto.Equal(&id, ar.GetIdentity()))
	assert.Len(t, id.GetIdentityPublicKey(), ed25519.PublicKeySize)
	spkiSum := sha256.Sum256(doc.PublicKey)
	assert.Equal(t, spkiSum[:], id.GetKmsPublicKeySha256())
	pub, err := x509.ParsePKIXPublicKey(doc.PublicKey)
	require.NoError(t, err)
	rsaPub, ok := pub.(*rsa.PublicKey)
	require.True(t, ok, "public_key must be an RSA key, got %T", pub)
	assert.Equal(t, 2048, rsaPub.N.BitLen(), "public_key must be the enclave's RSA-2048 key for KMS")
	_, err = attest.Verify(ar.GetDocument(), attest.Options{Roots: []*x509.Certificate{s.sim.Root()}, Nonce: []byte("other nonce")})
	require.ErrorIs(t, err, attest.ErrNonceMismatch)
	_, err = attest.Verify(ar.GetDocument(), attest.Options{Nonce: nonce})
	require.Error(t, err, "a simulator document must not verify against the AWS root")

	// Health reports the enclave reachable.
	hr, err := healthpb.NewHealthClient(s.conn).Check(ctx(t), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.GetStatus())
}

func TestBadInputThroughTheStack(t *testing.T) {
	s := startStack(t)
	c := s.client
	k1, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
	require.NoError(t, err)
	ed, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err)

	tests := []struct {
		name    string
		call    func() error
		code    codes.Code
		message string
	}{
		{"unknown key", func() error {
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: "key_0123456789abcdef0123456789abcdef", Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}})
			return err
		}, codes.NotFound, "key not found"},
		{"unknown key get", func() error {
			_, err := c.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: "key_0123456789abcdef0123456789abcdef"})
			return err
		}, codes.NotFound, "key not found"},
		{"wrong digest length", func() error {
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k1.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 20)}})
			return err
		}, codes.InvalidArgument, "digest"},
		{"unknown algorithm", func() error {
			_, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: 77})
			return err
		}, codes.InvalidArgument, "algorithm"},
		{"empty message", func() error {
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: ed.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: nil}})
			return err
		}, codes.InvalidArgument, "message"},
		{"message over the limit", func() error {
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: ed.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: make([]byte, 64<<10+1)}})
			return err
		}, codes.InvalidArgument, "message"},
		{"request over the gRPC limit", func() error {
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: ed.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: make([]byte, parent.MaxRecvMsgSize+1)}})
			return err
		}, codes.ResourceExhausted, ""},
		{"empty nonce", func() error {
			_, err := c.GetAttestation(ctx(t), &signerv1.GetAttestationRequest{})
			return err
		}, codes.InvalidArgument, "nonce"},
		{"field unknown to the enclave", func() error {
			// A client built against a newer schema: the enclave would
			// ignore field 12 and sign a different transaction.
			f := &signerv1.EthTxFields{Type: 2, ChainId: "1", Nonce: "0", MaxFeePerGas: "1", MaxPriorityFeePerGas: "1",
				Gas: "21000", To: "0x00000000000000000000000000000000000000aa", Value: "1"}
			f.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 12, protowire.VarintType), 3))
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k1.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_EthTransaction{
				EthTransaction: &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: f}}}})
			return err
		}, codes.InvalidArgument, "eth_transaction.fields: field number 12 is not known to this enclave"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			assert.Equal(t, tt.code, status.Code(err), err)
			assert.Contains(t, status.Convert(err).Message(), tt.message)
		})
	}
}

// TestEnclaveOutage: with the enclave down the parent answers Unavailable
// within the deadline, and recovers by itself when the enclave returns.
func TestEnclaveOutage(t *testing.T) {
	w := newWorld(t, worldOptions{})
	pc := w.parentConfig()
	pc.CallTimeout = 2 * time.Second
	startParent(t, pc)
	_, c := dialParent(t, w.parentURL)
	attestOK := func() error {
		_, err := c.GetAttestation(ctx(t), &signerv1.GetAttestationRequest{Nonce: []byte("n")})
		return err
	}

	start := time.Now()
	cctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := c.GetAttestation(cctx, &signerv1.GetAttestationRequest{Nonce: []byte("n")})
	cancel()
	require.Contains(t, []codes.Code{codes.Unavailable, codes.DeadlineExceeded}, status.Code(err), err)
	assert.Equal(t, codes.Unavailable, status.Code(err), "an unreachable enclave is Unavailable: %v", err)
	assert.Less(t, time.Since(start), 600*time.Millisecond)

	stop := startEnclaveCfg(t, w.enclaveConfig(t))
	require.Eventually(t, func() bool { return attestOK() == nil },
		10*time.Second, 50*time.Millisecond, "parent reconnects when the enclave comes back")
	k, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err)

	// Enclave goes away again, then a new one comes up on the same address:
	// the key still signs (loaded again from the store; KMS credentials
	// pushed again), so the restart costs clients only latency.
	stop()
	require.Eventually(t, func() bool { return status.Code(attestOK()) == codes.Unavailable },
		10*time.Second, 50*time.Millisecond)
	startEnclaveCfg(t, w.enclaveConfig(t))
	require.Eventually(t, func() bool { return attestOK() == nil }, 10*time.Second, 50*time.Millisecond)
	sr, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: []byte("m")}})
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(k.GetKey().GetPublicKey(), []byte("m"), sr.GetSignature()))
}

// TestRequestID: the parent echoes a client's request id in the response
// header and makes one when the client sends none or a malformed one.
func TestRequestID(t *testing.T) {
	s := startStack(t)
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		{"client id", "req-42", true},
		{"none", "", false},
		{"malformed", "bad id with spaces", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ctx(t)
			if tt.sent != "" {
				c = metadata.AppendToOutgoingContext(c, "x-request-id", tt.sent)
			}
			var hdr metadata.MD
			_, err := s.client.GetAttestation(c, &signerv1.GetAttestationRequest{Nonce: []byte("n")}, grpc.Header(&hdr))
			require.NoError(t, err)
			got := hdr.Get("x-request-id")
			require.Len(t, got, 1)
			if tt.echoed {
				assert.Equal(t, tt.sent, got[0])
			} else {
				assert.Len(t, got[0], 16)
				assert.NotEqual(t, tt.sent, got[0])
			}
		})
	}
}

// TestRequestIDReachesTheEnclave: the enclave's log lines about a call
// carry the request id the parent answered with, whether the client chose
// it or the parent made it, so the two logs can be joined.
func TestRequestIDReachesTheEnclave(t *testing.T) {
	w := newWorld(t, worldOptions{})
	var logs syncbuf.Buffer
	ec := w.enclaveConfig(t)
	ec.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	startEnclaveCfg(t, ec)
	startParent(t, w.parentConfig())
	_, c := dialParent(t, w.parentURL)

	var hdr metadata.MD
	k, err := c.CreateKey(metadata.AppendToOutgoingContext(ctx(t), "x-request-id", "req-e2e-7"),
		&signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519}, grpc.Header(&hdr))
	require.NoError(t, err)
	require.Equal(t, []string{"req-e2e-7"}, hdr.Get("x-request-id"))
	_, err = c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k.GetKey().GetKeyId(),
		Payload: &signerv1.SignRequest_Message{Message: []byte("m")}}, grpc.Header(&hdr))
	require.NoError(t, err)
	made := hdr.Get("x-request-id")
	require.Len(t, made, 1)

	lines := strings.Split(logs.String(), "\n")
	line := func(msg string) string {
		for _, l := range lines {
			if strings.Contains(l, `msg="`+msg+`" `) || strings.Contains(l, " msg="+msg+" ") {
				return l
			}
		}
		t.Fatalf("no %q line in the enclave's log:\n%s", msg, logs.String())
		return ""
	}
	assert.Contains(t, line("key created"), " request_id=req-e2e-7")
	assert.Contains(t, line("signed"), " request_id="+made[0])
}

// TestLargeRequestsKeepTheLink: requests near the 4 MiB gRPC limit either
// succeed or are refused with a code; none of them breaks the one link that
// every client shares.
func TestLargeRequestsKeepTheLink(t *testing.T) {
	s := startStack(t)
	c := s.client
	ed, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err)
	id := ed.GetKey().GetKeyId()

	// 63 messages of 64 KiB: just under the 4 MiB gRPC limit as one batch.
	var reqs []*signerv1.SignRequest
	for range 63 {
		reqs = append(reqs, &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Message{Message: make([]byte, 64<<10)}})
	}
	br, err := c.SignBatch(ctx(t), &signerv1.SignBatchRequest{Requests: reqs})
	require.NoError(t, err)
	for _, r := range br.GetResults() {
		require.NotNil(t, r.GetResponse(), r.GetError())
	}

	// One message just under 4 MiB: refused by the parent, not by a broken link.
	_, err = c.Sign(ctx(t), &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Message{Message: make([]byte, parent.MaxRecvMsgSize-50)}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err), err)

	// Concurrent callers are unaffected.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Message{Message: make([]byte, 60<<10)}})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
}

// TestMetrics: the parent's /metrics has request counts by method and code,
// its own process metrics and the enclave's own figures, and no request
// content in any label.
func TestMetrics(t *testing.T) {
	w := newWorld(t, worldOptions{})
	metricsPath := filepath.Join(w.dir, "metrics.sock")
	startEnclaveCfg(t, w.enclaveConfig(t))
	pc := w.parentConfig()
	pc.MetricsListen = "unix://" + metricsPath
	startParent(t, pc)
	_, c := dialParent(t, w.parentURL)

	k, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_ED25519})
	require.NoError(t, err)
	_, err = c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: []byte("m")}})
	require.NoError(t, err)
	// A secp256k1 digest goes through the enclave's batching: a lone call
	// is a batch of one.
	k1, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
	require.NoError(t, err)
	_, err = c.Sign(ctx(t), &signerv1.SignRequest{KeyId: k1.GetKey().GetKeyId(), Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}})
	require.NoError(t, err)
	_, err = c.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: "key_0123456789abcdef0123456789abcdef"})
	require.Equal(t, codes.NotFound, status.Code(err))

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", metricsPath)
	}}}
	resp, err := hc.Get("http://metrics/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(body)

	for _, want := range []string{
		`nitrosigner_grpc_requests_total{code="OK",method="/nitrosigner.v1.SignerService/Sign"} 2`,
		`nitrosigner_grpc_requests_total{code="NotFound",method="/nitrosigner.v1.SignerService/GetKey"} 1`,
		`nitrosigner_grpc_request_duration_seconds_count{method="/nitrosigner.v1.SignerService/CreateKey"} 2`,
		"nitrosigner_enclave_up 1",
		"nitrosigner_enclave_keys 2",
		"nitrosigner_enclave_batched_signatures_total 1",
		"nitrosigner_enclave_sign_batches_total 1",
		"nitrosigner_enclave_kms_calls_total 1",
		"nitrosigner_enclave_keks 1",
		`nitrosigner_enclave_cpu_seconds_total{mode="user"}`,
		"process_cpu_seconds_total",
		"go_goroutines",
		"nitrosigner_signing_frozen 0",
	} {
		assert.Contains(t, text, want)
	}
	_, err = c.Freeze(ctx(t), &signerv1.FreezeRequest{Reason: "metrics"})
	require.NoError(t, err)
	resp2, err := hc.Get("http://metrics/metrics")
	require.NoError(t, err)
	defer resp2.Body.Close()
	body, err = io.ReadAll(resp2.Body)
	require.NoError(t, err)
	assert.Contains(t, string(body), "nitrosigner_signing_frozen 1")
	assert.NotContains(t, text, k.GetKey().GetKeyId(), "no request content in labels")
	assert.NotContains(t, text, hex.EncodeToString(k.GetKey().GetPublicKey()))
}
