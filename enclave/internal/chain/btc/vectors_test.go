package btc_test

import (
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

// TestBIP340Vectors runs every row of bip-0340/test-vectors.csv that btcec
// can express. Signing rows must give the exact signature with the row's
// aux_rand; every row's verification result must match. Rows 15-18 sign
// messages that are not 32 bytes; btcec only takes 32-byte messages, so for
// those the test asserts that signing is refused.
func TestBIP340Vectors(t *testing.T) {
	rows, err := csv.NewReader(bytes.NewReader(readTestdata(t, "bip340_test_vectors.csv"))).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 20) // header + 19 rows
	signed, verified, refused := 0, 0, 0
	for _, r := range rows[1:] {
		t.Run("row"+r[0], func(t *testing.T) {
			secret, pubX, aux, msg, sig := unhex(t, r[1]), unhex(t, r[2]), unhex(t, r[3]), unhex(t, r[4]), unhex(t, r[5])
			want := r[6] == "TRUE"
			if len(msg) != 32 {
				require.NotEmpty(t, secret)
				_, err := btc.SignSchnorrAux(secret, msg, [32]byte(aux))
				require.Error(t, err, "btcec takes 32-byte messages only")
				refused++
				return
			}
			if len(secret) > 0 {
				got, err := btc.SignSchnorrAux(secret, msg, [32]byte(aux))
				require.NoError(t, err)
				assert.Equal(t, sig, got)
				signed++
			}
			ok := false
			if pk, err := schnorr.ParsePubKey(pubX); err == nil {
				if s, err := schnorr.ParseSignature(sig); err == nil {
					ok = s.Verify(msg, pk)
				}
			}
			assert.Equal(t, want, ok, r[7])
			verified++
		})
	}
	assert.Equal(t, 4, signed, "signing rows 0-3")
	assert.Equal(t, 15, verified, "rows 0-14")
	assert.Equal(t, 4, refused, "rows 15-18")
}

// BIP-143 "Native P2WPKH" example (bitcoin/bips bip-0143.mediawiki).
const (
	bip143UnsignedTx = "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f0000000000eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac9093510d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000"
	bip143Input0     = "2103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241ce9fc198bd25432ac" // P2PK, 6.25 BTC
	bip143Input1     = "00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1"                           // P2WPKH, 6 BTC
	bip143Priv       = "619c335025c7f4012e556c2a58b2506e30b8511b53ade95ea316fd8c3286feb9"
	bip143Pub        = "025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357"
	bip143SigHash    = "c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670"
	bip143Sig        = "304402203609e17b84f6a7d30c80bfa610b5b4542f32a8a0d5447a12fb1366d7f01cc44a0220573a954c4518331561406f90300e8f3358f51928d43c212a8caed02de67eebee"
)

type bip143Vector struct {
	tx    *wire.MsgTx
	utxos []*wire.TxOut
	priv  []byte
	pub   []byte // uncompressed
}

func loadBIP143(t *testing.T) bip143Vector {
	t.Helper()
	tx := wire.NewMsgTx(1)
	require.NoError(t, tx.Deserialize(bytes.NewReader(unhex(t, bip143UnsignedTx))))
	priv := unhex(t, bip143Priv)
	key, pub := btcec.PrivKeyFromBytes(priv)
	key.Zero()
	require.Equal(t, bip143Pub, hex.EncodeToString(pub.SerializeCompressed()))
	return bip143Vector{
		tx:    tx,
		utxos: []*wire.TxOut{wire.NewTxOut(625_000_000, unhex(t, bip143Input0)), wire.NewTxOut(600_000_000, unhex(t, bip143Input1))},
		priv:  priv,
		pub:   pub.SerializeUncompressed(),
	}
}

func fetcherFor(tx *wire.MsgTx, utxos []*wire.TxOut) *txscript.MultiPrevOutFetcher {
	f := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range tx.TxIn {
		f.AddPrevOut(in.PreviousOutPoint, utxos[i])
	}
	return f
}

