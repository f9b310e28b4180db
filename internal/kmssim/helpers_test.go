//go:build !nosim

package kmssim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// env is a running simulator with a client for the default credential.
type env struct {
	url    string
	pool   *x509.CertPool
	srv    *kmssim.Server
	client *kms.Client
}

// start runs a simulator with cfg (test defaults for zero fields) and a
// client with fast retries.
func start(t testing.TB, cfg kmssim.Config) *env {
	t.Helper()
	url, pool, srv := kmssimtest.Start(t, cfg)
	return &env{url: url, pool: pool, srv: srv, client: newClient(url, pool)}
}

// newClient returns a client with the default test credential and fast
// retries.
func newClient(url string, pool *x509.CertPool, optFns ...func(*kms.Options)) *kms.Client {
	opts := append([]func(*kms.Options){kmssimtest.FastRetries}, optFns...)
	return kmssimtest.NewClient(url, pool, kmssimtest.AccessKeyID, kmssimtest.SecretAccessKey, opts...)
}

// noRetries makes the client try each request once.
func noRetries(o *kms.Options) { o.RetryMaxAttempts = 1 }

// createKey creates a key through the API and returns its ARN.
func (e *env) createKey(t testing.TB, policy string) string {
	t.Helper()
	in := &kms.CreateKeyInput{Description: aws.String("test key")}
	if policy != "" {
		in.Policy = aws.String(policy)
		in.BypassPolicyLockoutSafetyCheck = true
	}
	out, err := e.client.CreateKey(context.Background(), in)
	require.NoError(t, err)
	return aws.ToString(out.KeyMetadata.Arn)
}

// apiCode returns the API error code of err, or "" if it has none.
func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// apiMessage returns the API error message of err, or "".
func apiMessage(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorMessage()
	}
	return ""
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Test images standing in for two builds of the enclave binary.
var (
	imageV1 = []byte("\x7fELF nitrosigner enclave v1")
	imageV2 = []byte("\x7fELF nitrosigner enclave v2")
)

// newNSM starts an NSM simulator for image (debug mode when image is nil)
// whose root lives in stateDir (a fresh one when empty).
func newNSM(t testing.TB, image []byte, stateDir string) *nsmsim.Simulator {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	sim, err := nsmsim.New(nsmsim.Config{
		Image:      image,
		Debug:      image == nil,
		StateDir:   stateDir,
		DevicePath: filepath.Join(t.TempDir(), "no-nsm"),
	})
	require.NoError(t, err)
	t.Cleanup(func() { sim.Close() })
	return sim
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// recipientKey returns the enclave's RSA-2048 key (generated once).
func recipientKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

// attestation returns a document from sim carrying pub (DER SPKI).
func attestation(t testing.TB, sim *nsmsim.Simulator, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	doc, err := sim.Attest(context.Background(), nil, nil, der)
	require.NoError(t, err)
	return doc
}

// allowPolicy is a key policy allowing principal the given actions (and
// nothing else), with optional extra statements.
func allowPolicy(principal, action string, extra ...string) string {
	stmts := append([]string{fmt.Sprintf(`{"Sid": "Allow", "Effect": "Allow", "Principal": {"AWS": %q}, "Action": %q, "Resource": "*"}`, principal, action)}, extra...)
	return `{"Version": "2012-10-17", "Statement": [` + strings.Join(stmts, ", ") + `]}`
}

// raw sends a request signed with the default test credential, built by
// hand rather than by the SDK client; tamper, if set, changes it after
// signing. It returns the status, headers and body of the answer.
func (e *env) raw(t *testing.T, op string, body []byte, tamper func(*http.Request)) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+"/", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: kmssimtest.AccessKeyID, SecretAccessKey: kmssimtest.SecretAccessKey}
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kms", kmssimtest.Region, time.Now()))
	if tamper != nil {
		tamper(req)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, out
}
