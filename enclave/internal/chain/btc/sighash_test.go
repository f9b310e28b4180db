package btc_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/txscript"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const (
	ecdsaScheme   = signerv1.BitcoinSighash_SCHEME_ECDSA
	schnorrScheme = signerv1.BitcoinSighash_SCHEME_SCHNORR
)

// ECDSA through a sign.DigestSigner, alone or through a combiner with
// other goroutines' calls, is byte for byte btcd's own ecdsa.Sign (RFC 6979,
// low-S), DER-encoded.
func TestSignSighashECDSAMatchesBtcd(t *testing.T) {
	combined, _ := sign.Combined(sign.Secp256k1{}, 1, nil)
	for name, ds := range map[string]sign.DigestSigner{"scheme": sign.Secp256k1{}, "combined": combined} {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 6 {
						priv, pub, err := sign.Secp256k1{}.Generate()
						if !assert.NoError(t, err) {
							return
						}
						hash := sha256.Sum256(fmt.Appendf(nil, "%d/%d", g, i))
						r, err := btc.SignSighash(ds, priv, pub, &signerv1.BitcoinSighash{Sighash: hash[:], Scheme: ecdsaScheme, SighashType: 0x81})
						if !assert.NoError(t, err) {
							return
						}
						key, _ := btcec.PrivKeyFromBytes(priv)
						want := append(ecdsa.Sign(key, hash[:]).Serialize(), 0x81)
						assert.Equal(t, want, r.GetSignature())
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestSignSighash signs with each scheme and sighash type for keys with
// both Y parities and checks the result with btcec against the key, or for
// taproot against the output key computed by txscript.
func TestSignSighash(t *testing.T) {
	h := bytes.Repeat([]byte{0x42}, 32)
	root := bytes.Repeat([]byte{0x17}, 32)
	parities := map[byte]bool{}
	for i := range 3 {
		k := newTestKey(t, fmt.Sprintf("sighash key %d", i))
		key, pub := btcec.PrivKeyFromBytes(k.priv)
		key.Zero()
		parities[k.compressed[0]] = true
		tests := []struct {
			name   string
			req    *signerv1.BitcoinSighash
			scheme string
			verify func(t *testing.T, sig []byte)
		}{
			{"ecdsa ALL", &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 1}, "ecdsa:ALL", func(t *testing.T, sig []byte) {
				require.Equal(t, byte(1), sig[len(sig)-1])
				s, err := ecdsa.ParseDERSignature(sig[:len(sig)-1])
				require.NoError(t, err)
				assert.True(t, s.Verify(h, pub))
			}},
			{"ecdsa SINGLE|ANYONECANPAY", &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 0x83}, "ecdsa:SINGLE|ANYONECANPAY", func(t *testing.T, sig []byte) {
				require.Equal(t, byte(0x83), sig[len(sig)-1])
			}},
			{"schnorr DEFAULT", &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme}, "schnorr:DEFAULT", func(t *testing.T, sig []byte) {
				require.Len(t, sig, 64)
				verifySchnorr(t, sig, h, pub)
			}},
			{"schnorr NONE", &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme, SighashType: 2}, "schnorr:NONE", func(t *testing.T, sig []byte) {
				require.Len(t, sig, 65)
				require.Equal(t, byte(2), sig[64])
				verifySchnorr(t, sig[:64], h, pub)
			}},
			{"taproot BIP-86", &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme, TaprootTweak: true}, "schnorr_taproot:DEFAULT", func(t *testing.T, sig []byte) {
				require.Len(t, sig, 64)
				verifySchnorr(t, sig, h, txscript.ComputeTaprootKeyNoScript(pub))
			}},
			{"taproot with merkle root", &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme, SighashType: 0x81, TaprootTweak: true, TaprootMerkleRoot: root}, "schnorr_taproot:ALL|ANYONECANPAY", func(t *testing.T, sig []byte) {
				require.Len(t, sig, 65)
				verifySchnorr(t, sig[:64], h, txscript.ComputeTaprootOutputKey(pub, root))
			}},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("key%d/%s", i, tt.name), func(t *testing.T) {
				resp, err := btc.SignSighash(sign.Secp256k1{}, k.priv, k.pub, tt.req)
				require.NoError(t, err)
				assert.Empty(t, resp.GetKeyId())
				assert.Empty(t, resp.GetSignedPayload())
				assert.Equal(t, tt.scheme, resp.GetSummary().GetBitcoin().GetScheme())
				tt.verify(t, resp.GetSignature())
			})
		}
	}
	require.Len(t, parities, 2, "keys with both even and odd Y were exercised")
}

