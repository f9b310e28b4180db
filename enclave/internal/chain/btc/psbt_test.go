package btc_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const (
	mainnet = signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET
	testnet = signerv1.BitcoinNetwork_BITCOIN_NETWORK_TESTNET
	regtest = signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST
)

func signPSBT(k testKey, b []byte, net signerv1.BitcoinNetwork) (*signerv1.SignResponse, error) {
	return btc.SignPSBT(sign.Secp256k1{}, k.priv, k.pub, &signerv1.BitcoinPsbt{Psbt: b, Network: net})
}

// TestSignPSBTEndToEnd builds PSBTs with one P2WPKH and one P2TR input of the
// key, signs them, then finalizes with btcutil/psbt and runs btcd's script
// engine on the result. Explicit sighash types must be honoured: the engine
// recomputes each digest from the type byte in the signature.
func TestSignPSBTEndToEnd(t *testing.T) {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	outs := []*wire.TxOut{wire.NewTxOut(90_000, b.p2wpkh), wire.NewTxOut(25_000, a.p2tr)}
	tests := []struct {
		name          string
		spends        []spend
		wantTypes     []uint32 // summary sighash types
		wantTapSigLen int
	}{
		{"defaults", []spend{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 70_000}}, []uint32{1, 0}, 64},
		{"explicit ALL", []spend{{script: a.p2wpkh, amount: 50_000, sighash: 1}, {script: a.p2tr, amount: 70_000, sighash: 1}}, []uint32{1, 1}, 65},
		{"NONE|ANYONECANPAY and SINGLE", []spend{{script: a.p2wpkh, amount: 50_000, sighash: 0x82}, {script: a.p2tr, amount: 70_000, sighash: 3}}, []uint32{0x82, 3}, 65},
		{"SINGLE|ANYONECANPAY and ALL|ANYONECANPAY", []spend{{script: a.p2wpkh, amount: 50_000, sighash: 0x83}, {script: a.p2tr, amount: 70_000, sighash: 0x81}}, []uint32{0x83, 0x81}, 65},
		{"NONE and NONE|ANYONECANPAY", []spend{{script: a.p2wpkh, amount: 50_000, sighash: 2}, {script: a.p2tr, amount: 70_000, sighash: 0x82}}, []uint32{2, 0x82}, 65},
		{"non_witness_utxo only", []spend{{script: a.p2wpkh, amount: 50_000, nonWitness: true}, {script: a.p2tr, amount: 70_000, nonWitness: true}}, []uint32{1, 0}, 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, utxos := buildPSBT(t, tt.spends, outs)
			resp, err := signPSBT(a, serialize(t, pkt), mainnet)
			require.NoError(t, err)
			assert.Empty(t, resp.GetSignature())
			assert.Empty(t, resp.GetKeyId())

			signed := parse(t, resp.GetSignedPayload())
			require.Len(t, signed.Inputs[0].PartialSigs, 1)
			assert.Equal(t, a.compressed, signed.Inputs[0].PartialSigs[0].PubKey)
			assert.Len(t, signed.Inputs[1].TaprootKeySpendSig, tt.wantTapSigLen)
			assert.Empty(t, signed.Inputs[0].FinalScriptWitness, "not finalized")

			s := resp.GetSummary().GetBitcoin()
			require.NotNil(t, s)
			assert.Equal(t, mainnet, s.GetNetwork())
			assert.Equal(t, uint32(2), s.GetSignedInputs())
			assert.Equal(t, uint64(120_000), s.GetTotalInput())
			assert.Equal(t, uint64(115_000), s.GetTotalOutput())
			assert.Equal(t, uint64(5_000), s.GetFee())
			require.Len(t, s.GetInputs(), 2)
			for i, in := range s.GetInputs() {
				assert.Equal(t, pkt.UnsignedTx.TxIn[i].PreviousOutPoint.Hash.String(), in.GetTxid())
				assert.Equal(t, pkt.UnsignedTx.TxIn[i].PreviousOutPoint.Index, in.GetVout())
				assert.True(t, in.GetSigned())
				assert.Equal(t, tt.wantTypes[i], in.GetSighashType(), "input %d", i)
			}
			addrs, err := btc.Addresses(a.pub)
			require.NoError(t, err)
			assert.Equal(t, "p2wpkh", s.GetInputs()[0].GetScriptType())
			assert.Equal(t, addrs.GetBitcoinP2Wpkh(), s.GetInputs()[0].GetAddress())
			assert.Equal(t, "p2tr", s.GetInputs()[1].GetScriptType())
			assert.Equal(t, addrs.GetBitcoinP2Tr(), s.GetInputs()[1].GetAddress())
			require.Len(t, s.GetOutputs(), 2)
			assert.False(t, s.GetOutputs()[0].GetIsChange())
			assert.Equal(t, b.p2wpkh, s.GetOutputs()[0].GetScript())
			assert.True(t, strings.HasPrefix(s.GetOutputs()[0].GetAddress(), "bc1q"))
			assert.True(t, s.GetOutputs()[1].GetIsChange())
			assert.Equal(t, addrs.GetBitcoinP2Tr(), s.GetOutputs()[1].GetAddress())

			finalizeAndVerify(t, signed, utxos)
		})
	}
}

