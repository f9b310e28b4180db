package cms_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// seeded returns a deterministic random source.
func seeded(seed byte) *mrand.ChaCha8 {
	return mrand.NewChaCha8([32]byte{seed})
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	keys := []*rsa.PrivateKey{vectorByName(t, "edgebit_cfr").key(t), vectorByName(t, "eks_ethsigner_cfr").key(t)}
	sizes := []int{0, 1, 15, 16, 17, 32, 154, 1000, 4096, 70000}
	opts := []cms.EncryptOptions{{}, {ChunkSize: 1}, {ChunkSize: 16}, {ChunkSize: 1000}, {ChunkSize: 1 << 20}}
	for i, size := range sizes {
		for _, o := range opts {
			if o.ChunkSize == 1 && size > 4096 {
				continue // one chunk per byte: covered by the smaller sizes
			}
			key := keys[i%len(keys)]
			t.Run(fmt.Sprintf("size=%d/chunk=%d", size, o.ChunkSize), func(t *testing.T) {
				pt := make([]byte, size)
				_, _ = seeded(byte(size)).Read(pt)
				blob, err := cms.Encrypt(rand.Reader, &key.PublicKey, pt, o)
				require.NoError(t, err)

				env, err := cms.Parse(blob)
				require.NoError(t, err)
				assert.Equal(t, size/16*16+16, len(env.Ciphertext))
				content := blob[bytes.Index(blob, env.IV)+len(env.IV):]
				if o.ChunkSize == 0 {
					assert.Equal(t, byte(0x80), content[0], "primitive encryptedContent")
				} else {
					assert.Equal(t, []byte{0xa0, 0x80, 0x04}, content[:3], "constructed encryptedContent")
				}

				got, err := cms.Decrypt(key, blob)
				require.NoError(t, err)
				assert.Equal(t, pt, got)
			})
		}
	}
}

// TestEncryptLayout encrypts with a fixed random source in each vector's
// content form and compares the result with the real KMS blob byte for byte,
// masking only the fields that must differ (random key, IV, ciphertext and,
// for keys other than the vector's, the rid).
func TestEncryptLayout(t *testing.T) {
	edgebit := vectorByName(t, "edgebit_cfr")
	priv := edgebit.key(t)
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			blob, exp := v.blob(t), v.expected(t)
			opts := cms.EncryptOptions{}
			if v.constructed {
				opts.ChunkSize = 4096
			}
			pt := bytes.Repeat([]byte{0x5a}, len(exp.Ciphertext)-1) // pads to the vector's ciphertext length
			out, err := cms.Encrypt(seeded(1), &priv.PublicKey, pt, opts)
			require.NoError(t, err)
			require.Len(t, out, len(blob))

			env, err := cms.Parse(out)
			require.NoError(t, err)
			rid, key, iv, ct := fieldSpans(t, blob, exp)
			assert.Equal(t, env.RecipientKeyID, out[rid.from:rid.to])
			assert.Equal(t, env.EncryptedKey, out[key.from:key.to])
			assert.Equal(t, env.IV, out[iv.from:iv.to])
			assert.Equal(t, env.Ciphertext, out[ct.from:ct.to])
			if v.name == edgebit.name {
				assert.Equal(t, blob[:key.from], out[:key.from], "same key: everything up to the encrypted key, rid included, is identical")
			}
			assert.Equal(t, mask(blob, rid, key, iv, ct), mask(out, rid, key, iv, ct))
		})
	}
}

func TestEncryptDeterministic(t *testing.T) {
	pub := &vectorByName(t, "edgebit_cfr").key(t).PublicKey
	pt := []byte("0123456789abcdef0123456789abcdef")
	a, err := cms.Encrypt(seeded(7), pub, pt, cms.EncryptOptions{})
	require.NoError(t, err)
	b, err := cms.Encrypt(seeded(7), pub, pt, cms.EncryptOptions{})
	require.NoError(t, err)
	c, err := cms.Encrypt(seeded(8), pub, pt, cms.EncryptOptions{})
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)

	ea, err := cms.Parse(a)
	require.NoError(t, err)
	ec, err := cms.Parse(c)
	require.NoError(t, err)
	assert.NotEqual(t, ea.IV, ec.IV)
	assert.NotEqual(t, ea.EncryptedKey, ec.EncryptedKey)
}

