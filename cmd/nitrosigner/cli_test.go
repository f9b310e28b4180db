package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/parent"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func TestErrors(t *testing.T) {
	digest := strings.Repeat("00", 32)
	bigMessageFile := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(bigMessageFile, make([]byte, 64<<10+1), 0o600))
	tests := []struct {
		name       string
		args       []string // after --addr
		wantCode   int
		wantStderr []string // substrings
		wantCalls  int
	}{
		{"get unknown key", []string{"keys", "get", "key_nope"}, 1,
			[]string{"nitrosigner: NotFound: key not found\n"}, 1},
		{"sign unknown key", []string{"sign", "--key", "key_nope", "--digest", digest}, 1,
			[]string{"nitrosigner: NotFound: key not found"}, 1},
		{"sign disabled key", []string{"sign", "--key", keyDisabled, "--message", "00"}, 1,
			[]string{"nitrosigner: FailedPrecondition: key is disabled"}, 1},
		{"server rejects payload", []string{"sign", "--key", keyEd, "--digest", digest}, 1,
			[]string{"nitrosigner: InvalidArgument: digest: needs a secp256k1 key"}, 1},
		{"json error prints nothing on stdout", []string{"--json", "keys", "get", "key_nope"}, 1,
			[]string{"NotFound"}, 1},

		{"bad hex digest", []string{"sign", "--key", keySecp, "--digest", "zz"}, 2,
			[]string{"--digest is not valid hex", "usage: nitrosigner"}, 0},
		{"odd hex message", []string{"sign", "--key", keyEd, "--message", "0xabc"}, 2,
			[]string{"--message is not valid hex: odd length"}, 0},
		{"empty digest", []string{"sign", "--key", keySecp, "--digest", "0x"}, 2,
			[]string{"--digest is empty"}, 0},
		{"digest and message", []string{"sign", "--key", keySecp, "--digest", digest, "--message", "00"}, 2,
			[]string{"exactly one of --digest, --message and --message-file"}, 0},
		{"message and message file", []string{"sign", "--key", keyEd, "--message", "00", "--message-file", "-"}, 2,
			[]string{"exactly one of --digest, --message and --message-file"}, 0},
		{"neither digest nor message", []string{"sign", "--key", keySecp}, 2,
			[]string{"exactly one of --digest, --message and --message-file"}, 0},
		{"missing message file", []string{"sign", "--key", keyEd, "--message-file", "/nonexistent/msg"}, 2,
			[]string{"--message-file:", "no such file"}, 0},
		{"empty message file name", []string{"sign", "--key", keyEd, "--message-file", ""}, 2,
			[]string{"--message-file is required"}, 0},
		{"message file over the limit", []string{"sign", "--key", keyEd, "--message-file", bigMessageFile}, 2,
			[]string{"--message-file: " + bigMessageFile + " is larger than 65536 bytes"}, 0},
		{"message file is a directory", []string{"sign", "--key", keyEd, "--message-file", os.TempDir()}, 2,
			[]string{"--message-file: read " + os.TempDir() + ": is a directory\n"}, 0},
		{"key id not utf-8", []string{"sign", "--key", "key_\xff", "--digest", digest}, 2,
			[]string{"nitrosigner: InvalidArgument: key_id: not valid UTF-8 text\n"}, 0},
		{"get key id not utf-8", []string{"keys", "get", "key_\xfe"}, 2,
			[]string{"key_id: not valid UTF-8 text"}, 0},
		{"label not utf-8", []string{"keys", "create", "--alg", "ed25519", "--label", "a=\xff"}, 2,
			[]string{"labels: not valid UTF-8 text"}, 0},
		{"label name not utf-8", []string{"keys", "create", "--alg", "ed25519", "--label", "\xff=a"}, 2,
			[]string{"labels: not valid UTF-8 text"}, 0},
		{"sign without key", []string{"sign", "--digest", digest}, 2, []string{"--key is required"}, 0},
		{"sign extra argument", []string{"sign", "--key", keySecp, "--digest", digest, "x"}, 2,
			[]string{`unexpected argument "x"`}, 0},
		{"unknown sign flag", []string{"sign", "--frob"}, 2,
			[]string{"flag provided but not defined: -frob", "usage: nitrosigner [global flags] sign"}, 0},

		{"no command", nil, 2, []string{"no command given", "usage: nitrosigner"}, 0},
		{"unknown command", []string{"frob"}, 2, []string{`unknown command "frob"`, "usage: nitrosigner"}, 0},
		{"keys without subcommand", []string{"keys"}, 2, []string{"keys: no subcommand"}, 0},
		{"keys unknown subcommand", []string{"keys", "frobnicate"}, 2, []string{`keys: unknown subcommand "frobnicate"`}, 0},
		{"create without alg", []string{"keys", "create"}, 2, []string{"--alg: required"}, 0},
		{"create bad alg", []string{"keys", "create", "--alg", "rsa"}, 2, []string{`unknown algorithm "rsa"`}, 0},
		{"create bad label", []string{"keys", "create", "--alg", "ed25519", "--label", "novalue"}, 2,
			[]string{"want key=value"}, 0},
		{"create duplicate label", []string{"keys", "create", "--alg", "ed25519", "--label", "a=1", "--label", "a=2"}, 2,
			[]string{`label "a" given twice`}, 0},
		{"get without id", []string{"keys", "get"}, 2, []string{"want exactly one key id"}, 0},
		{"get two ids", []string{"keys", "get", "a", "b"}, 2, []string{"want exactly one key id"}, 0},
		{"list negative page size", []string{"keys", "list", "--page-size", "-1"}, 2, []string{"--page-size"}, 0},
		{"list page size over the limit", []string{"keys", "list", "--page-size", "1001"}, 2,
			[]string{"--page-size must be between 0 and 1000"}, 0},
		{"attest bad nonce", []string{"attest", "--nonce", "xyz"}, 2, []string{"--nonce is not valid hex"}, 0},
		{"attest pcrs without verify", []string{"attest", "--pcrs", "f.json"}, 2, []string{"need --verify"}, 0},
		{"attest missing root file", []string{"attest", "--verify", "--root", "/nonexistent/root.pem"}, 2,
			[]string{"--root:", "no such file"}, 0},

		{"bad timeout", []string{"--timeout", "0s", "keys", "list"}, 2, []string{"--timeout must be positive"}, 0},
		{"cert without key", []string{"--tls-ca", "ca.pem", "--tls-cert", "c.pem", "keys", "list"}, 2,
			[]string{"--tls-cert and --tls-key go together"}, 0},
		{"server name without ca", []string{"--tls-server-name", "x", "keys", "list"}, 2,
			[]string{"need --tls-ca"}, 0},
		{"missing ca file", []string{"--tls-ca", "/nonexistent/ca.pem", "keys", "list"}, 2,
			[]string{"--tls-ca:"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeSigner()
			addr := startServer(t, fake)
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr}, tt.args...)...)
			assert.Equal(t, tt.wantCode, code)
			assert.Empty(t, stdout)
			assert.True(t, strings.HasPrefix(stderr, "nitrosigner: "), "stderr %q", stderr)
			if tt.wantCode == 2 { // refused before any call, with the code a server would give
				assert.True(t, strings.HasPrefix(stderr, "nitrosigner: InvalidArgument: "), "stderr %q", stderr)
			}
			for _, s := range tt.wantStderr {
				assert.Contains(t, stderr, s)
			}
			assert.Len(t, fake.Calls(), tt.wantCalls)
		})
	}
}

