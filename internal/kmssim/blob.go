//go:build !nosim

package kmssim

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Ciphertext blob format, version 1 (opaque to clients, like KMS's own):
//
//	offset  size  field
//	0       1     version = 1
//	1       16    key id (the UUID's 16 bytes)
//	17      12    AES-GCM nonce
//	29      n+16  AES-256-GCM(material, nonce, plaintext, aad)
//
// aad = blobAADLabel || blob[0:29] || encodeContext(EncryptionContext), so
// the version, the key id and the encryption context are all authenticated:
// a blob moved to another key, or opened with another context, fails.
const (
	blobVersion  = 1
	blobHeader   = 1 + 16 + 12
	blobOverhead = blobHeader + 16
	blobAADLabel = "kmssim ciphertext v1\x00"

	// maxCiphertext is KMS's limit on CiphertextBlob.
	maxCiphertext = 6144
	// maxPlaintext is KMS's limit on Encrypt's Plaintext.
	maxPlaintext = 4096
)

// errBadBlob is any blob that cannot be opened; the client sees only
// InvalidCiphertextException.
var errBadBlob = errors.New("kmssim: invalid ciphertext blob")

// blobKeyID returns the key id a blob names, without authenticating it.
func blobKeyID(blob []byte) (string, error) {
	if len(blob) < blobOverhead || len(blob) > maxCiphertext || blob[0] != blobVersion {
		return "", errBadBlob
	}
	return formatUUID(blob[1:17]), nil
}

// sealBlob encrypts plaintext under material for key id with the given
// encryption context.
func sealBlob(rand io.Reader, material []byte, keyID string, ctx map[string]string, plaintext []byte) ([]byte, error) {
	id, err := parseUUID(keyID)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	blob := make([]byte, blobHeader, blobOverhead+len(plaintext))
	blob[0] = blobVersion
	copy(blob[1:17], id[:])
	if _, err := io.ReadFull(rand, blob[17:29]); err != nil {
		return nil, fmt.Errorf("read nonce: %w", err)
	}
	return aead.Seal(blob, blob[17:29], plaintext, blobAAD(blob[:blobHeader], ctx)), nil
}

// openBlob authenticates and decrypts blob under material with the given
// encryption context. Any failure is errBadBlob. The caller owns (and
// clears) the returned plaintext.
func openBlob(material []byte, ctx map[string]string, blob []byte) ([]byte, error) {
	if _, err := blobKeyID(blob); err != nil {
		return nil, err
	}
	aead, err := newGCM(material)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, blob[17:29], blob[blobHeader:], blobAAD(blob[:blobHeader], ctx))
	if err != nil {
		return nil, errBadBlob
	}
	return pt, nil
}

func newGCM(material []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(material)
	if err != nil {
		return nil, fmt.Errorf("key material: %w", err)
	}
	return cipher.NewGCM(block)
}

func blobAAD(header []byte, ctx map[string]string) []byte {
	aad := append([]byte(blobAADLabel), header...)
	return append(aad, encodeContext(ctx)...)
}

// encodeContext is the canonical encoding of an encryption context: the
// number of pairs, then each key and value sorted by key, all as
// big-endian uint32 length-prefixed strings. Nil and empty contexts encode
// alike, as in KMS.
func encodeContext(ctx map[string]string) []byte {
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(ctx[k])))
		b = append(b, ctx[k]...)
	}
	return b
}
