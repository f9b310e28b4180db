package cms_test

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

func TestParseVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			env, err := cms.Parse(v.blob(t))
			require.NoError(t, err)
			assert.Equal(t, v.expected(t), env)
			assert.Len(t, env.RecipientKeyID, 32)
			assert.Len(t, env.EncryptedKey, 256)
			assert.Len(t, env.IV, 16)
		})
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	v := vectorByName(t, "edgebit_cfr")
	blob := v.blob(t)
	env, err := cms.Parse(blob)
	require.NoError(t, err)
	clear(blob)
	assert.Equal(t, v.expected(t), env)
}

func TestDecryptVectors(t *testing.T) {
	for _, v := range vectors {
		if !v.keyed {
			continue
		}
		priv := v.key(t)
		pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
		require.NoError(t, err)
		fromPKCS8, err := parseRSAKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
		require.NoError(t, err)

		for form, key := range map[string]*rsa.PrivateKey{"pkcs1": priv, "pkcs8": fromPKCS8} {
			t.Run(v.name+"/"+form, func(t *testing.T) {
				pt, err := cms.Decrypt(key, v.blob(t))
				require.NoError(t, err)
				assert.Equal(t, v.plaintext(t), pt)
			})
		}
	}
}

func TestSubjectKeyID(t *testing.T) {
	for _, v := range vectors {
		if !v.keyed {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			id, err := cms.SubjectKeyID(&v.key(t).PublicKey)
			require.NoError(t, err)
			assert.Equal(t, unhex(t, v.rid), id)
		})
	}
	t.Run("nil", func(t *testing.T) {
		_, err := cms.SubjectKeyID(nil)
		require.Error(t, err)
		_, err = cms.SubjectKeyID(&rsa.PublicKey{})
		require.Error(t, err)
	})
}

func TestDecryptWrongRecipient(t *testing.T) {
	edgebit, eks := vectorByName(t, "edgebit_cfr"), vectorByName(t, "eks_ethsigner_cfr")
	tests := []struct {
		name string
		key  *rsa.PrivateKey
		blob []byte
	}{
		{"eks key, edgebit envelope", eks.key(t), edgebit.blob(t)},
		{"edgebit key, eks envelope", edgebit.key(t), eks.blob(t)},
		{"edgebit key, aws vector 1", edgebit.key(t), vectorByName(t, "awssdkc_cms_vector1").blob(t)},
		{"edgebit key, aws vector 2", edgebit.key(t), vectorByName(t, "awssdkc_cms_vector2_primitive_content").blob(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := cms.Decrypt(tt.key, tt.blob)
			require.ErrorIs(t, err, cms.ErrWrongRecipient)
			assert.NotErrorIs(t, err, cms.ErrDecrypt)
			assert.Nil(t, pt)
		})
	}
}

func TestDecryptNilKey(t *testing.T) {
	_, err := cms.Decrypt(nil, vectorByName(t, "edgebit_cfr").blob(t))
	require.Error(t, err)
}

// TestEncodeReproducesVectors re-encodes each vector's fields and gets the
// real KMS bytes back: the encoder's layout is KMS's wherever KMS's layout is
// determined by the fields and the content form.
func TestEncodeReproducesVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			exp := v.expected(t)
			chunk := 0
			if v.constructed {
				chunk = len(exp.Ciphertext) // every constructed vector holds one chunk
			}
			assert.Equal(t, v.blob(t), cms.Encode(exp, chunk))
		})
	}
}