func TestBadAddr(t *testing.T) {
	for _, addr := range []string{"http://x:1", "unix://relative", "nohost", ""} {
		t.Run(addr, func(t *testing.T) {
			code, _, stderr := runCLI(t, "--addr", addr, "keys", "list")
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, "--addr:")
		})
	}
}

func TestParseAddr(t *testing.T) {
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{addr: "127.0.0.1:50051", want: "127.0.0.1:50051"},
		{addr: "localhost:1", want: "localhost:1"},
		{addr: "tcp://10.0.0.1:443", want: "10.0.0.1:443"},
		{addr: "tcp://[::1]:50051", want: "[::1]:50051"},
		{addr: "unix:///run/nitrosigner.sock", want: "unix:///run/nitrosigner.sock"},
		{addr: "unix://run/x.sock", wantErr: true},
		{addr: "vsock://3:5000", wantErr: true},
		{addr: "tcp://host", wantErr: true},
		{addr: "host:", wantErr: true},
		{addr: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := parseAddr(tt.addr)
			if tt.wantErr {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"global", []string{"--help"}, []string{"usage: nitrosigner", "-addr", "-json", "-timeout", "-tls-ca", "-tls-cert", "-tls-key", "-tls-server-name", "keys create"}},
		{"help command", []string{"help"}, []string{"usage: nitrosigner", "-addr", "attest"}},
		{"keys", []string{"keys", "--help"}, []string{"keys create|list|get", "create", "list", "get"}},
		{"keys create", []string{"keys", "create", "--help"}, []string{"keys create --alg", "-alg", "-label"}},
		{"keys list", []string{"keys", "list", "-h"}, []string{"keys list", "-page-size"}},
		{"keys get", []string{"keys", "get", "--help"}, []string{"keys get ID"}},
		{"sign", []string{"sign", "--help"}, []string{"sign --key", "-key", "-digest", "-message"}},
		{"attest", []string{"attest", "-help"}, []string{"attest [--nonce", "-nonce", "-verify", "-root", "-pcrs", "-allow-debug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			assert.Equal(t, 0, code)
			assert.Empty(t, stderr)
			for _, s := range tt.want {
				assert.Contains(t, stdout, s)
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	fake := newFakeSigner()
	fake.OnCall = func(ctx context.Context, method string) error {
		<-ctx.Done()
		return ctx.Err()
	}
	addr := startServer(t, fake)
	dir := t.TempDir()

	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"deadline", []string{"--addr", addr, "--timeout", "100ms", "keys", "get", keySecp}, "nitrosigner: DeadlineExceeded: no answer within the time allowed (--timeout)"},
		{"no server", []string{"--addr", "unix://" + filepath.Join(dir, "none"), "keys", "list"}, "nitrosigner: Unavailable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			assert.Equal(t, 1, code)
			assert.Empty(t, stdout)
			assert.True(t, strings.HasPrefix(stderr, tt.wantStderr), "stderr %q", stderr)
		})
	}
}

func TestRepeatedPageToken(t *testing.T) {
	addr := startServer(t, &loopingLister{})
	code, stdout, stderr := runCLI(t, "--addr", addr, "keys", "list")
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, `server repeated page token "same"`)
}