// TestBIP143NativeP2WPKH checks btcd's BIP-143 sighash against the BIP's
// example, SignSighash's ECDSA output against the published signature, and
// SignPSBT on a PSBT made of the example (its partial signature for input 1
// must be the published one: RFC 6979 makes ECDSA deterministic).
func TestBIP143NativeP2WPKH(t *testing.T) {
	v := loadBIP143(t)
	f := fetcherFor(v.tx, v.utxos)
	h, err := txscript.CalcWitnessSigHash(v.utxos[1].PkScript, txscript.NewTxSigHashes(v.tx, f), txscript.SigHashAll, v.tx, 1, v.utxos[1].Value)
	require.NoError(t, err)
	require.Equal(t, bip143SigHash, hex.EncodeToString(h))

	resp, err := btc.SignSighash(sign.Secp256k1{}, v.priv, v.pub, &signerv1.BitcoinSighash{
		Sighash: h, Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: 1,
	})
	require.NoError(t, err)
	assert.Equal(t, bip143Sig+"01", hex.EncodeToString(resp.GetSignature()))
	assert.Equal(t, "ecdsa:ALL", resp.GetSummary().GetBitcoin().GetScheme())

	pkt, err := psbt.NewFromUnsignedTx(v.tx)
	require.NoError(t, err)
	for i := range v.utxos {
		pkt.Inputs[i].WitnessUtxo = v.utxos[i]
	}
	resp, err = btc.SignPSBT(sign.Secp256k1{}, v.priv, v.pub, &signerv1.BitcoinPsbt{Psbt: serialize(t, pkt), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET})
	require.NoError(t, err)
	signedPkt := parse(t, resp.GetSignedPayload())
	require.Empty(t, signedPkt.Inputs[0].PartialSigs)
	require.Len(t, signedPkt.Inputs[1].PartialSigs, 1)
	assert.Equal(t, bip143Pub, hex.EncodeToString(signedPkt.Inputs[1].PartialSigs[0].PubKey))
	assert.Equal(t, bip143Sig+"01", hex.EncodeToString(signedPkt.Inputs[1].PartialSigs[0].Signature))
	s := resp.GetSummary().GetBitcoin()
	assert.Equal(t, uint64(1_225_000_000), s.GetTotalInput())
	assert.Equal(t, uint64(112_340_000+223_450_000), s.GetTotalOutput())
	assert.Equal(t, uint64(1_225_000_000-112_340_000-223_450_000), s.GetFee())
	assert.Equal(t, "p2pk", s.GetInputs()[0].GetScriptType())
	assert.False(t, s.GetInputs()[0].GetSigned())
	assert.Equal(t, "p2wpkh", s.GetInputs()[1].GetScriptType())
	assert.Equal(t, "bc1qr583w2swedy2acd7rung055k8t3n7udp7vyzyg", s.GetInputs()[1].GetAddress())
	assert.True(t, s.GetInputs()[1].GetSigned())
	assert.Equal(t, uint32(1), s.GetInputs()[1].GetSighashType())
	p2pkh, err := btcutil.NewAddressPubKeyHash(unhex(t, "8280b37df378db99f66f85c95a783a76ac7a6d59"), &chaincfg.MainNetParams)
	require.NoError(t, err)
	assert.Equal(t, p2pkh.EncodeAddress(), s.GetOutputs()[0].GetAddress())
}

type bip341File struct {
	ScriptPubKey []struct {
		Given struct {
			InternalPubkey string `json:"internalPubkey"`
		} `json:"given"`
		Intermediary struct {
			MerkleRoot    *string `json:"merkleRoot"`
			TweakedPubkey string  `json:"tweakedPubkey"`
		} `json:"intermediary"`
		Expected struct {
			ScriptPubKey  string `json:"scriptPubKey"`
			Bip350Address string `json:"bip350Address"`
		} `json:"expected"`
	} `json:"scriptPubKey"`
	KeyPathSpending []struct {
		Given struct {
			RawUnsignedTx string `json:"rawUnsignedTx"`
			UtxosSpent    []struct {
				ScriptPubKey string `json:"scriptPubKey"`
				AmountSats   int64  `json:"amountSats"`
			} `json:"utxosSpent"`
		} `json:"given"`
		InputSpending []struct {
			Given struct {
				TxinIndex       int     `json:"txinIndex"`
				InternalPrivkey string  `json:"internalPrivkey"`
				MerkleRoot      *string `json:"merkleRoot"`
				HashType        uint32  `json:"hashType"`
			} `json:"given"`
			Intermediary struct {
				InternalPubkey string `json:"internalPubkey"`
				TweakedPrivkey string `json:"tweakedPrivkey"`
				SigHash        string `json:"sigHash"`
			} `json:"intermediary"`
			Expected struct {
				Witness []string `json:"witness"`
			} `json:"expected"`
		} `json:"inputSpending"`
	} `json:"keyPathSpending"`
}

