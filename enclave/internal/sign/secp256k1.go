package sign

import (
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// DigestSize is the length of a digest accepted by SignDigest for ECDSA.
const DigestSize = 32

// Secp256k1 is ECDSA over secp256k1 with RFC 6979 deterministic nonces.
// Private keys are the 32-byte big-endian scalar; public keys are SEC1
// uncompressed (65 bytes). Signatures are 65 bytes r || s || v with s in the
// lower half of the group order and v the recovery id (0 or 1), so that
// Ethereum-style public-key recovery works.
type Secp256k1 struct{}

func init() { register(Secp256k1{}) }

// Algorithm implements [Scheme].
func (Secp256k1) Algorithm() signerv1.Algorithm { return signerv1.Algorithm_ALGORITHM_SECP256K1 }

// Name implements [Scheme].
func (Secp256k1) Name() string { return "secp256k1" }

// PrivateKeySize implements [Scheme].
func (Secp256k1) PrivateKeySize() int { return secp256k1.PrivKeyBytesLen }

// Generate implements [Scheme].
func (Secp256k1) Generate() (priv, pub []byte, err error) {
	k, err := secp256k1.GeneratePrivateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generate secp256k1 key: %w", err)
	}
	defer k.Zero()
	priv = k.Serialize()
	return priv, k.PubKey().SerializeUncompressed(), nil
}

func secpKey(priv []byte) (*secp256k1.PrivateKey, error) {
	var s secp256k1.ModNScalar
	defer s.Zero() // NewPrivateKey copies it
	if err := secpScalar(priv, &s); err != nil {
		return nil, err
	}
	return secp256k1.NewPrivateKey(&s), nil
}

// secpScalar decodes a private key encoding into s, which it leaves zero
// on error.
func secpScalar(priv []byte, s *secp256k1.ModNScalar) error {
	if len(priv) != secp256k1.PrivKeyBytesLen {
		return fmt.Errorf("%w: secp256k1 key is %d bytes, want %d", ErrInvalidKey, len(priv), secp256k1.PrivKeyBytesLen)
	}
	if overflow := s.SetByteSlice(priv); overflow || s.IsZero() {
		s.Zero()
		return fmt.Errorf("%w: secp256k1 scalar out of range", ErrInvalidKey)
	}
	return nil
}

// checkDigest refuses a digest that is not DigestSize bytes.
func checkDigest(digest []byte) error {
	if len(digest) != DigestSize {
		return fmt.Errorf("%w: digest is %d bytes, want %d", ErrInvalidPayload, len(digest), DigestSize)
	}
	return nil
}

// PublicKey implements [Scheme].
func (Secp256k1) PublicKey(priv []byte) ([]byte, error) {
	k, err := secpKey(priv)
	if err != nil {
		return nil, err
	}
	defer k.Zero()
	return k.PubKey().SerializeUncompressed(), nil
}

// SignDigest implements [Scheme]. The digest must be exactly 32 bytes.
func (Secp256k1) SignDigest(priv, digest []byte) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	k, err := secpKey(priv)
	if err != nil {
		return nil, err
	}
	defer k.Zero()
	// SignCompact gives [27+recid] || r || s with canonical (low) s.
	c := ecdsa.SignCompact(k, digest, false)
	out := make([]byte, 65)
	copy(out, c[1:])
	out[64] = c[0] - 27
	return out, nil
}

// SignMessage implements [Scheme]; ECDSA signs digests only.
func (Secp256k1) SignMessage(_, _ []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: secp256k1 signs a 32-byte digest, not a message", ErrUnsupported)
}