// TestSignPSBTTwoSigners signs a four-input PSBT with two keys in turn, as
// two enclave keys co-spending would, and verifies the final transaction.
// Signing again with the same key replaces its signature.
func TestSignPSBTTwoSigners(t *testing.T) {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	pkt, utxos := buildPSBT(t, []spend{
		{script: a.p2wpkh, amount: 10_000}, {script: b.p2tr, amount: 20_000},
		{script: a.p2tr, amount: 30_000}, {script: b.p2wpkh, amount: 40_000, nonWitness: true},
	}, []*wire.TxOut{wire.NewTxOut(99_000, []byte{txscript.OP_RETURN, 0x01, 0x02})})

	r1, err := signPSBT(a, serialize(t, pkt), regtest)
	require.NoError(t, err)
	assert.Equal(t, uint32(2), r1.GetSummary().GetBitcoin().GetSignedInputs())
	assert.Equal(t, []bool{true, false, true, false}, signedFlags(r1))
	assert.Empty(t, r1.GetSummary().GetBitcoin().GetOutputs()[0].GetAddress(), "no address for OP_RETURN")
	assert.Equal(t, []byte{txscript.OP_RETURN, 0x01, 0x02}, r1.GetSummary().GetBitcoin().GetOutputs()[0].GetScript())
	assert.True(t, strings.HasPrefix(r1.GetSummary().GetBitcoin().GetInputs()[0].GetAddress(), "bcrt1q"))

	again, err := signPSBT(a, r1.GetSignedPayload(), regtest)
	require.NoError(t, err)
	assert.Len(t, parse(t, again.GetSignedPayload()).Inputs[0].PartialSigs, 1)

	r2, err := signPSBT(b, again.GetSignedPayload(), regtest)
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true, false, true}, signedFlags(r2))
	finalizeAndVerify(t, parse(t, r2.GetSignedPayload()), utxos)
}

func signedFlags(r *signerv1.SignResponse) []bool {
	var out []bool
	for _, in := range r.GetSummary().GetBitcoin().GetInputs() {
		out = append(out, in.GetSigned())
	}
	return out
}

// TestSignPSBTDerivationNetwork accepts BIP-32 data of the request's network.
func TestSignPSBTDerivationNetwork(t *testing.T) {
	a := newTestKey(t, "key a")
	const h = 1 << 31
	for _, tt := range []struct {
		net  signerv1.BitcoinNetwork
		coin uint32
	}{{mainnet, 0}, {testnet, 1}, {regtest, 1}} {
		pkt, _ := buildPSBT(t, []spend{{script: a.p2wpkh, amount: 1000}}, []*wire.TxOut{wire.NewTxOut(900, a.p2tr)})
		pkt.Inputs[0].Bip32Derivation = []*psbt.Bip32Derivation{{PubKey: a.compressed, MasterKeyFingerprint: 1, Bip32Path: []uint32{84 + h, tt.coin + h, h, 0, 0}}}
		_, err := signPSBT(a, serialize(t, pkt), tt.net)
		require.NoError(t, err, "%v", tt.net)
	}
}

