package cms_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"hash"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// envelopeFor builds an envelope to priv's key from raw parts: the CEK is
// wrapped with OAEP(h, label) and padded is CBC-encrypted as is.
func envelopeFor(t *testing.T, priv *rsa.PrivateKey, h hash.Hash, label, cek, padded []byte) []byte {
	t.Helper()
	id, err := cms.SubjectKeyID(&priv.PublicKey)
	require.NoError(t, err)
	ek, err := rsa.EncryptOAEP(h, rand.Reader, &priv.PublicKey, cek, label)
	require.NoError(t, err)
	block, err := aes.NewCipher(cek)
	require.NoError(t, err)
	iv := make([]byte, 16)
	ct := append([]byte{}, padded...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
	return cms.Encode(&cms.Envelope{RecipientKeyID: id, EncryptedKey: ek, IV: iv, Ciphertext: ct}, 0)
}

func TestDecryptFailures(t *testing.T) {
	v := vectorByName(t, "edgebit_cfr")
	priv := v.key(t)
	cek := bytes.Repeat([]byte{0x42}, 32)
	block := func(tail ...byte) []byte { return append(bytes.Repeat([]byte{'a'}, 16-len(tail)), tail...) }
	with := func(edit func(e *cms.Envelope)) []byte {
		e := v.expected(t)
		edit(e)
		return cms.Encode(e, 0)
	}
	tests := []struct {
		name string
		blob []byte
	}{
		{"ciphertext not a block multiple", with(func(e *cms.Envelope) { e.Ciphertext = e.Ciphertext[:47] })},
		{"empty ciphertext", with(func(e *cms.Envelope) { e.Ciphertext = nil })},
		{"encrypted key shorter than modulus", with(func(e *cms.Envelope) { e.EncryptedKey = e.EncryptedKey[:255] })},
		{"encrypted key longer than modulus", with(func(e *cms.Envelope) { e.EncryptedKey = append(e.EncryptedKey, 0) })},
		{"encrypted key corrupted", with(func(e *cms.Envelope) { e.EncryptedKey[100] ^= 1 })},
		{"encrypted key is another envelope's", with(func(e *cms.Envelope) {
			e.EncryptedKey = vectorByName(t, "eks_ethsigner_cfr").expected(t).EncryptedKey
		})},
		{"OAEP with SHA-1", envelopeFor(t, priv, sha1.New(), nil, cek, block(16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16))},
		{"OAEP with a label", envelopeFor(t, priv, sha256.New(), []byte("label"), cek, block(1))},
		{"AES-128 key", envelopeFor(t, priv, sha256.New(), nil, cek[:16], block(1))},
		{"padding byte 0", envelopeFor(t, priv, sha256.New(), nil, cek, block(0))},
		{"padding byte 17", envelopeFor(t, priv, sha256.New(), nil, cek, block(17))},
		{"padding byte 255", envelopeFor(t, priv, sha256.New(), nil, cek, block(255))},
		{"inconsistent padding", envelopeFor(t, priv, sha256.New(), nil, cek, block(2, 3, 3))},
		{"inconsistent full-block padding", envelopeFor(t, priv, sha256.New(), nil, cek,
			block(15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := cms.Decrypt(priv, tt.blob)
			require.Equal(t, cms.ErrDecrypt, err, "every decryption failure is the same bare error")
			assert.Nil(t, pt)
		})
	}
}

func TestDecryptPadding(t *testing.T) {
	priv := vectorByName(t, "edgebit_cfr").key(t)
	cek := bytes.Repeat([]byte{0x17}, 32)
	full := bytes.Repeat([]byte{16}, 16)
	tests := []struct {
		name   string
		padded []byte
		want   []byte
	}{
		{"one padding byte", append(bytes.Repeat([]byte{'x'}, 15), 1), bytes.Repeat([]byte{'x'}, 15)},
		{"full padding block only", full, []byte{}},
		{"data then full block", append(bytes.Repeat([]byte{'y'}, 16), full...), bytes.Repeat([]byte{'y'}, 16)},
		{"padding bytes equal data bytes", bytes.Repeat([]byte{3}, 16), bytes.Repeat([]byte{3}, 13)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := cms.Decrypt(priv, envelopeFor(t, priv, sha256.New(), nil, cek, tt.padded))
			require.NoError(t, err)
			assert.Equal(t, tt.want, pt)
			assert.Equal(t, len(pt), cap(pt), "no padding left reachable")
		})
	}
}

// BenchmarkDecrypt opens a 32-byte plaintext (a data key, as for a KEK
// unwrap) addressed to an RSA-2048 key.
func BenchmarkDecrypt(b *testing.B) {
	priv := vectorByName(b, "edgebit_cfr").key(b)
	blob, err := cms.Encrypt(rand.Reader, &priv.PublicKey, make([]byte, 32), cms.EncryptOptions{})
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cms.Decrypt(priv, blob); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParse parses a real KMS envelope.
func BenchmarkParse(b *testing.B) {
	blob := vectorByName(b, "edgebit_cfr").blob(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cms.Parse(blob); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncrypt builds an envelope for a 32-byte plaintext to an
// RSA-2048 key, as the KMS simulator does per answer.
func BenchmarkEncrypt(b *testing.B) {
	pub := &vectorByName(b, "edgebit_cfr").key(b).PublicKey
	pt := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cms.Encrypt(rand.Reader, pub, pt, cms.EncryptOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
