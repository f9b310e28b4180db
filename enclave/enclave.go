// Package enclave is the composition root of the code that runs inside the
// Nitro Enclave: it makes the enclave's boot-time keys, builds the keyring
// and the request handler, and serves the parent-to-enclave link.
//
// The enclave trusts nothing the parent sends. Private keys exist only in
// the keyring's memory. The choice between the real NSM and the simulator is
// made by the caller (enclave/cmd/enclave), never here: Config.Attester is
// whichever one it built.
package enclave

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring"
	"github.com/nitrosigner/nitrosigner/enclave/internal/kms"
	"github.com/nitrosigner/nitrosigner/enclave/internal/nsm"
	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	"github.com/nitrosigner/nitrosigner/internal/link"
	"github.com/nitrosigner/nitrosigner/internal/transport"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// DefaultListen is where the enclave serves the parent in production.
const DefaultListen = "vsock://any:5000"

// Attester produces NSM attestation documents; nil arguments are omitted.
// Use [NewNSMAttester], so that the production NSM adapter runs whether the
// session is the real device or the simulator.
type Attester interface {
	Attest(ctx context.Context, nonce, userData, publicKey []byte) ([]byte, error)
}

// NSMSession is a request-level NSM session: *nsm.Session of
// github.com/hf/nsm over /dev/nsm, or the simulator (internal/nsmsim).
type NSMSession interface {
	Send(req request.Request) (response.Response, error)
	Close() error
}

// NewNSMAttester wraps s in the enclave's NSM adapter (the same code in
// production and under the simulator). Closing the attester closes s.
func NewNSMAttester(s NSMSession) *nsm.Device {
	return nsm.New(s)
}

// Config configures [Run].
type Config struct {
	// Listen is the transport address the parent connects to, e.g.
	// "vsock://any:5000" or "unix:///run/enclave.sock". Default
	// DefaultListen.
	Listen string
	// Attester makes attestation documents. Required. Documents carry the
	// enclave's identity key (user_data) and RSA key (public_key).
	Attester Attester
	// Version is reported to the parent by Ping.
	Version string
	// MaxFrame bounds one link frame; zero means the link's default (4 MiB).
	MaxFrame int
	// Logger receives the enclave's logs. On AWS they reach an operator only
	// in debug mode, so nothing an operator needs may exist only here.
	// Default slog.Default(). Lines about a call get its "request_id".
	Logger *slog.Logger
	// OnListen, if set, is called with the listener's address once the
	// enclave accepts connections (used by tests and local tooling).
	OnListen func(net.Addr)

	// Region is the AWS region of KMS. Required.
	Region string
	// KMSEndpoint is the KMS URL (TLS server name and SigV4 host; never
	// resolved). Default https://kms.REGION.amazonaws.com.
	KMSEndpoint string
	// KMSDial is the transport address of the byte pipe to KMS. Default
	// DefaultKMSDial (the parent's forwarder or AWS's vsock-proxy).
	KMSDial string
	// KMSKeys are the KMS key ARNs the enclave trusts; the first seals new
	// KEKs. They are part of the measured image (its command line), so the
	// parent cannot make the enclave use a KMS key it controls. Required.
	KMSKeys []string
	// KMSRoots verifies KMS's TLS certificate. Default: the public roots
	// compiled into the binary. Simulator builds add kmssim's CA.
	KMSRoots *x509.CertPool
	// KEKMaxKeys and KEKMaxAge start a new KEK after this many keys or this
	// age; zero means the keyring's defaults.
	KEKMaxKeys int
	KEKMaxAge  time.Duration
	// MaxKeys bounds the cache of opened keys; zero means the default.
	MaxKeys int
	// YieldCPU makes the link's workers yield their thread's CPU after
	// each request (link.ServerConfig.YieldCPU), and a batch of signatures
	// yield it between its signatures (server.Config.Pause). Set it where
	// the enclave shares CPUs with the parent and its clients, as the
	// simulator does on one host; in a Nitro Enclave the vCPUs are the
	// enclave's own.
	YieldCPU bool
	// NoBatching turns off the combining of concurrent secp256k1 ECDSA
	// signatures into batches (server.Config.NoBatching); for measurements.
	NoBatching bool
}

// inlineSignSize is the largest Sign request handled on the link's reader:
// a key id and a 32-byte digest or a short message fit well within it.
const inlineSignSize = 256

// DefaultKMSDial is where the enclave reaches KMS: the parent (CID 3),
// port 8000, by convention (nitro-reference.md section 4.1).
const DefaultKMSDial = "vsock://3:8000"