// TestSignPSBTErrors covers refusals that need a well-formed PSBT.
func TestSignPSBTErrors(t *testing.T) {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	const h = 1 << 31
	two := []spend{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 70_000}}
	outs := func() []*wire.TxOut { return []*wire.TxOut{wire.NewTxOut(100_000, b.p2wpkh)} }
	tests := []struct {
		name    string
		spends  []spend
		outs    []*wire.TxOut
		mutate  func(p *psbt.Packet)
		net     signerv1.BitcoinNetwork
		want    string
		wantErr error
	}{
		{name: "missing utxo", spends: two, mutate: func(p *psbt.Packet) { p.Inputs[1].WitnessUtxo = nil },
			want: "bitcoin_psbt: input 1: missing witness_utxo (UTXO data required to sign)"},
		{name: "foreign key only", spends: []spend{{script: b.p2wpkh, amount: 200_000}, {script: b.p2tr, amount: 1}},
			want: "bitcoin_psbt: no input belongs to this key", wantErr: btc.ErrNoInputForKey},
		{name: "all of ours finalized", spends: two, mutate: func(p *psbt.Packet) {
			p.Inputs[0].FinalScriptWitness = []byte{0}
			p.Inputs[1].FinalScriptWitness = []byte{0}
		}, wantErr: btc.ErrNoInputForKey},
		{name: "outputs exceed inputs", spends: two, outs: []*wire.TxOut{wire.NewTxOut(120_001, b.p2wpkh)},
			want: "bitcoin_psbt: outputs (120001 sat) exceed inputs (120000 sat)"},
		{name: "input amount out of range", spends: []spend{{script: a.p2wpkh, amount: 21e14 + 1}},
			want: "bitcoin_psbt: input 0: amount 2100000000000001 sat is out of range"},
		{name: "negative input amount", spends: []spend{{script: a.p2wpkh, amount: -1}}, want: "input 0: amount -1 sat is out of range"},
		{name: "input sum overflow", spends: []spend{{script: a.p2wpkh, amount: 15e14}, {script: a.p2tr, amount: 15e14}},
			want: "input amounts overflow"},
		{name: "output sum overflow", spends: []spend{{script: a.p2wpkh, amount: 1000}},
			outs: []*wire.TxOut{wire.NewTxOut(15e14, b.p2wpkh), wire.NewTxOut(15e14, b.p2wpkh)}, want: "output amounts overflow"},
		{name: "negative output", spends: two, outs: []*wire.TxOut{wire.NewTxOut(-5, b.p2wpkh)}, want: "output 0: amount -5 sat is out of range"},
		{name: "legacy p2pkh of the key", spends: []spend{{script: a.p2wpkh, amount: 1000}, {script: a.p2pkh, amount: 1000}},
			want: "bitcoin_psbt: input 1: spends a p2pkh output of this key, which cannot be signed (only p2wpkh and p2tr key path)"},
		{name: "legacy p2pkh of the key with non_witness_utxo", spends: []spend{{script: a.p2pkh, amount: 1000, nonWitness: true}},
			want: "input 0: spends a p2pkh output of this key"},
		{name: "nested p2sh-p2wpkh of the key", spends: []spend{{script: p2shOf(t, a.p2wpkh), amount: 1000}},
			want: "input 0: spends a p2sh-p2wpkh output of this key"},
		{name: "derivation names key on foreign script", spends: []spend{{script: a.p2wpkh, amount: 1000}, {script: b.p2wpkh, amount: 1000}},
			mutate: func(p *psbt.Packet) {
				p.Inputs[1].Bip32Derivation = []*psbt.Bip32Derivation{{PubKey: a.compressed, MasterKeyFingerprint: 1, Bip32Path: []uint32{h, 0}}}
			}, want: "input 1: derivation data names this key"},
		{name: "undefined sighash type p2wpkh", spends: []spend{{script: a.p2wpkh, amount: 1000, sighash: 4}},
			want: "bitcoin_psbt: input 0: sighash_type 0x04 is not valid for p2wpkh"},
		{name: "undefined sighash type p2tr", spends: []spend{{script: a.p2tr, amount: 1000, sighash: 0x84}},
			want: "input 0: sighash_type 0x84 is not a BIP-341 sighash type"},
		{name: "SINGLE without output", spends: []spend{{script: a.p2wpkh, amount: 500_000}, {script: a.p2wpkh, amount: 1000, sighash: 3}},
			want: "bitcoin_psbt: input 1: SIGHASH_SINGLE without an output at index 1"},
		{name: "SINGLE|ANYONECANPAY without output p2tr", spends: []spend{{script: a.p2tr, amount: 500_000}, {script: a.p2tr, amount: 1000, sighash: 0x83}},
			want: "input 1: SIGHASH_SINGLE without an output at index 1"},
		{name: "network unset", spends: two, net: signerv1.BitcoinNetwork_BITCOIN_NETWORK_UNSPECIFIED,
			want: "bitcoin_psbt: network must be mainnet, testnet or regtest"},
		{name: "testnet path on mainnet", spends: two, mutate: func(p *psbt.Packet) {
			p.Inputs[0].Bip32Derivation = []*psbt.Bip32Derivation{{PubKey: a.compressed, MasterKeyFingerprint: 1, Bip32Path: []uint32{84 + h, 1 + h, h, 0, 0}}}
		}, want: "bitcoin_psbt: input 0: BIP-32 path m/84'/1'/... is for a test network but the network is mainnet"},
		{name: "mainnet taproot path on testnet", spends: two, net: testnet, mutate: func(p *psbt.Packet) {
			p.Inputs[1].TaprootBip32Derivation = []*psbt.TaprootBip32Derivation{{XOnlyPubKey: a.compressed[1:], MasterKeyFingerprint: 1, Bip32Path: []uint32{86 + h, h, h, 0, 0}}}
		}, want: "input 1: BIP-32 path m/86'/0'/... is for mainnet but the network is testnet3"},
		{name: "mainnet change path on regtest", spends: two, net: regtest, mutate: func(p *psbt.Packet) {
			p.Outputs[0].Bip32Derivation = []*psbt.Bip32Derivation{{PubKey: b.compressed, MasterKeyFingerprint: 1, Bip32Path: []uint32{44 + h, h, h, 1, 0}}}
		}, want: "output 0: BIP-32 path m/44'/0'/... is for mainnet but the network is regtest"},
		{name: "tpub on mainnet", spends: two, mutate: func(p *psbt.Packet) {
			key := append([]byte{0x01, 0x04, 0x35, 0x87, 0xcf}, make([]byte, 74)...)
			p.Unknowns = append(p.Unknowns, &psbt.Unknown{Key: key, Value: []byte{1, 2, 3, 4}})
		}, want: "bitcoin_psbt: global xpub is for a test network but the network is mainnet"},
		{name: "xpub on testnet", spends: two, net: testnet, mutate: func(p *psbt.Packet) {
			key := append([]byte{0x01, 0x04, 0x88, 0xb2, 0x1e}, make([]byte, 74)...)
			p.Unknowns = append(p.Unknowns, &psbt.Unknown{Key: key, Value: []byte{1, 2, 3, 4}})
		}, want: "global xpub is for mainnet but the network is testnet3"},
		{name: "psbt version 2", spends: two, mutate: func(p *psbt.Packet) {
			p.Unknowns = append(p.Unknowns, &psbt.Unknown{Key: []byte{0xfb}, Value: []byte{2, 0, 0, 0}})
		}, want: "bitcoin_psbt: PSBT version 2 is not supported (only version 0)"},
		{name: "duplicate outpoint", spends: two, mutate: func(p *psbt.Packet) {
			p.UnsignedTx.TxIn[1].PreviousOutPoint = p.UnsignedTx.TxIn[0].PreviousOutPoint
		}, want: "bitcoin_psbt: input 1 spends the same outpoint as input 0"},
		{name: "null outpoint", spends: two, mutate: func(p *psbt.Packet) {
			p.UnsignedTx.TxIn[0].PreviousOutPoint = wire.OutPoint{Index: 0xffffffff}
		}, want: "input 0 spends the null (coinbase) outpoint"},
		{name: "non_witness_utxo of another tx", spends: []spend{{script: a.p2wpkh, amount: 1000, nonWitness: true}}, mutate: func(p *psbt.Packet) {
			p.UnsignedTx.TxIn[0].PreviousOutPoint.Hash = chainhash.Hash{9}
		}, want: "input 0: non_witness_utxo is not the transaction"},
		{name: "non_witness_utxo output missing", spends: []spend{{script: a.p2wpkh, amount: 1000, nonWitness: true}}, mutate: func(p *psbt.Packet) {
			p.UnsignedTx.TxIn[0].PreviousOutPoint.Index = 5
		}, want: "input 0: non_witness_utxo has no output 5"},
		{name: "witness_utxo disagrees", spends: []spend{{script: a.p2wpkh, amount: 1000, nonWitness: true}}, mutate: func(p *psbt.Packet) {
			p.Inputs[0].WitnessUtxo = wire.NewTxOut(999_999, a.p2wpkh)
		}, want: "input 0: witness_utxo disagrees with non_witness_utxo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.outs
			if o == nil {
				o = outs()
			}
			pkt, _ := buildPSBT(t, tt.spends, o)
			if tt.mutate != nil {
				tt.mutate(pkt)
			}
			net := tt.net
			if net == 0 && !strings.Contains(tt.name, "unset") {
				net = mainnet
			}
			resp, err := signPSBT(a, serialize(t, pkt), net)
			require.Error(t, err)
			assert.Nil(t, resp)
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			if tt.want != "" {
				assert.Contains(t, err.Error(), tt.want)
			}
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

func p2shOf(t *testing.T, redeem []byte) []byte {
	t.Helper()
	addr, err := btcutil.NewAddressScriptHash(redeem, &chaincfg.MainNetParams)
	require.NoError(t, err)
	s, err := txscript.PayToAddrScript(addr)
	require.NoError(t, err)
	return s
}

// TestSignPSBTMalformed feeds byte-level malformations, including ones that
// make btcd's own PSBT decoder panic or allocate without bound; each must be
// refused with a clear error before btcd sees it.
func TestSignPSBTMalformed(t *testing.T) {
	a := newTestKey(t, "key a")
	pkt, _ := buildPSBT(t, []spend{{script: a.p2wpkh, amount: 50_000}}, []*wire.TxOut{wire.NewTxOut(40_000, a.p2tr)})
	valid := serialize(t, pkt)
	tx := pkt.UnsignedTx
	wu := kv{[]byte{0x01}, txOutBytes(50_000, a.p2wpkh)}
	hugeInputs := []byte("psbt\xff\x01\x00\x0a\x02\x00\x00\x00\xfe\xff\xff\xff\x00\x00\x00")
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "not a binary PSBT"},
		{"base64 instead of binary", []byte("cHNidP8BAHUCAAAAASaBcTce3/KF6Tet7qSze3gADAVmy7OtZGQXE8pCFxv2AAAAAAD+////"), "not a binary PSBT"},
		{"bad magic", append([]byte("psbx\xff"), valid[5:]...), "not a binary PSBT"},
		{"truncated", valid[:len(valid)/2], "truncated"},
		{"truncated by one", valid[:len(valid)-1], "output 0: truncated key"},
		{"trailing byte", append(bytes.Clone(valid), 0x00), "1 unexpected bytes after the last output map"},
		{"too large", append([]byte("psbt\xff"), make([]byte, btc.MaxPSBTSize)...), "limit 4194304"},
		{"no unsigned tx", []byte("psbt\xff\x00"), "global map has no unsigned transaction"},
		{"unsigned tx not first", rawPSBTWith(t, tx, []kv{{[]byte{0xfc, 1}, []byte{1}}}), "global map must start with the unsigned transaction"},
		{"input count beyond data", hugeInputs, "unsigned transaction: input count larger than the data"},
		{"duplicate key", rawPSBT(t, tx, nil, [][]kv{{wu, wu}}, [][]kv{{}}), "input 0: duplicate key of type 0x01"},
		{"empty bip32 derivation (btcd panics)", rawPSBT(t, tx, nil, [][]kv{{wu, {append([]byte{0x06}, a.compressed...), nil}}}, [][]kv{{}}),
			"input 0: malformed BIP-32 derivation"},
		{"empty output bip32 derivation", rawPSBT(t, tx, nil, [][]kv{{wu}}, [][]kv{{{append([]byte{0x02}, a.compressed...), nil}}}),
			"output 0: malformed BIP-32 derivation"},
		{"taproot derivation hash count overflow (btcd panics)", rawPSBT(t, tx, nil, [][]kv{{wu, {append([]byte{0x16}, a.compressed[1:]...),
			append([]byte{0xff, 1, 0, 0, 0, 0, 0, 0, 8}, make([]byte, 40)...)}}}, [][]kv{{}}), "input 0: malformed taproot BIP-32 derivation"},
		{"witness_utxo with trailing byte", rawPSBT(t, tx, nil, [][]kv{{{[]byte{0x01}, append(txOutBytes(50_000, a.p2wpkh), 0)}}}, [][]kv{{}}),
			"input 0: malformed witness_utxo"},
		{"too many pairs", rawPSBT(t, tx, nil, [][]kv{append([]kv{wu}, manyPairs(1000)...)}, [][]kv{{}}), "input 0: more than 1000 entries"},
		{"too many inputs", rawPSBT(t, txWith(2_501, 1), nil, nil, nil), "transaction has 2501 inputs and 1 outputs, limits 2500 and 10000"},
		{"too many outputs", rawPSBT(t, txWith(1, 10_001), nil, nil, nil), "transaction has 1 inputs and 10001 outputs"},
		{"too many pairs in total", rawPSBT(t, txWith(101, 1), nil, repeatMap(append([]kv{wu}, manyPairs(999)...), 101), [][]kv{{}}),
			"more than 100000 entries in the PSBT"},
		// Each of these makes btcd parse a public key (maxKeyEntries).
		{"too many derivations", rawPSBT(t, txWith(1, 11), nil, [][]kv{{wu}}, repeatMap(derivations(t, 0x02, 1000), 11)),
			"more than 10000 entries keyed by a public key"},
		{"too many partial signatures", rawPSBT(t, txWith(11, 1), nil, repeatMap(append([]kv{wu}, derivations(t, 0x02, 999)...), 11), [][]kv{{}}),
			"more than 10000 entries keyed by a public key"},
		{"non_witness_utxo witness flood", rawPSBT(t, tx, nil, [][]kv{{wu, {[]byte{0x00}, witnessFlood(t, 1<<18+1)}}}, [][]kv{{}}),
			"witness items"},
		{"non_witness_utxo bad segwit flag", rawPSBT(t, tx, nil, [][]kv{{wu, {[]byte{0x00}, []byte{2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}}}}, [][]kv{{}}),
			"input 0 non_witness_utxo: bad segwit marker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := signPSBT(a, tt.in, mainnet)
			require.Error(t, err)
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.NotErrorIs(t, err, btc.ErrDecoderFault)
			assert.Contains(t, err.Error(), tt.want)
			assert.True(t, strings.HasPrefix(err.Error(), "bitcoin_psbt: "), err.Error())
		})
	}
}

