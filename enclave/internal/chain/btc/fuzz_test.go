package btc_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// seedPSBTs are PSBTs of key "key a" that SignPSBT accepts, covering both
// input kinds, explicit sighash types, non_witness_utxo and derivation data.
func seedPSBTs(t testing.TB) [][]byte {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	outs := []*wire.TxOut{wire.NewTxOut(90_000, b.p2wpkh), wire.NewTxOut(25_000, a.p2tr)}
	var seeds [][]byte
	for _, spends := range [][]spend{
		{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 70_000}},
		{{script: a.p2wpkh, amount: 50_000, sighash: 0x83}, {script: a.p2tr, amount: 70_000, sighash: 0x82}},
		{{script: a.p2wpkh, amount: 50_000, nonWitness: true}, {script: b.p2tr, amount: 70_000}},
	} {
		pkt, _ := buildPSBT(t, spends, outs)
		seeds = append(seeds, serialize(t, pkt))
	}
	pkt, _ := buildPSBT(t, []spend{{script: a.p2tr, amount: 200_000}}, outs)
	pkt.Inputs[0].TaprootBip32Derivation = []*psbt.TaprootBip32Derivation{{XOnlyPubKey: a.compressed[1:], MasterKeyFingerprint: 7, Bip32Path: []uint32{86 | 1<<31, 1 << 31, 1 << 31, 0, 3}}}
	pkt.Inputs[0].TaprootInternalKey = a.compressed[1:]
	pkt.Outputs[1].TaprootInternalKey = a.compressed[1:]
	seeds = append(seeds, serialize(t, pkt))
	return seeds
}

// FuzzSignPSBT feeds arbitrary bytes to SignPSBT. It must never panic (or
// rely on the decoder-panic guard), every refusal must wrap
// ErrInvalidPayload, and an accepted PSBT must come back as a PSBT with the
// same transaction, at least one input signed and a consistent summary.
func FuzzSignPSBT(f *testing.F) {
	for _, s := range seedPSBTs(f) {
		f.Add(s)
	}
	files, err := filepath.Glob(filepath.Join("testdata", "bip174", "*.psbt"))
	require.NoError(f, err)
	for _, name := range files {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add(b)
	}
	a := newTestKey(f, "key a")
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := btc.SignPSBT(sign.Secp256k1{}, a.priv, a.pub, &signerv1.BitcoinPsbt{Psbt: data, Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET})
		if err != nil {
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			require.NotErrorIs(t, err, btc.ErrDecoderFault)
			return
		}
		in, err := psbt.NewFromRawBytes(bytes.NewReader(data), false)
		require.NoError(t, err)
		out, err := psbt.NewFromRawBytes(bytes.NewReader(resp.GetSignedPayload()), false)
		require.NoError(t, err)
		require.Equal(t, in.UnsignedTx.TxHash(), out.UnsignedTx.TxHash())
		s := resp.GetSummary().GetBitcoin()
		require.GreaterOrEqual(t, s.GetSignedInputs(), uint32(1))
		require.Equal(t, s.GetTotalInput()-s.GetTotalOutput(), s.GetFee())
		require.Len(t, s.GetInputs(), len(in.UnsignedTx.TxIn))
		require.Len(t, s.GetOutputs(), len(in.UnsignedTx.TxOut))
		for i, si := range s.GetInputs() {
			if !si.GetSigned() {
				continue
			}
			switch si.GetScriptType() {
			case "p2wpkh":
				require.NotEmpty(t, out.Inputs[i].PartialSigs)
			case "p2tr":
				require.Contains(t, []int{64, 65}, len(out.Inputs[i].TaprootKeySpendSig))
			default:
				t.Fatalf("input %d signed with script type %q", i, si.GetScriptType())
			}
		}
	})
}

// BenchmarkSignPSBT signs a PSBT with one P2WPKH and one P2TR input of the
// key (decode, checks, two sighashes, ECDSA + Schnorr with verification,
// encode).
func BenchmarkSignPSBT(b *testing.B) {
	a := newTestKey(b, "key a")
	c := newTestKey(b, "key b")
	pkt, _ := buildPSBT(b, []spend{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 70_000}},
		[]*wire.TxOut{wire.NewTxOut(90_000, c.p2wpkh), wire.NewTxOut(25_000, a.p2tr)})
	raw := serialize(b, pkt)
	req := &signerv1.BitcoinPsbt{Psbt: raw, Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := btc.SignPSBT(sign.Secp256k1{}, a.priv, a.pub, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignSighash signs one sighash with each scheme.
func BenchmarkSignSighash(b *testing.B) {
	a := newTestKey(b, "key a")
	h := bytes.Repeat([]byte{7}, 32)
	for _, tt := range []struct {
		name string
		req  *signerv1.BitcoinSighash
	}{
		{"ecdsa", &signerv1.BitcoinSighash{Sighash: h, Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: uint32(txscript.SigHashAll)}},
		{"schnorr_taproot", &signerv1.BitcoinSighash{Sighash: h, Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, TaprootTweak: true}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := btc.SignSighash(sign.Secp256k1{}, a.priv, a.pub, tt.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