// loopingLister always answers with the same next_page_token.
type loopingLister struct {
	signerv1.UnimplementedSignerServiceServer
}

func (*loopingLister) ListKeys(context.Context, *signerv1.ListKeysRequest) (*signerv1.ListKeysResponse, error) {
	return &signerv1.ListKeysResponse{NextPageToken: "same"}, nil
}

func TestServerMessageIsSanitized(t *testing.T) {
	fake := newFakeSigner()
	fake.OnCall = func(context.Context, string) error {
		return status.Error(codes.Internal, "bad\x1b[2Jthing")
	}
	addr := startServer(t, fake)
	code, _, stderr := runCLI(t, "--addr", addr, "keys", "list")
	assert.Equal(t, 1, code)
	assert.Equal(t, "nitrosigner: Internal: \"bad\\x1b[2Jthing\"\n", stderr)
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientCAs:    pki.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})))
	signerv1.RegisterSignerServiceServer(s, newFakeSigner())
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	addr := "tcp://" + lis.Addr().String()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"mutual tls", []string{"--tls-ca", pki.caFile, "--tls-cert", pki.certFile, "--tls-key", pki.keyFile, "--tls-server-name", "signer.test"}, 0, keySecp},
		{"server name from addr", []string{"--tls-ca", pki.caFile, "--tls-cert", pki.certFile, "--tls-key", pki.keyFile}, 0, keySecp},
		{"no client certificate", []string{"--tls-ca", pki.caFile, "--tls-server-name", "signer.test"}, 1, "nitrosigner: Unavailable: "},
		{"wrong server name", []string{"--tls-ca", pki.caFile, "--tls-cert", pki.certFile, "--tls-key", pki.keyFile, "--tls-server-name", "other.test"}, 1, "nitrosigner: Unavailable: "},
		{"plaintext to tls server", nil, 1, "nitrosigner: Unavailable: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--addr", addr, "--timeout", "5s"}, tt.args...)
			code, stdout, stderr := runCLI(t, append(args, "keys", "get", keySecp)...)
			assert.Equal(t, tt.wantCode, code)
			assert.Contains(t, stdout+stderr, tt.want)
		})
	}
}