// TestSignPSBTLongWitnessUTXOScript checks a witness_utxo whose script is
// 253 bytes or more (three-byte length): btcd's own decoder mis-reads it,
// the package must not.
func TestSignPSBTLongWitnessUTXOScript(t *testing.T) {
	a := newTestKey(t, "key a")
	long := append([]byte{txscript.OP_RETURN}, bytes.Repeat([]byte{txscript.OP_NOP}, 299)...)
	pkt, _ := buildPSBT(t, []spend{{script: a.p2wpkh, amount: 50_000}, {script: long, amount: 7_000}},
		[]*wire.TxOut{wire.NewTxOut(40_000, a.p2tr)})
	resp, err := signPSBT(a, serialize(t, pkt), mainnet)
	require.NoError(t, err)
	s := resp.GetSummary().GetBitcoin()
	assert.Equal(t, uint64(7_000), s.GetInputs()[1].GetAmount())
	assert.Equal(t, "nonstandard", s.GetInputs()[1].GetScriptType())
	assert.Equal(t, uint64(17_000), s.GetFee())
	assert.True(t, bytes.Contains(resp.GetSignedPayload(), txOutBytes(7_000, long)), "re-serialized witness_utxo must be intact")
}

// TestBIP174Vectors runs the BIP-174/BIP-371 test PSBTs (testdata/bip174):
// none may crash the decoder, every one is refused (invalid ones as
// malformed, valid ones because they carry no input of this key or lack
// UTXO data), always wrapping ErrInvalidPayload.
func TestBIP174Vectors(t *testing.T) {
	a := newTestKey(t, "key a")
	files, err := filepath.Glob(filepath.Join("testdata", "bip174", "*.psbt"))
	require.NoError(t, err)
	require.Len(t, files, 46)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			require.NoError(t, err)
			_, err = signPSBT(a, b, mainnet)
			require.Error(t, err)
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.NotErrorIs(t, err, btc.ErrDecoderFault)
			if strings.HasPrefix(filepath.Base(f), "valid") {
				_, perr := psbt.NewFromRawBytes(bytes.NewReader(b), false)
				require.NoError(t, perr, "vector should be a valid PSBT")
				assert.NotContains(t, err.Error(), "malformed", "a valid PSBT is refused for its content, not its form")
			}
		})
	}
}

