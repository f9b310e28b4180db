package parent_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/internal/link"
	"github.com/nitrosigner/nitrosigner/parent"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     parent.Config
		wantErr string
	}{
		{"loopback plaintext", parent.Config{Listen: "tcp://127.0.0.1:0", Enclave: "unix:///tmp/e.sock"}, ""},
		{"ipv6 loopback plaintext", parent.Config{Listen: "tcp://[::1]:0", Enclave: "unix:///tmp/e.sock"}, ""},
		{"unix plaintext", parent.Config{Listen: "unix:///tmp/p.sock", Enclave: "vsock://16:5000"}, ""},
		{"public plaintext refused", parent.Config{Listen: "tcp://0.0.0.0:50051", Enclave: "vsock://16:5000"}, "refusing plaintext"},
		{"lan plaintext refused", parent.Config{Listen: "tcp://10.0.0.5:50051", Enclave: "vsock://16:5000"}, "refusing plaintext"},
		{"public with tls", parent.Config{Listen: "tcp://0.0.0.0:50051", Enclave: "vsock://16:5000", TLSCertFile: "c", TLSKeyFile: "k"}, ""},
		{"cert without key", parent.Config{Enclave: "vsock://16:5000", TLSCertFile: "c"}, "both"},
		{"client ca without tls", parent.Config{Enclave: "vsock://16:5000", ClientCAFile: "ca"}, "mTLS"},
		{"no enclave", parent.Config{}, "Enclave address is required"},
		{"bad enclave", parent.Config{Enclave: "ftp://x"}, "Enclave"},
		{"vsock listen", parent.Config{Listen: "vsock://3:1", Enclave: "vsock://16:5000"}, "cannot serve"},
		{"health interval too short", parent.Config{Enclave: "vsock://16:5000", HealthInterval: 10 * time.Millisecond}, "below the minimum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

type certs struct {
	dir                            string
	caFile, serverCert, serverKey  string
	clientCert, clientKey, otherCA string
	caPool                         *x509.CertPool
	clientPair, strangerPair       tls.Certificate
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// issue makes a certificate signed by parent (self-signed when parent is nil).
func issue(t *testing.T, cn string, isCA bool, parentCert *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		DNSNames:              []string{cn},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if parentCert == nil {
		parentCert, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key, der
}

func makeCerts(t *testing.T) *certs {
	t.Helper()
	c := &certs{dir: t.TempDir()}
	ca, caKey, caDER := issue(t, "test-ca", true, nil, nil)
	other, otherKey, otherDER := issue(t, "other-ca", true, nil, nil)
	c.caFile = filepath.Join(c.dir, "ca.pem")
	writePEM(t, c.caFile, "CERTIFICATE", caDER)
	c.otherCA = filepath.Join(c.dir, "other.pem")
	writePEM(t, c.otherCA, "CERTIFICATE", otherDER)
	c.caPool = x509.NewCertPool()
	c.caPool.AddCert(ca)

	pair := func(name string, signer *x509.Certificate, signerKey *ecdsa.PrivateKey) (string, string, tls.Certificate) {
		_, key, der := issue(t, name, false, signer, signerKey)
		kd, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		cf, kf := filepath.Join(c.dir, name+".pem"), filepath.Join(c.dir, name+"-key.pem")
		writePEM(t, cf, "CERTIFICATE", der)
		writePEM(t, kf, "PRIVATE KEY", kd)
		p, err := tls.LoadX509KeyPair(cf, kf)
		require.NoError(t, err)
		return cf, kf, p
	}
	c.serverCert, c.serverKey, _ = pair("localhost", ca, caKey)
	c.clientCert, c.clientKey, c.clientPair = pair("client", ca, caKey)
	_, _, c.strangerPair = pair("stranger", other, otherKey)
	return c
}

func startParent(t *testing.T, cfg parent.Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	cfg.Listen = "tcp://127.0.0.1:0"
	if cfg.Enclave == "" {
		cfg.Enclave = "unix:///nonexistent/enclave.sock"
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnListen = func(a net.Addr) { addrc <- a.String() }
	go func() { done <- parent.Run(ctx, cfg) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-done:
		t.Fatalf("parent exited: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return addr
}

func healthCheck(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestMutualTLS(t *testing.T) {
	c := makeCerts(t)
	addr := startParent(t, parent.Config{TLSCertFile: c.serverCert, TLSKeyFile: c.serverKey, ClientCAFile: c.caFile})

	tests := []struct {
		name  string
		creds credentials.TransportCredentials
		ok    bool
	}{
		{"client cert from the CA", credentials.NewTLS(&tls.Config{RootCAs: c.caPool, ServerName: "localhost", Certificates: []tls.Certificate{c.clientPair}}), true},
		{"no client cert", credentials.NewTLS(&tls.Config{RootCAs: c.caPool, ServerName: "localhost"}), false},
		{"client cert from another CA", credentials.NewTLS(&tls.Config{RootCAs: c.caPool, ServerName: "localhost", Certificates: []tls.Certificate{c.strangerPair}}), false},
		{"plaintext", insecure.NewCredentials(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := healthCheck(t, addr, tt.creds)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, codes.Unavailable, status.Code(err), err)
		})
	}
}

func TestServerTLS(t *testing.T) {
	c := makeCerts(t)
	addr := startParent(t, parent.Config{TLSCertFile: c.serverCert, TLSKeyFile: c.serverKey})
	require.NoError(t, healthCheck(t, addr, credentials.NewTLS(&tls.Config{RootCAs: c.caPool, ServerName: "localhost"})))
	require.Error(t, healthCheck(t, addr, insecure.NewCredentials()))
}

func TestBadTLSFiles(t *testing.T) {
	c := makeCerts(t)
	cfg := parent.Config{Listen: "tcp://127.0.0.1:0", Enclave: "unix:///x.sock", TLSCertFile: c.serverCert, TLSKeyFile: c.clientKey}
	err := parent.Run(context.Background(), cfg)
	require.ErrorContains(t, err, "TLS key pair")
}

// TestHealthFollowsTheLink: the health status turns NOT_SERVING as soon as
// the enclave's connection is lost and SERVING as soon as one is made again,
// without waiting for the periodic ping (an hour here).
func TestHealthFollowsTheLink(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "enclave.sock")
	serve := func() (stop func()) {
		l, err := net.Listen("unix", sock)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() {
			served <- link.Serve(ctx, l, link.ServerConfig{
				Handler: func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
					return resp, nil // empty answers: Ping, GetStats, Sign
				},
			})
		}()
		return sync.OnceFunc(func() { cancel(); <-served })
	}
	stop := serve()
	t.Cleanup(func() { stop() })
	addr := startParent(t, parent.Config{Enclave: "unix://" + sock, Store: "dir://" + t.TempDir(), HealthInterval: time.Hour})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	serving := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: signerv1.SignerService_ServiceDesc.ServiceName})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return r.GetStatus()
	}
	is := func(want healthpb.HealthCheckResponse_ServingStatus, what string) {
		t.Helper()
		require.Eventually(t, func() bool { return serving() == want }, 2*time.Second, 5*time.Millisecond, what)
	}
	is(healthpb.HealthCheckResponse_SERVING, "the first ping")

	stop()
	is(healthpb.HealthCheckResponse_NOT_SERVING, "after the enclave went away")

	stop = serve()
	// Any call reconnects; the new connection triggers a ping.
	client := signerv1.NewSignerServiceClient(conn)
	require.Eventually(t, func() bool {
		_, err := client.Sign(t.Context(), &signerv1.SignRequest{KeyId: "key_00000000000000000000000000000000",
			Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}})
		return status.Code(err) != codes.Unavailable
	}, 5*time.Second, 20*time.Millisecond)
	is(healthpb.HealthCheckResponse_SERVING, "after the enclave came back")
}

// serveFakeEnclave serves h as an enclave on a unix socket until the test
// ends and returns the socket's path. h must return when its context ends.
func serveFakeEnclave(t *testing.T, h link.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "enclave.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- link.Serve(ctx, l, link.ServerConfig{Handler: h}) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return sock
}

// dialSigner returns a client of the parent at addr, closed when the test
// ends.
func dialSigner(t *testing.T, addr string) signerv1.SignerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return signerv1.NewSignerServiceClient(conn)
}