func loadBIP341(t *testing.T) bip341File {
	t.Helper()
	var f bip341File
	require.NoError(t, json.Unmarshal(readTestdata(t, "bip341_wallet_vectors.json"), &f))
	require.Len(t, f.ScriptPubKey, 7)
	require.Len(t, f.KeyPathSpending, 1)
	require.Len(t, f.KeyPathSpending[0].InputSpending, 7)
	return f
}

func optHex(t *testing.T, s *string) []byte {
	t.Helper()
	if s == nil {
		return nil
	}
	return unhex(t, *s)
}

// TestBIP341ScriptPubKeyVectors checks the output-key tweak (with and
// without a script tree) btcd computes, and the P2TR address Addresses gives
// for the key-path-only vector.
func TestBIP341ScriptPubKeyVectors(t *testing.T) {
	f := loadBIP341(t)
	for i, v := range f.ScriptPubKey {
		internal, err := schnorr.ParsePubKey(unhex(t, v.Given.InternalPubkey))
		require.NoError(t, err)
		q := txscript.ComputeTaprootOutputKey(internal, optHex(t, v.Intermediary.MerkleRoot))
		assert.Equal(t, v.Intermediary.TweakedPubkey, hex.EncodeToString(schnorr.SerializePubKey(q)), "vector %d", i)
		if v.Intermediary.MerkleRoot == nil {
			addrs, err := btc.Addresses(internal.SerializeUncompressed())
			require.NoError(t, err)
			assert.Equal(t, v.Expected.Bip350Address, addrs.GetBitcoinP2Tr(), "vector %d", i)
		}
	}
}

// TestBIP341KeyPathVectors checks, for every keyPathSpending input: the
// BIP-341 sighash btcd computes; the tweaked private key; the exact witness
// signature (the vectors use all-zero aux_rand); and that SignSighash with
// fresh randomness gives a signature valid under the tweaked output key.
func TestBIP341KeyPathVectors(t *testing.T) {
	f := loadBIP341(t)
	kp := f.KeyPathSpending[0]
	tx := wire.NewMsgTx(2)
	require.NoError(t, tx.Deserialize(bytes.NewReader(unhex(t, kp.Given.RawUnsignedTx))))
	var utxos []*wire.TxOut
	for _, u := range kp.Given.UtxosSpent {
		utxos = append(utxos, wire.NewTxOut(u.AmountSats, unhex(t, u.ScriptPubKey)))
	}
	fetch := fetcherFor(tx, utxos)
	hashes := txscript.NewTxSigHashes(tx, fetch)
	for _, in := range kp.InputSpending {
		g := in.Given
		t.Run("input"+string(rune('0'+g.TxinIndex)), func(t *testing.T) {
			ht := txscript.SigHashType(g.HashType)
			h, err := txscript.CalcTaprootSignatureHash(hashes, ht, tx, g.TxinIndex, fetch)
			require.NoError(t, err)
			require.Equal(t, in.Intermediary.SigHash, hex.EncodeToString(h))

			priv := unhex(t, g.InternalPrivkey)
			root := optHex(t, g.MerkleRoot)
			tweaked, err := btc.TweakedPrivKey(priv, root)
			require.NoError(t, err)
			assert.Equal(t, in.Intermediary.TweakedPrivkey, hex.EncodeToString(tweaked))

			sig, err := btc.SignTaprootAux(priv, h, root, ht, [32]byte{})
			require.NoError(t, err)
			assert.Equal(t, in.Expected.Witness[0], hex.EncodeToString(sig))

			_, pub := btcec.PrivKeyFromBytes(priv)
			resp, err := btc.SignSighash(sign.Secp256k1{}, priv, pub.SerializeUncompressed(), &signerv1.BitcoinSighash{
				Sighash: h, Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, SighashType: g.HashType,
				TaprootTweak: true, TaprootMerkleRoot: root,
			})
			require.NoError(t, err)
			got := resp.GetSignature()
			if ht == txscript.SigHashDefault {
				require.Len(t, got, 64)
			} else {
				require.Len(t, got, 65)
				assert.Equal(t, byte(ht), got[64])
			}
			outKey, err := schnorr.ParsePubKey(utxos[g.TxinIndex].PkScript[2:])
			require.NoError(t, err)
			s, err := schnorr.ParseSignature(got[:64])
			require.NoError(t, err)
			assert.True(t, s.Verify(h, outKey))
			assert.True(t, strings.HasPrefix(resp.GetSummary().GetBitcoin().GetScheme(), "schnorr_taproot:"))
		})
	}
}