// TestSignPSBTBadRequest covers request-level errors.
func TestSignPSBTBadRequest(t *testing.T) {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	pkt, _ := buildPSBT(t, []spend{{script: a.p2wpkh, amount: 50_000}}, []*wire.TxOut{wire.NewTxOut(40_000, a.p2tr)})
	raw := serialize(t, pkt)

	_, err := btc.SignPSBT(sign.Secp256k1{}, a.priv, a.pub, nil)
	require.ErrorIs(t, err, sign.ErrInvalidPayload)
	_, err = btc.SignPSBT(sign.Secp256k1{}, b.priv, a.pub, &signerv1.BitcoinPsbt{Psbt: raw, Network: mainnet})
	require.ErrorIs(t, err, sign.ErrInvalidKey)
	assert.Equal(t, "bitcoin: private key does not match the public key", err.Error())
	_, err = btc.SignPSBT(sign.Secp256k1{}, a.priv, a.compressed, &signerv1.BitcoinPsbt{Psbt: raw, Network: mainnet})
	require.ErrorIs(t, err, sign.ErrInvalidKey)
}

// TestSignPSBTTaprootSignatureValid checks a key-path signature directly
// against the BIP-86 output key (independent of the finalizer).
func TestSignPSBTTaprootSignatureValid(t *testing.T) {
	a := newTestKey(t, "key a")
	pkt, utxos := buildPSBT(t, []spend{{script: a.p2tr, amount: 50_000}}, []*wire.TxOut{wire.NewTxOut(40_000, a.p2wpkh)})
	resp, err := signPSBT(a, serialize(t, pkt), mainnet)
	require.NoError(t, err)
	out := parse(t, resp.GetSignedPayload())
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	fetch.AddPrevOut(out.UnsignedTx.TxIn[0].PreviousOutPoint, utxos[0])
	h, err := txscript.CalcTaprootSignatureHash(txscript.NewTxSigHashes(out.UnsignedTx, fetch), txscript.SigHashDefault, out.UnsignedTx, 0, fetch)
	require.NoError(t, err)
	sig, err := schnorr.ParseSignature(out.Inputs[0].TaprootKeySpendSig)
	require.NoError(t, err)
	q, err := schnorr.ParsePubKey(a.p2tr[2:])
	require.NoError(t, err)
	assert.True(t, sig.Verify(h, q))
}

