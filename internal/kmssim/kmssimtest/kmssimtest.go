//go:build !nosim

// Package kmssimtest starts a KMS simulator ([kmssim.Server]) for a test and
// builds SDK clients for it. It imports package testing, so only tests may
// import it.
package kmssimtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
)

// The credential [Start] configures when the Config has none. Test values
// only.
const (
	AccessKeyID     = "AKIDKMSSIMTEST000001"
	SecretAccessKey = "kmssim-test-secret-not-a-real-key"
	Account         = "111122223333"
	Region          = "us-east-1"
	// PrincipalARN is the identity of the default credential: a role in
	// Account, so KMS's default key policy admits it.
	PrincipalARN = "arn:aws:iam::111122223333:role/kmssim-test"
)

// Start creates a simulator from cfg, serves it on a random loopback port
// and stops it when the test ends. Zero fields get test defaults: StateDir
// a fresh t.TempDir(), Credentials {AccessKeyID: SecretAccessKey,
// PrincipalARN}, Account and Region as above, Logger the test log. It
// returns the endpoint URL (https://127.0.0.1:PORT), a pool trusting the
// simulator's CA, and the server.
func Start(t testing.TB, cfg kmssim.Config) (url string, pool *x509.CertPool, srv *kmssim.Server) {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.Credentials == nil {
		cfg.Credentials = map[string]kmssim.Credential{
			AccessKeyID: {Secret: SecretAccessKey, PrincipalARN: PrincipalARN},
		}
	}
	if cfg.Account == "" {
		cfg.Account = Account
	}
	if cfg.Region == "" {
		cfg.Region = Region
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t)
	}
	srv, err := kmssim.New(cfg)
	if err != nil {
		t.Fatalf("kmssimtest: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatalf("kmssimtest: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("kmssimtest: %v", err)
		}
		srv.Close()
	})
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CACertPEM()) {
		t.Fatalf("kmssimtest: simulator CA does not parse")
	}
	return "https://" + l.Addr().String(), pool, srv
}

// NewClient returns an unmodified SDK KMS client for the simulator at
// endpoint, trusting pool, signing with the given static credentials in
// [Region]. optFns adjust the options further (see [FastRetries]).
func NewClient(endpoint string, pool *x509.CertPool, accessKeyID, secret string, optFns ...func(*kms.Options)) *kms.Client {
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	})
	cfg := aws.Config{
		Region:      Region,
		Credentials: credentials.NewStaticCredentialsProvider(accessKeyID, secret, ""),
		HTTPClient:  httpClient,
	}
	opts := append([]func(*kms.Options){func(o *kms.Options) { o.BaseEndpoint = aws.String(endpoint) }}, optFns...)
	return kms.NewFromConfig(cfg, opts...)
}

// FastRetries keeps the SDK's standard retry policy (3 attempts, the
// standard retryable errors) but without backoff delays or the client-side
// retry quota, so fault tests run quickly.
func FastRetries(o *kms.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		so.RateLimiter = ratelimit.None
	})
}

// Logger returns a logger that writes to t.Log until the test ends and
// drops records afterwards (a server may still log while shutting down).
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, errors.New("test finished")
	}
	w.t.Log(string(p))
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