// TestStalledEnclave: an enclave that stops answering without closing the
// connection (hung, or stopped with SIGSTOP) is found out by the health
// ping, and the calls waiting on it fail with Unavailable, not at their
// deadlines. Once it answers again, calls get through without a restart.
func TestStalledEnclave(t *testing.T) {
	var stalled atomic.Pointer[chan struct{}] // while set, every request waits for it to close
	sock := serveFakeEnclave(t, func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
		if c := stalled.Load(); c != nil {
			select {
			case <-*c:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return resp, nil // empty answers: Ping, GetStats, Sign
	})
	stall := func() func() {
		c := make(chan struct{})
		stalled.Store(&c)
		return sync.OnceFunc(func() { stalled.Store(nil); close(c) })
	}
	client := dialSigner(t, startParent(t, parent.Config{Enclave: "unix://" + sock, Store: "dir://" + t.TempDir(),
		HealthInterval: 100 * time.Millisecond, CallTimeout: time.Minute}))
	req := &signerv1.SignRequest{KeyId: "key_00000000000000000000000000000000", Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}
	callCtx, cancelCall := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancelCall()
	_, err := client.Sign(callCtx, req)
	require.NotEqual(t, codes.Unavailable, status.Code(err), "a responsive enclave: %v", err)

	unstall := stall()
	defer unstall()
	_, err = client.Sign(callCtx, req)
	require.Equal(t, codes.Unavailable, status.Code(err), "a call waiting on a stalled enclave: %v", err)

	unstall()
	require.Eventually(t, func() bool {
		_, err := client.Sign(callCtx, req)
		return status.Code(err) != codes.Unavailable
	}, 10*time.Second, 20*time.Millisecond, "calls get through once the enclave answers again")
}

// TestBusyEnclaveIsNotReset: pings that go unanswered while other answers
// keep arriving mean a busy enclave, not a stalled one; the calls in flight
// are left to finish.
func TestBusyEnclaveIsNotReset(t *testing.T) {
	pings := make(chan struct{}, 100)
	slowPings, releaseLong := make(chan struct{}), make(chan struct{})
	var slow atomic.Bool
	sock := serveFakeEnclave(t, func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
		var wait chan struct{}
		switch {
		case method == uint16(enclavev1.Method_METHOD_PING) && slow.Load():
			pings <- struct{}{}
			wait = slowPings
		case method == uint16(enclavev1.Method_METHOD_SIGN) && bytes.Contains(req, []byte("long")):
			wait = releaseLong
		}
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return resp, nil
	})
	client := dialSigner(t, startParent(t, parent.Config{Enclave: "unix://" + sock, Store: "dir://" + t.TempDir(),
		HealthInterval: 200 * time.Millisecond, CallTimeout: time.Minute}))
	sign := func(ctx context.Context, id string) error {
		_, err := client.Sign(ctx, &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}})
		return err
	}
	callCtx, cancelCall := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelCall()
	require.NotEqual(t, codes.Unavailable, status.Code(sign(callCtx, "key_00000000000000000000000000000000")))

	slow.Store(true)
	long := make(chan error, 1)
	go func() { long <- sign(callCtx, "key_long") }()
	busy, stopBusy := context.WithCancel(callCtx)
	busyDone := make(chan struct{})
	go func() { // answers keep arriving
		defer close(busyDone)
		for busy.Err() == nil {
			_ = sign(busy, "key_00000000000000000000000000000000")
		}
	}()
	for range 3 { // two pings have gone unanswered for their whole interval
		<-pings
	}
	stopBusy()
	<-busyDone
	close(releaseLong)
	err := <-long
	assert.NotEqual(t, codes.Unavailable, status.Code(err), "the call in flight was not failed: %v", err)
}

