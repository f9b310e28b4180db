package kms_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/kms"
	"github.com/nitrosigner/nitrosigner/internal/cms"
)

const keyARN = "arn:aws:kms:us-east-1:111122223333:key/k1"

// fakeAttester returns a recognisable document carrying the public key.
type fakeAttester struct {
	mu    sync.Mutex
	calls int
}

func (a *fakeAttester) Attest(_ context.Context, _, _, pub []byte) ([]byte, error) {
	a.mu.Lock()
	a.calls++
	a.mu.Unlock()
	return append([]byte("DOC:"), pub...), nil
}

// tlsFor makes a CA and a server certificate for the given names.
func tlsFor(t *testing.T, names ...string) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}

// fakeKMS answers the KMS JSON protocol well enough for the client: it
// encrypts data keys to the RSA key found in the "document".
type fakeKMS struct {
	t       *testing.T
	dataKey []byte
	deny    bool
	mu      sync.Mutex
	targets []string
	bodies  []map[string]any
}

func (f *fakeKMS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	target := r.Header.Get("X-Amz-Target")
	f.mu.Lock()
	f.targets = append(f.targets, target)
	f.bodies = append(f.bodies, in)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential=AKIDTEST/") {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"__type":"UnrecognizedClientException","message":"bad"}`))
		return
	}
	if f.deny {
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"__type":"AccessDeniedException","Message":"User: x is not authorized to perform: kms:Decrypt"}`))
		return
	}
	rcp := in["Recipient"].(map[string]any)
	doc, _ := decodeB64(rcp["AttestationDocument"].(string))
	pubAny, err := x509.ParsePKIXPublicKey(bytes.TrimPrefix(doc, []byte("DOC:")))
	require.NoError(f.t, err)
	cfr, err := cms.Encrypt(rand.Reader, pubAny.(*rsa.PublicKey), f.dataKey, cms.EncryptOptions{})
	require.NoError(f.t, err)
	out := map[string]any{"KeyId": keyARN, "CiphertextForRecipient": cfr}
	if strings.HasSuffix(target, ".GenerateDataKey") {
		out["CiphertextBlob"] = []byte("wrapped")
	}
	_ = json.NewEncoder(w).Encode(out)
}

func decodeB64(s string) ([]byte, error) {
	var b []byte
	err := json.Unmarshal([]byte(`"`+s+`"`), &b)
	return b, err
}

// testRSAKey is made once: RSA key generation is slow under the race
// detector.
var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type setup struct {
	client *kms.Client
	fake   *fakeKMS
	att    *fakeAttester
}

func newSetup(t *testing.T, serverNames []string, trust bool) *setup {
	t.Helper()
	pool, cert := tlsFor(t, serverNames...)
	fake := &fakeKMS{t: t, dataKey: bytes.Repeat([]byte{0x42}, 32)}
	srv := httptest.NewUnstartedServer(fake)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !trust {
		pool = x509.NewCertPool()
	}
	rsaKey := testRSAKey()
	att := &fakeAttester{}
	addr := srv.Listener.Addr().String()
	c, err := kms.New(kms.Config{
		Region: "us-east-1",
		// The host is never resolved: Dial goes to the test server.
		Dial:     func(ctx context.Context) (net.Conn, error) { return (&net.Dialer{}).DialContext(ctx, "tcp", addr) },
		RootCAs:  pool,
		Attester: att,
		RSAKey:   rsaKey,
		// One attempt: the SDK would retry TLS failures with backoff.
		MaxAttempts: 1,
	})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return &setup{client: c, fake: fake, att: att}
}

func TestGenerateAndDecryptThroughRecipient(t *testing.T) {
	s := newSetup(t, []string{"kms.us-east-1.amazonaws.com"}, true)
	ctx := context.Background()
	_, _, _, err := s.client.GenerateDataKey(ctx, keyARN, map[string]string{"a": "b"})
	require.ErrorIs(t, err, kms.ErrNoCredentials)

	require.NoError(t, s.client.SetCredentials("AKIDTEST", "secret", "", time.Now().Add(time.Hour)))
	pt, ct, arn, err := s.client.GenerateDataKey(ctx, keyARN, map[string]string{"a": "b"})
	require.NoError(t, err)
	require.Equal(t, s.fake.dataKey, pt)
	require.Equal(t, []byte("wrapped"), ct)
	require.Equal(t, keyARN, arn)

	pt, arn, err = s.client.Decrypt(ctx, keyARN, ct, map[string]string{"a": "b"})
	require.NoError(t, err)
	require.Equal(t, s.fake.dataKey, pt)
	require.Equal(t, keyARN, arn)

	s.fake.mu.Lock()
	defer s.fake.mu.Unlock()
	require.Equal(t, []string{"TrentService.GenerateDataKey", "TrentService.Decrypt"}, s.fake.targets,
		"a call without credentials never leaves the enclave")
	last := s.fake.bodies[1]
	require.Equal(t, "RSAES_OAEP_SHA_256", last["Recipient"].(map[string]any)["KeyEncryptionAlgorithm"])
	require.Equal(t, map[string]any{"a": "b"}, last["EncryptionContext"])
	require.Equal(t, 1, s.att.calls, "one document reused within its TTL")
}

func TestExpiredCredentialsRefused(t *testing.T) {
	s := newSetup(t, []string{"kms.us-east-1.amazonaws.com"}, true)
	require.NoError(t, s.client.SetCredentials("AKIDTEST", "secret", "", time.Now().Add(-time.Second)))
	_, _, err := s.client.Decrypt(context.Background(), keyARN, []byte("x"), nil)
	require.ErrorIs(t, err, kms.ErrNoCredentials)
}

func TestAccessDeniedIsAttestationRefused(t *testing.T) {
	s := newSetup(t, []string{"kms.us-east-1.amazonaws.com"}, true)
	s.fake.deny = true
	require.NoError(t, s.client.SetCredentials("AKIDTEST", "secret", "", time.Time{}))
	_, _, err := s.client.Decrypt(context.Background(), keyARN, []byte("x"), nil)
	require.ErrorIs(t, err, kms.ErrAttestationRefused)
	require.ErrorContains(t, err, "AccessDeniedException")
}

// A party that knows only the enclave's public RSA key (the parent can read
// it from any attestation document) can build a perfectly valid
// CiphertextForRecipient for a data key of its choosing. It must never be
// accepted: the enclave verifies KMS's TLS certificate itself.
func TestForgedAnswerFromUntrustedServerRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		names []string
		trust bool
	}{
		"untrusted CA":      {[]string{"kms.us-east-1.amazonaws.com"}, false},
		"wrong server name": {[]string{"evil.example.com"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, tc.names, tc.trust)
			require.NoError(t, s.client.SetCredentials("AKIDTEST", "secret", "", time.Time{}))
			pt, _, _, err := s.client.GenerateDataKey(context.Background(), keyARN, nil)
			require.Error(t, err)
			require.Nil(t, pt)
			require.ErrorIs(t, err, kms.ErrUnavailable)
			var cerr *tls.CertificateVerificationError
			require.True(t, errors.As(err, &cerr) || strings.Contains(err.Error(), "certificate"), err.Error())
			s.fake.mu.Lock()
			require.Empty(t, s.fake.targets, "no request reaches an unverified server")
			s.fake.mu.Unlock()
		})
	}
}

func TestPublicRootsLoad(t *testing.T) {
	p, err := kms.PublicRoots()
	require.NoError(t, err)
	require.NotNil(t, p)
}

func TestNewValidates(t *testing.T) {
	_, err := kms.New(kms.Config{})
	require.Error(t, err)
	_, err = kms.New(kms.Config{
		Region: "us-east-1", Endpoint: "http://kms", RSAKey: testRSAKey(), Attester: &fakeAttester{},
		RootCAs: x509.NewCertPool(), Dial: func(context.Context) (net.Conn, error) { return nil, errors.New("x") },
	})
	require.ErrorContains(t, err, "https")
}