type testPKI struct {
	pool                      *x509.CertPool
	server                    tls.Certificate
	caFile, certFile, keyFile string
}

// newTestPKI makes a CA, a server certificate for signer.test and
// 127.0.0.1, and a client certificate, and writes the client's files to dir.
func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	issue := func(serial int64, usage x509.ExtKeyUsage, names []string, ips []net.IP) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "leaf"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     names,
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		pk, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	}

	srvCert, srvKey := issue(2, x509.ExtKeyUsageServerAuth, []string{"signer.test"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	server, err := tls.X509KeyPair(srvCert, srvKey)
	require.NoError(t, err)
	cliCert, cliKey := issue(3, x509.ExtKeyUsageClientAuth, nil, nil)

	p := testPKI{
		pool:     x509.NewCertPool(),
		server:   server,
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "client.pem"),
		keyFile:  filepath.Join(dir, "client-key.pem"),
	}
	p.pool.AddCert(ca)
	require.NoError(t, os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))
	require.NoError(t, os.WriteFile(p.certFile, cliCert, 0o644))
	require.NoError(t, os.WriteFile(p.keyFile, cliKey, 0o600))
	return p
}

func TestHoistGlobalFlags(t *testing.T) {
	fs := newFlagSet("g")
	fs.Bool("json", false, "")
	fs.String("addr", "", "")
	fs.Duration("timeout", 0, "")
	tests := []struct {
		in, want []string
	}{
		{[]string{"keys", "get", "ID", "--json"}, []string{"--json", "keys", "get", "ID"}},
		{[]string{"--addr", "x:1", "keys", "list"}, []string{"--addr", "x:1", "keys", "list"}},
		{[]string{"keys", "create", "--alg", "ed25519", "--addr", "x:1", "-json"}, []string{"--addr", "x:1", "-json", "keys", "create", "--alg", "ed25519"}},
		{[]string{"sign", "--timeout=3s", "--key", "k"}, []string{"--timeout=3s", "sign", "--key", "k"}},
		{[]string{"sign", "--help"}, []string{"sign", "--help"}},
		{[]string{"sign", "--", "--json"}, []string{"sign", "--", "--json"}},
		{[]string{"sign", "-"}, []string{"sign", "-"}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, hoistGlobalFlags(fs, tt.in), tt.in)
	}
}

// TestErrorShowsRequestID: a failed call's message quotes the request id the
// server answered with (the parent's log lines carry it), and a server that
// sends none gets the plain message.
func TestErrorShowsRequestID(t *testing.T) {
	withID := grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", "req-7f3a"))
		return h(ctx, req)
	})
	for _, tt := range []struct {
		name string
		opts []grpc.ServerOption
		want string
	}{
		{"id sent", []grpc.ServerOption{withID}, "nitrosigner: NotFound: key not found (request id req-7f3a)\n"},
		{"no id", nil, "nitrosigner: NotFound: key not found\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := startServer(t, newFakeSigner(), tt.opts...)
			code, _, stderr := runCLI(t, "--addr", addr, "keys", "get", "key_00000000000000000000000000000000")
			assert.Equal(t, 1, code)
			assert.Equal(t, tt.want, stderr)
		})
	}
}

// The CLI waits longer than the parent does by default, so that the
// parent's DeadlineExceeded (with its request id) reaches the user.
func TestDefaultTimeoutOutlastsTheParent(t *testing.T) {
	assert.Greater(t, defaultTimeout, parent.DefaultCallTimeout)
}