// TestBIP341VectorPSBT signs input 0 of the BIP-341 key-path vector (the
// only BIP-86 input: no script tree, SIGHASH_SINGLE) through SignPSBT; the
// other eight inputs belong to other keys and must stay unsigned.
func TestBIP341VectorPSBT(t *testing.T) {
	f := loadBIP341(t)
	kp := f.KeyPathSpending[0]
	in := kp.InputSpending[0]
	require.Nil(t, in.Given.MerkleRoot)
	tx := wire.NewMsgTx(2)
	require.NoError(t, tx.Deserialize(bytes.NewReader(unhex(t, kp.Given.RawUnsignedTx))))
	pkt, err := psbt.NewFromUnsignedTx(tx)
	require.NoError(t, err)
	var utxos []*wire.TxOut
	for i, u := range kp.Given.UtxosSpent {
		utxos = append(utxos, wire.NewTxOut(u.AmountSats, unhex(t, u.ScriptPubKey)))
		pkt.Inputs[i].WitnessUtxo = utxos[i]
	}
	pkt.Inputs[0].SighashType = txscript.SigHashSingle
	priv := unhex(t, in.Given.InternalPrivkey)
	_, pub := btcec.PrivKeyFromBytes(priv)

	resp, err := btc.SignPSBT(sign.Secp256k1{}, priv, pub.SerializeUncompressed(), &signerv1.BitcoinPsbt{Psbt: serialize(t, pkt), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET})
	require.NoError(t, err)
	out := parse(t, resp.GetSignedPayload())
	sig := out.Inputs[0].TaprootKeySpendSig
	require.Len(t, sig, 65)
	assert.Equal(t, byte(txscript.SigHashSingle), sig[64])
	outKey, err := schnorr.ParsePubKey(utxos[0].PkScript[2:])
	require.NoError(t, err)
	s, err := schnorr.ParseSignature(sig[:64])
	require.NoError(t, err)
	assert.True(t, s.Verify(unhex(t, in.Intermediary.SigHash), outKey))
	for i := 1; i < len(out.Inputs); i++ {
		assert.Empty(t, out.Inputs[i].TaprootKeySpendSig, "input %d", i)
		assert.Empty(t, out.Inputs[i].PartialSigs, "input %d", i)
	}
	sum := resp.GetSummary().GetBitcoin()
	assert.Equal(t, uint32(1), sum.GetSignedInputs())
	assert.Equal(t, uint32(3), sum.GetInputs()[0].GetSighashType())
	assert.Equal(t, "bc1p2wsldez5mud2yam29q22wgfh9439spgduvct83k3pm50fcxa5dps59h4z5", sum.GetInputs()[0].GetAddress())
	assert.Equal(t, uint64(4_494_000_000), sum.GetTotalInput())
	assert.Equal(t, uint64(4_410_000_000), sum.GetTotalOutput())
	assert.Equal(t, uint64(84_000_000), sum.GetFee())
}

