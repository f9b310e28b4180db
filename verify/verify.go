package verify

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Errors wrapped by [Verify], [Result.BindIdentity] and [Fetch]. Branch on
// them with [errors.Is].
var (
	// ErrMalformed: not a well-formed Nitro attestation document.
	ErrMalformed = attest.ErrMalformed
	// ErrUntrusted: the chain does not lead to a trusted root, or a
	// certificate is not valid at the verification time.
	ErrUntrusted = attest.ErrUntrusted
	// ErrUnknownRoot: an ErrUntrusted whose chain starts at a root that is
	// not trusted at all (e.g. the simulator's root checked against AWS's).
	ErrUnknownRoot = attest.ErrUnknownRoot
	// ErrBadSignature: the COSE signature does not verify.
	ErrBadSignature = attest.ErrBadSignature
	// ErrStale: the document is older than [Options.MaxAge] or too far in
	// the future.
	ErrStale = attest.ErrStale
	// ErrDebugMode: the enclave runs in debug mode and
	// [Options.AllowDebug] is false.
	ErrDebugMode = attest.ErrDebugMode
	// ErrPCRMismatch: a PCR in [Options.PCRs] is absent or differs.
	ErrPCRMismatch = attest.ErrPCRMismatch
	// ErrNonceMismatch: the document's nonce is absent or not the one
	// expected.
	ErrNonceMismatch = attest.ErrNonceMismatch
	// ErrIdentity: the document does not bind a valid EnclaveIdentity, or
	// the server claimed a different one.
	ErrIdentity = errors.New("verify: enclave identity not bound")
	// ErrRequest: [Fetch] or [FetchKey] could not get an answer from the
	// server; the gRPC error is wrapped too. Nothing was verified.
	ErrRequest = errors.New("verify: request to the server failed")
	// ErrNoPCRs means Fetch was given no expected PCRs: without them any
	// enclave image, including one an attacker runs, would pass. Pin PCR0
	// (or PCR8), or set Options.AnyImage to inspect an enclave knowingly.
	ErrNoPCRs = errors.New("verify: no expected PCRs given; pin at least PCR0 (or PCR8) or set AnyImage")
)

// AWSRootSHA256 is the lowercase hex SHA-256 of the DER encoding of the AWS
// Nitro Enclaves Root G1, the default trust anchor.
const AWSRootSHA256 = attest.AWSRootSHA256

// AWSRoot returns a fresh copy of the AWS Nitro Enclaves Root G1
// certificate.
func AWSRoot() *x509.Certificate { return attest.AWSRoot() }

// NonceSize is the length of the nonces [NewNonce] makes.
const NonceSize = 32

// MaxNonceSize is the longest nonce the server accepts.
const MaxNonceSize = 512

// DefaultMaxAge is the freshness limit applied when [Options.MaxAge] is
// zero. A document fetched over a fresh nonce is seconds old; the limit
// leaves room for slow links and small clock differences.
const DefaultMaxAge = 5 * time.Minute

// NewNonce returns NonceSize random bytes from r, or from crypto/rand when r
// is nil.
func NewNonce(r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	n := make([]byte, NonceSize)
	if _, err := io.ReadFull(r, n); err != nil {
		return nil, fmt.Errorf("verify: make nonce: %w", err)
	}
	return n, nil
}