// rawPSBTWith puts the given global pairs in front of the unsigned
// transaction, which BIP-174 requires to come first.
func rawPSBTWith(t *testing.T, tx *wire.MsgTx, first []kv) []byte {
	t.Helper()
	b := rawPSBT(t, tx, nil, [][]kv{{}}, [][]kv{{}})
	var head bytes.Buffer
	head.WriteString("psbt\xff")
	for _, p := range first {
		writePair(&head, p.key, p.value)
	}
	return append(head.Bytes(), b[5:]...)
}

// txWith is an unsigned transaction with nIn inputs and nOut outputs.
func txWith(nIn, nOut int) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	for i := range nIn {
		tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{1}, uint32(i)), nil, nil))
	}
	for range nOut {
		tx.AddTxOut(wire.NewTxOut(1, []byte{txscript.OP_TRUE}))
	}
	return tx
}

func repeatMap(m []kv, n int) [][]kv {
	out := make([][]kv, n)
	for i := range out {
		out[i] = m
	}
	return out
}

// derivations returns n entries of keyType keyed by distinct compressed
// public keys, with a 4-byte value (a BIP-32 fingerprint and no path).
func derivations(t testing.TB, keyType byte, n int) []kv {
	t.Helper()
	out := make([]kv, n)
	for i := range out {
		k, _ := btcec.PrivKeyFromBytes([]byte{byte(i >> 8), byte(i), 1})
		out[i] = kv{append([]byte{keyType}, k.PubKey().SerializeCompressed()...), []byte{1, 2, 3, 4}}
	}
	return out
}