// Validate applies defaults and checks required fields.
func (c *Config) Validate() error {
	if c.Attester == nil {
		return errors.New("enclave: Attester is required")
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, err := transport.Parse(c.Listen); err != nil {
		return fmt.Errorf("enclave: Listen: %w", err)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Region == "" {
		return errors.New("enclave: Region is required")
	}
	if len(c.KMSKeys) == 0 {
		return errors.New("enclave: at least one KMS key ARN is required")
	}
	for _, a := range c.KMSKeys {
		if !keyring.ValidKeyARN(a) {
			return fmt.Errorf("enclave: KMS key %q is not a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)", a)
		}
	}
	if c.KMSDial == "" {
		c.KMSDial = DefaultKMSDial
	}
	if _, err := transport.Parse(c.KMSDial); err != nil {
		return fmt.Errorf("enclave: KMSDial: %w", err)
	}
	if c.KMSRoots == nil {
		roots, err := kms.PublicRoots()
		if err != nil {
			return err
		}
		c.KMSRoots = roots
	}
	return nil
}

// identity is the set of keys an enclave makes at boot. The private halves
// never leave the enclave.
type identity struct {
	signing ed25519.PrivateKey
	kms     *rsa.PrivateKey
	kmsSPKI []byte
	proto   *signerv1.EnclaveIdentity
}

func newIdentity() (*identity, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	// KMS encrypts to this key (attestation public_key); it must be RSA-2048.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("kms recipient key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kms recipient key: %w", err)
	}
	sum := sha256.Sum256(spki)
	return &identity{
		signing: priv,
		kms:     rk,
		kmsSPKI: spki,
		proto: &signerv1.EnclaveIdentity{
			Version:            1,
			IdentityPublicKey:  pub,
			KmsPublicKeySha256: sum[:],
		},
	}, nil
}

// Run serves the parent on cfg.Listen until ctx is cancelled. It returns nil
// after a clean shutdown; keys held in memory are zeroized on return.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	// A line logged while serving a call carries the request id the
	// parent logged for it (link.RequestID), so the two logs can be joined.
	cfg.Logger = slog.New(link.LogRequestIDs(cfg.Logger.Handler()))
	id, err := newIdentity()
	if err != nil {
		return err
	}
	defer clear(id.signing)
	userData, err := proto.MarshalOptions{Deterministic: true}.Marshal(id.proto)
	if err != nil {
		return fmt.Errorf("enclave: encode identity: %w", err)
	}
	dial, err := transport.Dialer(cfg.KMSDial)
	if err != nil {
		return fmt.Errorf("enclave: KMSDial: %w", err)
	}
	kc, err := kms.New(kms.Config{
		Region:   cfg.Region,
		Endpoint: cfg.KMSEndpoint,
		Dial:     func(ctx context.Context) (net.Conn, error) { return dial(ctx, "") },
		RootCAs:  cfg.KMSRoots,
		Attester: cfg.Attester,
		RSAKey:   id.kms,
		UserData: userData,
	})
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	defer kc.Close()
	kr, err := keyring.New(keyring.Config{
		KMS:        kc,
		KMSKeys:    cfg.KMSKeys,
		KEKMaxKeys: cfg.KEKMaxKeys,
		KEKMaxAge:  cfg.KEKMaxAge,
		MaxKeys:    cfg.MaxKeys,
		Logger:     cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	defer kr.Close()

	var pause func()
	if cfg.YieldCPU {
		// A batch of signatures holds its thread for a signature's time
		// per job; the parent and clients get their turn between jobs.
		pause = link.YieldCPU
	}
	srv, err := server.New(server.Config{
		Keyring:      kr,
		Credentials:  kc,
		Attester:     cfg.Attester,
		Identity:     id.proto,
		IdentityKey:  id.signing,
		KMSPublicKey: id.kmsSPKI,
		Version:      cfg.Version,
		Logger:       cfg.Logger,
		NoBatching:   cfg.NoBatching,
		Pause:        pause,
	})
	if err != nil {
		return err
	}
	l, err := transport.Listen(ctx, cfg.Listen)
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	cfg.Logger.InfoContext(ctx, "enclave serving", "addr", cfg.Listen, "version", cfg.Version,
		"kms_dial", cfg.KMSDial, "kms_keys", cfg.KMSKeys)
	if cfg.OnListen != nil {
		cfg.OnListen(l.Addr())
	}
	return link.Serve(ctx, l, link.ServerConfig{
		Handler: srv.Handle,
		// A small Sign request (a raw digest or short message, or the
		// smallest chain payloads) uses only a cached key: no I/O, no
		// waiting, bounded work. Larger payloads (PSBTs, typed data) go to
		// a worker so they never hold up the link's reader.
		Inline: func(m uint16, size int) bool {
			return m == uint16(enclavev1.Method_METHOD_SIGN) && size <= inlineSignSize
		},
		// A ping only answers; on the reader it is answered at once however
		// busy the workers are, so the parent can tell busy from stalled.
		Urgent:   func(m uint16) bool { return m == uint16(enclavev1.Method_METHOD_PING) },
		MaxFrame: cfg.MaxFrame,
		Logger:   cfg.Logger,
		YieldCPU: cfg.YieldCPU,
	})
}