// Options controls [Verify] and [Fetch]. The zero value verifies against
// the AWS root at the current time, requires documents at most
// DefaultMaxAge old, refuses debug-mode enclaves, and checks no PCR and (in
// Verify) no nonce.
type Options struct {
	// Roots are the trusted roots; nil means the AWS Nitro Enclaves Root
	// G1. The document's cabundle[0] must be byte-identical to one of them.
	// Use another root only for simulated enclaves.
	Roots []*x509.Certificate

	// PCRs are the expected PCR values by index; each must be present and
	// equal. Pin at least PCR0 (or PCR8 for signed images). [LoadPCRs] reads
	// them from a file. Verify with none checks only the document; Fetch
	// refuses to run without them unless AnyImage is set.
	PCRs map[int][]byte

	// AnyImage lets Fetch accept any enclave image (no PCRs given): the
	// answer then proves only that some Nitro enclave, possibly one run by
	// an attacker, made it. For inspecting PCRs, never for trusting keys.
	AnyImage bool

	// AllowDebug accepts debug-mode enclaves, whose memory the parent
	// instance can read. Never set it where real keys are at stake.
	AllowDebug bool

	// Nonce is, for Verify, the nonce the document must carry (nil: not
	// checked, which allows replay within the certificate lifetime). For
	// Fetch it is the nonce to send, 1..MaxNonceSize bytes; nil sends a
	// fresh NewNonce.
	Nonce []byte

	// MaxAge bounds the document's age at Now; zero means DefaultMaxAge and
	// a negative value disables the check (freshness is then bounded only by
	// the three-hour leaf certificate). Documents may also be up to
	// attest.MaxFutureSkew (one minute) ahead of Now.
	MaxAge time.Duration

	// Now is the verification time for certificate validity and MaxAge;
	// nil means time.Now. Archived documents verify only with Now inside
	// their certificates' window.
	Now func() time.Time

	// Rand is the source of Fetch's nonce; nil means crypto/rand.
	Rand io.Reader
}

// Result is a verified attestation document.
type Result struct {
	// Document is the attestation document as received (COSE_Sign1, CBOR).
	Document []byte

	// ModuleID identifies the enclave, e.g.
	// "i-0a22e5c5f24d22174-enc0191cceb4289903f".
	ModuleID string

	// Timestamp is when the NSM produced the document.
	Timestamp time.Time

	// Digest is the PCR hash algorithm, "SHA384".
	Digest string

	// PCRs maps PCR index to value (48 bytes each; real documents carry
	// PCR0–PCR15).
	PCRs map[int][]byte

	// Debug reports a debug-mode enclave (PCR0, PCR1 and PCR2 all zero).
	Debug bool

	// PublicKey, UserData and Nonce are the document's optional fields:
	// nil when absent, non-nil (possibly empty) when present.
	PublicKey []byte
	UserData  []byte
	Nonce     []byte

	// Certificate is the leaf that signed the document; CABundle runs from
	// the root down to the leaf's issuer.
	Certificate *x509.Certificate
	CABundle    []*x509.Certificate

	// RootSHA256 is the lowercase hex SHA-256 of the DER of the root the
	// chain was anchored on (AWSRootSHA256 for real enclaves).
	RootSHA256 string

	// Identity is the enclave identity bound in the document; nil until
	// [Result.BindIdentity] succeeds.
	Identity *signerv1.EnclaveIdentity
}

// Verify checks the attestation document doc as described on [Options]
// and returns its contents. On failure it returns a nil Result and an error
// wrapping one of ErrMalformed, ErrUntrusted, ErrBadSignature, ErrStale,
// ErrDebugMode, ErrPCRMismatch or ErrNonceMismatch. It does not look at
// user_data; call [Result.BindIdentity] for nitrosigner documents.
func Verify(doc []byte, opts Options) (*Result, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	maxAge := opts.MaxAge
	switch {
	case maxAge == 0:
		maxAge = DefaultMaxAge
	case maxAge < 0:
		maxAge = 0 // attest: no check
	}
	d, err := attest.Verify(doc, attest.Options{
		Roots:      opts.Roots,
		Now:        now(),
		PCRs:       opts.PCRs,
		Nonce:      opts.Nonce,
		AllowDebug: opts.AllowDebug,
		MaxAge:     maxAge,
	})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(d.CABundle[0].Raw)
	return &Result{
		Document:    append([]byte(nil), doc...),
		ModuleID:    d.ModuleID,
		Timestamp:   d.Timestamp,
		Digest:      d.Digest,
		PCRs:        d.PCRs,
		Debug:       d.Debug(),
		PublicKey:   d.PublicKey,
		UserData:    d.UserData,
		Nonce:       d.Nonce,
		Certificate: d.Certificate,
		CABundle:    d.CABundle,
		RootSHA256:  hex.EncodeToString(sum[:]),
	}, nil
}