// TestAddressVectors checks Addresses against published addresses:
// BIP-84's and BIP-86's first receiving addresses (keys from the BIP-84 WIF
// and the BIP-86 account xprv of the "abandon ... about" mnemonic) and
// BIP-173's P2WPKH example (the generator point, private key 1).
func TestAddressVectors(t *testing.T) {
	// BIP-84: m/84'/0'/0'/0/0.
	wif, err := btcutil.DecodeWIF("KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9d")
	require.NoError(t, err)
	require.Equal(t, "0330d54fd0dd420a6e5f8d3624f5f3482cae350f79d5f0753bf5beef9c2d91af3c", hex.EncodeToString(wif.PrivKey.PubKey().SerializeCompressed()))
	a, err := btc.Addresses(wif.PrivKey.PubKey().SerializeUncompressed())
	require.NoError(t, err)
	assert.Equal(t, "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu", a.GetBitcoinP2Wpkh())

	// BIP-86: m/86'/0'/0'/0/0, derived from the published account 0 xprv.
	acct, err := hdkeychain.NewKeyFromString("xprv9xgqHN7yz9MwCkxsBPN5qetuNdQSUttZNKw1dcYTV4mkaAFiBVGQziHs3NRSWMkCzvgjEe3n9xV8oYywvM8at9yRqyaZVz6TYYhX98VjsUk")
	require.NoError(t, err)
	ext, err := acct.Derive(0)
	require.NoError(t, err)
	child, err := ext.Derive(0)
	require.NoError(t, err)
	pub, err := child.ECPubKey()
	require.NoError(t, err)
	require.Equal(t, "cc8a4bc64d897bddc5fbc2f670f7a8ba0b386779106cf1223c6fc5d7cd6fc115", hex.EncodeToString(schnorr.SerializePubKey(pub)))
	a, err = btc.Addresses(pub.SerializeUncompressed())
	require.NoError(t, err)
	assert.Equal(t, "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr", a.GetBitcoinP2Tr())
	assertSameProgram(t, a.GetBitcoinP2Tr(), a.GetBitcoinTestnetP2Tr(), &chaincfg.TestNet3Params, "tb1p")
	assertSameProgram(t, a.GetBitcoinP2Tr(), a.GetBitcoinRegtestP2Tr(), &chaincfg.RegressionNetParams, "bcrt1p")

	// BIP-173: 0014751e76e8199196d454941c45d1b3a323f1433bd6 is P2WPKH of G.
	_, g := btcec.PrivKeyFromBytes([]byte{1})
	a, err = btc.Addresses(g.SerializeUncompressed())
	require.NoError(t, err)
	assert.Equal(t, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", a.GetBitcoinP2Wpkh())
	assert.Equal(t, "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", a.GetBitcoinTestnetP2Wpkh())
	assertSameProgram(t, a.GetBitcoinP2Wpkh(), a.GetBitcoinRegtestP2Wpkh(), &chaincfg.RegressionNetParams, "bcrt1q")
}

// assertSameProgram checks that other decodes on params to the same witness
// program as the mainnet address main.
func assertSameProgram(t *testing.T, main, other string, params *chaincfg.Params, prefix string) {
	t.Helper()
	require.True(t, strings.HasPrefix(other, prefix), other)
	m, err := btcutil.DecodeAddress(main, &chaincfg.MainNetParams)
	require.NoError(t, err)
	o, err := btcutil.DecodeAddress(other, params)
	require.NoError(t, err)
	assert.Equal(t, m.ScriptAddress(), o.ScriptAddress())
	assert.True(t, o.IsForNet(params))
}

// TestECDSALowS checks the DER signature is low-S and parses strictly.
func TestECDSALowS(t *testing.T) {
	v := loadBIP143(t)
	for i := range 8 {
		h := bytes.Repeat([]byte{byte(i + 1)}, 32)
		resp, err := btc.SignSighash(sign.Secp256k1{}, v.priv, v.pub, &signerv1.BitcoinSighash{Sighash: h, Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: 1})
		require.NoError(t, err)
		der := resp.GetSignature()
		require.Equal(t, byte(1), der[len(der)-1])
		sig, err := ecdsa.ParseDERSignature(der[:len(der)-1])
		require.NoError(t, err)
		sv := sig.S()
		assert.False(t, sv.IsOverHalfOrder(), "high S")
		_, pub := btcec.PrivKeyFromBytes(v.priv)
		assert.True(t, sig.Verify(h, pub))
	}
}
