package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// MaxMessageSize is the largest message SignMessage accepts.
const MaxMessageSize = 64 << 10

// Ed25519 is RFC 8032 Ed25519. Private keys are Go's 64-byte encoding
// (seed || public key), kept expanded so that signing does not repeat the
// scalar multiplication; public keys are 32 bytes.
type Ed25519 struct{}

func init() { register(Ed25519{}) }

// Algorithm implements [Scheme].
func (Ed25519) Algorithm() signerv1.Algorithm { return signerv1.Algorithm_ALGORITHM_ED25519 }

// Name implements [Scheme].
func (Ed25519) Name() string { return "ed25519" }

// PrivateKeySize implements [Scheme].
func (Ed25519) PrivateKeySize() int { return ed25519.PrivateKeySize }

// Generate implements [Scheme].
func (Ed25519) Generate() (priv, pub []byte, err error) {
	p, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return k, p, nil
}

// PublicKey implements [Scheme]. It re-derives the key from the seed, so a
// corrupted stored public half is detected.
func (Ed25519) PublicKey(priv []byte) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: ed25519 key is %d bytes, want %d", ErrInvalidKey, len(priv), ed25519.PrivateKeySize)
	}
	k := ed25519.NewKeyFromSeed(priv[:ed25519.SeedSize])
	defer Zero(k)
	return append([]byte(nil), k[ed25519.SeedSize:]...), nil
}

// SignDigest implements [Scheme]; Ed25519 signs messages, not digests.
func (Ed25519) SignDigest(_, _ []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: ed25519 signs a message, not a digest", ErrUnsupported)
}

// SignMessage implements [Scheme]. The message may be up to MaxMessageSize
// bytes; the empty message is valid Ed25519 (RFC 8032 TEST 1), whether an API
// accepts it is that API's decision.
func (Ed25519) SignMessage(priv, msg []byte) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: ed25519 key is %d bytes, want %d", ErrInvalidKey, len(priv), ed25519.PrivateKeySize)
	}
	if len(msg) > MaxMessageSize {
		return nil, fmt.Errorf("%w: message is %d bytes, want at most %d", ErrInvalidPayload, len(msg), MaxMessageSize)
	}
	return ed25519.Sign(ed25519.PrivateKey(priv), msg), nil
}