func TestEncryptChunks(t *testing.T) {
	priv := vectorByName(t, "edgebit_cfr").key(t)
	pt := bytes.Repeat([]byte{1}, 40) // 48 bytes of ciphertext
	out, err := cms.Encrypt(rand.Reader, &priv.PublicKey, pt, cms.EncryptOptions{ChunkSize: 20})
	require.NoError(t, err)
	env, err := cms.Parse(out)
	require.NoError(t, err)

	// a0 80 | 04 14 <20> | 04 14 <20> | 04 08 <8> | 00 00 (content) 00 00 x4 (outer)
	tail := out[len(out)-(2+3*2+48+2+8):]
	ct := env.Ciphertext
	want := append([]byte{0xa0, 0x80, 0x04, 20}, ct[:20]...)
	want = append(append(want, 0x04, 20), ct[20:40]...)
	want = append(append(want, 0x04, 8), ct[40:]...)
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	assert.Equal(t, want, tail)

	got, err := cms.Decrypt(priv, out)
	require.NoError(t, err)
	assert.Equal(t, pt, got)
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy exhausted") }

func TestEncryptErrors(t *testing.T) {
	pub := &vectorByName(t, "edgebit_cfr").key(t).PublicKey
	tiny := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 511), E: 65537}
	tests := []struct {
		name string
		rand interface{ Read([]byte) (int, error) }
		pub  *rsa.PublicKey
		pt   []byte
		opts cms.EncryptOptions
	}{
		{"nil key", rand.Reader, nil, []byte("x"), cms.EncryptOptions{}},
		{"empty key", rand.Reader, &rsa.PublicKey{}, []byte("x"), cms.EncryptOptions{}},
		{"key too small", rand.Reader, tiny, []byte("x"), cms.EncryptOptions{}},
		{"negative chunk size", rand.Reader, pub, []byte("x"), cms.EncryptOptions{ChunkSize: -1}},
		{"plaintext over limit", rand.Reader, pub, make([]byte, cms.MaxEnvelopeSize), cms.EncryptOptions{}},
		{"envelope over limit", rand.Reader, pub, make([]byte, cms.MaxEnvelopeSize-400), cms.EncryptOptions{}},
		{"failing rand", failingReader{}, pub, []byte("x"), cms.EncryptOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := cms.Encrypt(tt.rand, tt.pub, tt.pt, tt.opts)
			require.Error(t, err)
			assert.Nil(t, out)
		})
	}
}

func TestEncryptNilRandUsesCryptoRand(t *testing.T) {
	priv := vectorByName(t, "edgebit_cfr").key(t)
	a, err := cms.Encrypt(nil, &priv.PublicKey, []byte("k"), cms.EncryptOptions{})
	require.NoError(t, err)
	b, err := cms.Encrypt(nil, &priv.PublicKey, []byte("k"), cms.EncryptOptions{})
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	got, err := cms.Decrypt(priv, a)
	require.NoError(t, err)
	assert.Equal(t, []byte("k"), got)
}

// TestEncryptNearLimit shows that a plaintext close to the limit encrypts,
// parses and decrypts.
func TestEncryptNearLimit(t *testing.T) {
	priv := vectorByName(t, "edgebit_cfr").key(t)
	pt := make([]byte, cms.MaxEnvelopeSize-8192)
	out, err := cms.Encrypt(rand.Reader, &priv.PublicKey, pt, cms.EncryptOptions{ChunkSize: 1000})
	require.NoError(t, err)
	require.LessOrEqual(t, len(out), cms.MaxEnvelopeSize)
	got, err := cms.Decrypt(priv, out)
	require.NoError(t, err)
	assert.Equal(t, len(pt), len(got))
}

// TestEncodeParseRoundTrip covers field sizes KMS does not emit with
// RSA-2048 (larger keys, long content) so every length form is exercised.
func TestEncodeParseRoundTrip(t *testing.T) {
	r := seeded(3)
	field := func(n int) []byte {
		b := make([]byte, n)
		_, _ = r.Read(b)
		return b
	}
	for _, keyLen := range []int{1, 127, 128, 255, 256, 384, 512} {
		for _, ctLen := range []int{0, 16, 112, 128, 240, 256, 65536, 70000} {
			for _, chunk := range []int{0, 7, 128, 100000} {
				env := &cms.Envelope{RecipientKeyID: field(32), EncryptedKey: field(keyLen), IV: field(16), Ciphertext: field(ctLen)}
				got, err := cms.Parse(cms.Encode(env, chunk))
				require.NoError(t, err, "key %d, ct %d, chunk %d", keyLen, ctLen, chunk)
				require.Equal(t, env, got, "key %d, ct %d, chunk %d", keyLen, ctLen, chunk)
			}
		}
	}
}
