package cms_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// FuzzParse feeds arbitrary bytes to Parse, seeded with every real KMS
// vector and BER variants of one. Parse must never panic, must fail only
// with ErrMalformed, and whatever it accepts must have the documented field
// sizes and survive re-encoding unchanged. Inputs addressed to the edgebit
// test key also go through Decrypt, which may only fail with ErrDecrypt.
func FuzzParse(f *testing.F) {
	for _, v := range vectors {
		f.Add(v.blob(f))
	}
	edgebit := vectorByName(f, "edgebit_cfr")
	exp := edgebit.expected(f)
	for _, chunk := range []int{0, 16} {
		f.Add(cms.Encode(exp, chunk))
	}
	root, _ := kmsTree(exp, true)
	root.walk(func(n *node) { n.indef = false })
	f.Add(root.encode())

	priv := edgebit.key(f)
	id, err := cms.SubjectKeyID(&priv.PublicKey)
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := cms.Parse(b)
		if err != nil {
			require.ErrorIs(t, err, cms.ErrMalformed)
			require.Nil(t, env)
			return
		}
		require.Len(t, env.RecipientKeyID, 32)
		require.Len(t, env.IV, 16)
		require.NotEmpty(t, env.EncryptedKey)

		again, err := cms.Parse(cms.Encode(env, 0))
		require.NoError(t, err)
		require.Equal(t, env, again)

		if bytes.Equal(env.RecipientKeyID, id) {
			if _, err := cms.Decrypt(priv, b); err != nil {
				require.Equal(t, cms.ErrDecrypt, err)
			}
		}
	})
}
