package sign

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// Pack implements [Scheme]. It compresses the SEC1 point without checking
// that it is on the curve (a field square root's worth of work per key on
// the bulk-load path): the keyring derives the public key from the private
// key and compares before the key's first signature, and UnpackPublic
// checks the point.
func (Secp256k1) Pack(priv, pub []byte, p *Packed) error {
	if len(priv) != secp256k1.PrivKeyBytesLen {
		return fmt.Errorf("%w: secp256k1 key is %d bytes, want %d", ErrInvalidKey, len(priv), secp256k1.PrivKeyBytesLen)
	}
	if err := compressSEC1(pub, 32, &p.Pub); err != nil {
		return fmt.Errorf("%w: secp256k1 %v", ErrInvalidKey, err)
	}
	copy(p.Priv[:], priv)
	return nil
}

// compressSEC1 writes the compressed form of an uncompressed SEC1 point
// (0x04 || X || Y, coordinates of size bytes) to out: 0x02 or 0x03 by the
// parity of Y, then X.
func compressSEC1(pub []byte, size int, out *[33]byte) error {
	if len(pub) != 1+2*size || pub[0] != 4 {
		return errors.New("public key is not an uncompressed SEC1 point")
	}
	out[0] = 2 | pub[2*size]&1
	copy(out[1:], pub[1:1+size])
	return nil
}

// Unpack implements [Scheme].
func (Secp256k1) Unpack(p *Packed, dst []byte) []byte { return append(dst, p.Priv[:]...) }

// secpPoints caches rebuilt secp256k1 public keys (see pointCache).
var secpPoints pointCache

// UnpackPublic implements [Scheme]: the SEC1 uncompressed point. Recently
// rebuilt points come from a cache.
func (Secp256k1) UnpackPublic(p *Packed) ([]byte, error) {
	return secpPoints.get(&p.Pub, func() ([]byte, error) { return unpackSecp256k1(p) })
}

// unpackSecp256k1 rebuilds the uncompressed point (a field square root).
func unpackSecp256k1(p *Packed) ([]byte, error) {
	pk, err := secp256k1.ParsePubKey(p.Pub[:])
	if err != nil {
		return nil, fmt.Errorf("%w: packed public key", ErrInvalidKey)
	}
	return pk.SerializeUncompressed(), nil
}

// Pack implements [Scheme]: the seed and the 32-byte public key.
func (Ed25519) Pack(priv, pub []byte, p *Packed) error {
	if len(priv) != ed25519.PrivateKeySize || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: ed25519 key pair has %d and %d bytes", ErrInvalidKey, len(priv), len(pub))
	}
	copy(p.Priv[:], priv[:ed25519.SeedSize])
	copy(p.Pub[:], pub)
	p.Pub[32] = 0
	return nil
}

// Unpack implements [Scheme]: seed || public key, Go's 64-byte encoding.
func (Ed25519) Unpack(p *Packed, dst []byte) []byte {
	return append(append(dst, p.Priv[:]...), p.Pub[:ed25519.PublicKeySize]...)
}

// UnpackPublic implements [Scheme].
func (Ed25519) UnpackPublic(p *Packed) ([]byte, error) {
	return append([]byte(nil), p.Pub[:ed25519.PublicKeySize]...), nil
}