func verifySchnorr(t *testing.T, sig, h []byte, pub *btcec.PublicKey) {
	t.Helper()
	s, err := schnorr.ParseSignature(sig)
	require.NoError(t, err)
	assert.True(t, s.Verify(h, pub))
}

func TestSignSighashErrors(t *testing.T) {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	h := bytes.Repeat([]byte{1}, 32)
	order := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41}
	tests := []struct {
		name      string
		priv, pub []byte
		req       *signerv1.BitcoinSighash
		want      string
		wantErr   error
	}{
		{"nil request", a.priv, a.pub, nil, "bitcoin_sighash: request is empty", sign.ErrInvalidPayload},
		{"short sighash", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h[:31], Scheme: ecdsaScheme, SighashType: 1}, "bitcoin_sighash: sighash is 31 bytes, want 32", sign.ErrInvalidPayload},
		{"no scheme", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, SighashType: 1}, "scheme must be ecdsa or schnorr", sign.ErrInvalidPayload},
		{"ecdsa type 0", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme}, "sighash_type 0x00 is not valid for ecdsa", sign.ErrInvalidPayload},
		{"ecdsa type 4", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 4}, "sighash_type 0x04 is not valid for ecdsa", sign.ErrInvalidPayload},
		{"type beyond a byte", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 0x101}, "does not fit in a byte", sign.ErrInvalidPayload},
		{"schnorr type 0x80", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme, SighashType: 0x80}, "sighash_type 0x80 is not a BIP-341 sighash type", sign.ErrInvalidPayload},
		{"ecdsa with tweak", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 1, TaprootTweak: true}, "apply to schnorr only", sign.ErrInvalidPayload},
		{"root without tweak", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme, TaprootMerkleRoot: h}, "taproot_merkle_root needs taproot_tweak", sign.ErrInvalidPayload},
		{"short root", a.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme, TaprootTweak: true, TaprootMerkleRoot: h[:31]}, "taproot_merkle_root is 31 bytes", sign.ErrInvalidPayload},
		{"key mismatch", b.priv, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 1}, "bitcoin: private key does not match the public key", sign.ErrInvalidKey},
		{"short private key", a.priv[:31], a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 1}, "private key is 31 bytes, want 32", sign.ErrInvalidKey},
		{"zero private key", make([]byte, 32), a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme}, "private key scalar out of range", sign.ErrInvalidKey},
		{"private key = n", order, a.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: schnorrScheme}, "private key scalar out of range", sign.ErrInvalidKey},
		{"compressed public key", a.priv, a.compressed, &signerv1.BitcoinSighash{Sighash: h, Scheme: ecdsaScheme, SighashType: 1}, "public key must be 65-byte SEC1 uncompressed", sign.ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := btc.SignSighash(sign.Secp256k1{}, tt.priv, tt.pub, tt.req)
			require.Error(t, err)
			assert.Nil(t, resp)
			assert.ErrorIs(t, err, tt.wantErr)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), fmt.Sprintf("%x", a.priv[:8]), "no key bytes in errors")
		})
	}
}

func TestAddressesBadKey(t *testing.T) {
	a := newTestKey(t, "key a")
	offCurve := bytes.Clone(a.pub)
	offCurve[64] ^= 1
	hybrid := bytes.Clone(a.pub)
	hybrid[0] = 0x06
	for name, pub := range map[string][]byte{
		"empty": nil, "compressed": a.compressed, "off curve": offCurve, "hybrid prefix": hybrid, "too long": append(bytes.Clone(a.pub), 0),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := btc.Addresses(pub)
			require.ErrorIs(t, err, sign.ErrInvalidKey)
		})
	}
}
