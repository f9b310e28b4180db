package sol_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/mr-tron/base58"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
)

// FuzzSignMessage feeds arbitrary bytes to SignMessage with the vector's
// key. Whatever is refused must be refused as an invalid payload; whatever
// decodes must be canonical (encoding it again gives the same bytes); and
// whatever is signed must verify and come back as a well-formed transaction
// of at most 1232 bytes.
func FuzzSignMessage(f *testing.F) {
	v := loadLegacy(f)
	keys := rfcKeys(f)
	priv, pub := v.signer, pubOf(v.signer)
	f.Add(v.message)
	f.Add(v.wire)
	f.Add(v0Message(pub, pubOf(keys[1])).Encode())
	f.Add(v0Message(pubOf(keys[0]), pub).Encode())
	f.Add(append([]byte{0x80}, v.message...))

	f.Fuzz(func(t *testing.T, msg []byte) {
		m, decodeErr := sol.Decode(msg)
		resp, err := sol.SignMessage(priv, pub, msg)
		if decodeErr != nil {
			require.ErrorIs(t, decodeErr, sign.ErrInvalidPayload)
			require.EqualError(t, err, decodeErr.Error())
			return
		}
		require.Equal(t, msg, m.Encode(), "accepted a non-canonical encoding")
		if err != nil {
			// Not a signer, or the transaction would be too large.
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			return
		}
		sig := resp.GetSignature()
		require.True(t, ed25519.Verify(pub, msg, sig))
		s := resp.GetSummary().GetSolana()
		require.NotNil(t, s)
		require.Equal(t, base58.Encode(pub), s.GetSigner())

		wire := resp.GetSignedPayload()
		require.LessOrEqual(t, len(wire), sol.MaxTransactionSize)
		n := int(s.GetRequiredSignatures())
		require.Less(t, n, 128, "more signatures than fit in a transaction")
		require.Equal(t, byte(n), wire[0])
		require.Equal(t, msg, wire[1+n*sol.SignatureSize:])
		ours := 0
		for i := range n {
			slot := wire[1+i*sol.SignatureSize : 1+(i+1)*sol.SignatureSize]
			if bytes.Equal(slot, sig) {
				ours++
			} else {
				require.Equal(t, make([]byte, sol.SignatureSize), slot)
			}
		}
		require.Equal(t, 1, ours)
	})
}