func manyPairs(n int) []kv {
	out := make([]kv, n)
	for i := range out {
		k := make([]byte, 3)
		k[0] = 0xfc
		binary.BigEndian.PutUint16(k[1:], uint16(i))
		out[i] = kv{k, []byte{1}}
	}
	return out
}

// witnessFlood is a segwit transaction whose one input has n empty witness
// items.
func witnessFlood(t *testing.T, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Write([]byte{2, 0, 0, 0, 0, 1, 1})
	b.Write(make([]byte, 36))
	b.Write([]byte{0, 0, 0, 0, 0})
	b.Write([]byte{1})
	b.Write(make([]byte, 8))
	b.WriteByte(0)
	require.NoError(t, wire.WriteVarInt(&b, 0, uint64(n)))
	b.Write(make([]byte, n))
	b.Write(make([]byte, 4))
	return b.Bytes()
}

// TestSummaryCommitmentFlags: the summary says when its amounts, outputs
// and inputs are bound by the signatures, so that a policy can refuse to
// trust a fee or an output list the signatures do not commit to.
func TestSummaryCommitmentFlags(t *testing.T) {
	a := newTestKey(t, "key a")
	b := newTestKey(t, "key b")
	outs := []*wire.TxOut{wire.NewTxOut(40_000, b.p2wpkh)}
	tests := []struct {
		name                     string
		spends                   []spend
		amounts, outputs, inputs bool
		verified                 []bool
	}{
		// BIP-143 binds only the signed input's own amount: witness_utxo
		// alone is the caller's claim (the "fee" weakness).
		{"p2wpkh, witness_utxo only", []spend{{script: a.p2wpkh, amount: 50_000}}, false, true, true, []bool{false}},
		{"p2wpkh with its previous transaction", []spend{{script: a.p2wpkh, amount: 50_000, nonWitness: true}}, true, true, true, []bool{true}},
		// BIP-341 commits to every input's amount and script, once the
		// P2TR output is shown to be the key's (TestTaprootClaimFeeAttack).
		{"p2tr signed", []spend{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 10_000}}, false, true, true, []bool{false, false}},
		{"p2tr signed with its previous transaction", []spend{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 10_000, nonWitness: true}}, true, true, true, []bool{false, true}},
		{"p2tr with ANYONECANPAY", []spend{{script: a.p2wpkh, amount: 50_000}, {script: a.p2tr, amount: 10_000, sighash: 0x81}}, false, true, false, []bool{false, false}},
		{"SIGHASH_NONE", []spend{{script: a.p2wpkh, amount: 50_000, sighash: 2, nonWitness: true}}, true, false, true, []bool{true}},
		{"SIGHASH_SINGLE", []spend{{script: a.p2wpkh, amount: 50_000, sighash: 3, nonWitness: true}}, true, false, true, []bool{true}},
		{"foreign input without its previous transaction", []spend{{script: a.p2wpkh, amount: 50_000, nonWitness: true}, {script: b.p2wpkh, amount: 5_000}}, false, true, true, []bool{true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, _ := buildPSBT(t, tt.spends, outs)
			resp, err := signPSBT(a, serialize(t, pkt), mainnet)
			require.NoError(t, err)
			s := resp.GetSummary().GetBitcoin()
			assert.Equal(t, tt.amounts, s.GetAmountsCommitted(), "amounts_committed")
			assert.Equal(t, tt.outputs, s.GetOutputsCommitted(), "outputs_committed")
			assert.Equal(t, tt.inputs, s.GetInputsCommitted(), "inputs_committed")
			for i, in := range s.GetInputs() {
				assert.Equal(t, tt.verified[i], in.GetUtxoVerified(), "input %d utxo_verified", i)
			}
		})
	}
}
