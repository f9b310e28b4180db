package sign

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"fmt"
	"math/big"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// P256 is ECDSA over NIST P-256 for general raw signing of 32-byte digests.
// Private keys are the 32-byte big-endian scalar; public keys are SEC1
// uncompressed (65 bytes). Signatures are 64 bytes r || s with s in the
// lower half of the group order (so each signature has one encoding).
// Nonces are random (crypto/ecdsa hedged nonces).
type P256 struct{}

func init() { register(P256{}) }

// Algorithm implements [Scheme].
func (P256) Algorithm() signerv1.Algorithm { return signerv1.Algorithm_ALGORITHM_P256 }

// Name implements [Scheme].
func (P256) Name() string { return "p256" }

// PrivateKeySize implements [Scheme].
func (P256) PrivateKeySize() int { return 32 }

// Generate implements [Scheme].
func (P256) Generate() (priv, pub []byte, err error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate p256 key: %w", err)
	}
	return k.Bytes(), k.PublicKey().Bytes(), nil
}

func p256Key(priv []byte) (*ecdsa.PrivateKey, error) {
	if len(priv) != 32 {
		return nil, fmt.Errorf("%w: p256 key is %d bytes, want 32", ErrInvalidKey, len(priv))
	}
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), priv)
	if err != nil {
		return nil, fmt.Errorf("%w: p256 scalar out of range", ErrInvalidKey)
	}
	return k, nil
}

// PublicKey implements [Scheme].
func (P256) PublicKey(priv []byte) ([]byte, error) {
	k, err := p256Key(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey.Bytes()
}

// SignDigest implements [Scheme].
func (P256) SignDigest(priv, digest []byte) ([]byte, error) {
	if len(digest) != DigestSize {
		return nil, fmt.Errorf("%w: digest is %d bytes, want %d", ErrInvalidPayload, len(digest), DigestSize)
	}
	k, err := p256Key(priv)
	if err != nil {
		return nil, err
	}
	der, err := ecdsa.SignASN1(rand.Reader, k, digest)
	if err != nil {
		return nil, fmt.Errorf("p256 sign: %w", err)
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("p256 sign: %w", err)
	}
	n := elliptic.P256().Params().N
	if sig.S.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		sig.S.Sub(n, sig.S)
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}

// SignMessage implements [Scheme]; P-256 signs digests only here.
func (P256) SignMessage(_, _ []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: p256 signs a 32-byte digest, not a message", ErrUnsupported)
}

// Pack implements [Scheme]; see Secp256k1.Pack for why the point is not
// checked here.
func (P256) Pack(priv, pub []byte, p *Packed) error {
	if len(priv) != 32 {
		return fmt.Errorf("%w: p256 key is %d bytes, want 32", ErrInvalidKey, len(priv))
	}
	if err := compressSEC1(pub, 32, &p.Pub); err != nil {
		return fmt.Errorf("%w: p256 %v", ErrInvalidKey, err)
	}
	copy(p.Priv[:], priv)
	return nil
}

// Unpack implements [Scheme].
func (P256) Unpack(p *Packed, dst []byte) []byte { return append(dst, p.Priv[:]...) }

// p256Points caches rebuilt P-256 public keys (see pointCache).
var p256Points pointCache

// UnpackPublic implements [Scheme]. Recently rebuilt points come from a
// cache.
func (P256) UnpackPublic(p *Packed) ([]byte, error) {
	return p256Points.get(&p.Pub, func() ([]byte, error) { return unpackP256(p) })
}

// unpackP256 rebuilds the uncompressed point (a field square root).
func unpackP256(p *Packed) ([]byte, error) {
	x, y := elliptic.UnmarshalCompressed(elliptic.P256(), p.Pub[:])
	if x == nil {
		return nil, fmt.Errorf("%w: packed public key", ErrInvalidKey)
	}
	//lint:ignore SA1019 encodes a checked point; crypto/ecdh has no compressed form
	return elliptic.Marshal(elliptic.P256(), x, y), nil
}
