// Package sign holds the signature schemes the enclave offers, behind one
// registry so that more schemes can be added without touching callers.
//
// It runs inside the enclave. Private keys are handled as byte slices in each
// scheme's own compact encoding; the keyring owns them and zeroizes them.
// Nothing here logs or returns private material in errors.
package sign

import (
	"errors"
	"fmt"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Errors a caller branches on. They are wrapped with the offending detail;
// none of them carries key bytes.
var (
	// ErrUnsupported means the scheme does not sign this kind of payload
	// (for example a bare digest with ed25519).
	ErrUnsupported = errors.New("payload kind not supported by this algorithm")
	// ErrInvalidPayload means the payload is malformed for the scheme (for
	// example a digest that is not 32 bytes).
	ErrInvalidPayload = errors.New("invalid payload")
	// ErrInvalidKey means private key bytes do not decode for the scheme.
	ErrInvalidKey = errors.New("invalid private key encoding")
)

// Scheme is one signature algorithm. Implementations are stateless and safe
// for concurrent use.
type Scheme interface {
	// Algorithm is the API value this scheme implements.
	Algorithm() signerv1.Algorithm
	// Name is the short lowercase name used by the CLI and logs.
	Name() string
	// PrivateKeySize is the length of the scheme's private key encoding.
	PrivateKeySize() int
	// Generate makes a key from the system CSPRNG (seeded from the NSM at
	// enclave start). It returns the private key encoding and the public key.
	Generate() (priv, pub []byte, err error)
	// PublicKey derives the public key from the private key encoding.
	PublicKey(priv []byte) ([]byte, error)
	// SignDigest signs a precomputed digest.
	SignDigest(priv, digest []byte) ([]byte, error)
	// SignMessage signs a message as is.
	SignMessage(priv, msg []byte) ([]byte, error)
	// Pack stores a key pair in the keyring's compact, pointer-free layout.
	// It checks lengths and encodings, not that the halves match.
	Pack(priv, pub []byte, p *Packed) error
	// Unpack appends the private key encoding held in p to dst.
	Unpack(p *Packed, dst []byte) []byte
	// UnpackPublic returns the public key encoding held in p.
	UnpackPublic(p *Packed) ([]byte, error)
}

// DigestSigner signs 32-byte digests. Every [Scheme] is one, and so is a
// scheme whose calls go through a [Combiner] (see [Combined]). Chain
// packages sign through it, so that their signatures join the enclave's
// batches under load.
type DigestSigner interface {
	SignDigest(priv, digest []byte) ([]byte, error)
}

// Packed is a key pair in 65 bytes: the 32-byte secret (scalar or seed) and
// the public key in its shortest form (SEC1 compressed for ECDSA keys, 32
// bytes for Ed25519). It has no pointers, so a large array of them costs
// the garbage collector nothing to scan.
type Packed struct {
	Priv [32]byte
	Pub  [33]byte
}

// Zero overwrites the packed key.
func (p *Packed) Zero() { *p = Packed{} }

var registry = map[signerv1.Algorithm]Scheme{}

// register adds a scheme; called from init in each scheme's file.
func register(s Scheme) {
	if _, dup := registry[s.Algorithm()]; dup {
		panic(fmt.Sprintf("sign: algorithm %v registered twice", s.Algorithm()))
	}
	registry[s.Algorithm()] = s
}

// Lookup returns the scheme for an algorithm, or false when it is unknown.
func Lookup(alg signerv1.Algorithm) (Scheme, bool) {
	s, ok := registry[alg]
	return s, ok
}

// ByName returns the scheme with the given short name ("secp256k1",
// "ed25519"), or false.
func ByName(name string) (Scheme, bool) {
	for _, s := range registry {
		if s.Name() == name {
			return s, true
		}
	}
	return nil, false
}

// Zero overwrites b with zeros. Use it on private key buffers once they are
// no longer needed.
func Zero(b []byte) {
	clear(b)
}