// TestCallTimeout checks that --call-timeout bounds a forwarded call even
// when the client allows it longer, or sets no deadline.
func TestCallTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "enclave.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	hang := make(chan struct{})
	go func() {
		served <- link.Serve(ctx, l, link.ServerConfig{
			Handler: func(ctx context.Context, method uint16, req, resp []byte) ([]byte, error) {
				if method != uint16(enclavev1.Method_METHOD_SIGN) {
					return resp, nil // empty answers for the parent's probes
				}
				// A signer that hangs and ignores its deadline: only the
				// parent's own bound can end the call.
				<-hang
				return nil, ctx.Err()
			},
		})
	}()
	t.Cleanup(func() {
		close(hang)
		cancel()
		<-served
	})
	const timeout = 300 * time.Millisecond
	addr := startParent(t, parent.Config{Enclave: "unix://" + sock, Store: "dir://" + t.TempDir(), CallTimeout: timeout})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := signerv1.NewSignerServiceClient(conn)
	req := &signerv1.SignRequest{KeyId: "key_00000000000000000000000000000000", Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}

	for _, clientDeadline := range []time.Duration{0, 10 * timeout} {
		// Without a working bound the call would hang: end it as
		// Canceled after 5 s instead, which fails the test.
		callCtx, cancelCall := context.WithCancel(context.Background())
		guard := time.AfterFunc(5*time.Second, cancelCall)
		defer guard.Stop()
		defer cancelCall()
		if clientDeadline > 0 {
			var cancelDeadline context.CancelFunc
			callCtx, cancelDeadline = context.WithTimeout(callCtx, clientDeadline)
			defer cancelDeadline()
		}
		start := time.Now()
		_, err := client.Sign(callCtx, req)
		elapsed := time.Since(start)
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "client deadline %v: %v", clientDeadline, err)
		assert.GreaterOrEqual(t, elapsed, timeout, "client deadline %v", clientDeadline)
		assert.Less(t, elapsed, 5*timeout, "client deadline %v", clientDeadline)
	}
}
