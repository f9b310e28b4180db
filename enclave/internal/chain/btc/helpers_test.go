package btc_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/stretchr/testify/require"
)

// testKey is a fixed secp256k1 key with its scripts, computed here
// independently of the package under test.
type testKey struct {
	priv, pub  []byte // 32-byte scalar, 65-byte SEC1 uncompressed
	compressed []byte
	p2wpkh     []byte
	p2tr       []byte
	p2pkh      []byte
}

func newTestKey(t testing.TB, seed string) testKey {
	t.Helper()
	h := sha256.Sum256([]byte(seed))
	key, pub := btcec.PrivKeyFromBytes(h[:])
	k := testKey{priv: key.Serialize(), pub: pub.SerializeUncompressed(), compressed: pub.SerializeCompressed()}
	var err error
	k.p2wpkh, err = txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(btcutil.Hash160(k.compressed)).Script()
	require.NoError(t, err)
	k.p2tr, err = txscript.PayToTaprootScript(txscript.ComputeTaprootKeyNoScript(pub))
	require.NoError(t, err)
	k.p2pkh, err = txscript.NewScriptBuilder().AddOp(txscript.OP_DUP).AddOp(txscript.OP_HASH160).
		AddData(btcutil.Hash160(k.compressed)).AddOp(txscript.OP_EQUALVERIFY).AddOp(txscript.OP_CHECKSIG).Script()
	require.NoError(t, err)
	return k
}

// spend describes one input of a test PSBT.
type spend struct {
	script     []byte
	amount     int64
	sighash    txscript.SigHashType // 0: field absent
	nonWitness bool                 // non_witness_utxo only, instead of witness_utxo
}

// buildPSBT makes an unsigned PSBT (version 2 transaction) spending the
// given outputs with btcutil/psbt, and returns it with the spent outputs.
func buildPSBT(t testing.TB, spends []spend, outs []*wire.TxOut) (*psbt.Packet, []*wire.TxOut) {
	t.Helper()
	var ops []*wire.OutPoint
	var seqs []uint32
	var prevs []*wire.MsgTx
	utxos := make([]*wire.TxOut, len(spends))
	for i, s := range spends {
		utxos[i] = wire.NewTxOut(s.amount, s.script)
		if s.nonWitness {
			prev := wire.NewMsgTx(2)
			prev.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{byte(i), 0xaa}, 7), nil, nil))
			prev.AddTxOut(wire.NewTxOut(1234, []byte{txscript.OP_RETURN}))
			prev.AddTxOut(utxos[i])
			h := prev.TxHash()
			ops = append(ops, wire.NewOutPoint(&h, 1))
			prevs = append(prevs, prev)
		} else {
			h := chainhash.DoubleHashH([]byte{byte(i), 0x55})
			ops = append(ops, wire.NewOutPoint(&h, uint32(i)))
			prevs = append(prevs, nil)
		}
		seqs = append(seqs, wire.MaxTxInSequenceNum-2)
	}
	pkt, err := psbt.New(ops, outs, 2, 0, seqs)
	require.NoError(t, err)
	for i, s := range spends {
		if s.nonWitness {
			pkt.Inputs[i].NonWitnessUtxo = prevs[i]
		} else {
			pkt.Inputs[i].WitnessUtxo = utxos[i]
		}
		pkt.Inputs[i].SighashType = s.sighash
	}
	return pkt, utxos
}

func serialize(t testing.TB, pkt *psbt.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, pkt.Serialize(&b))
	return b.Bytes()
}

func parse(t testing.TB, b []byte) *psbt.Packet {
	t.Helper()
	pkt, err := psbt.NewFromRawBytes(bytes.NewReader(b), false)
	require.NoError(t, err)
	return pkt
}

// finalizeAndVerify finalizes every input with btcutil/psbt, extracts the
// transaction and runs btcd's script engine (standard flags, which include
// low-S and the taproot rules) on each input: the independent check that
// the signatures are valid for the spent outputs.
func finalizeAndVerify(t testing.TB, pkt *psbt.Packet, utxos []*wire.TxOut) *wire.MsgTx {
	t.Helper()
	require.NoError(t, psbt.MaybeFinalizeAll(pkt))
	tx, err := psbt.Extract(pkt)
	require.NoError(t, err)
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range tx.TxIn {
		fetch.AddPrevOut(in.PreviousOutPoint, utxos[i])
	}
	hashes := txscript.NewTxSigHashes(tx, fetch)
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(utxos[i].PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, utxos[i].Value, fetch)
		require.NoError(t, err)
		require.NoError(t, vm.Execute(), "input %d", i)
	}
	return tx
}

// kv is one raw PSBT key-value pair.
type kv struct{ key, value []byte }

// rawPSBT serializes a PSBT by hand, so tests can build encodings btcd's
// encoder would never produce.
func rawPSBT(t testing.TB, tx *wire.MsgTx, global []kv, ins, outs [][]kv) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("psbt\xff")
	var txb bytes.Buffer
	require.NoError(t, tx.SerializeNoWitness(&txb))
	writePair(&b, []byte{0x00}, txb.Bytes())
	for _, p := range global {
		writePair(&b, p.key, p.value)
	}
	b.WriteByte(0)
	for _, m := range append(append([][]kv{}, ins...), outs...) {
		for _, p := range m {
			writePair(&b, p.key, p.value)
		}
		b.WriteByte(0)
	}
	return b.Bytes()
}

func writePair(b *bytes.Buffer, key, value []byte) {
	_ = wire.WriteVarBytes(b, 0, key)
	_ = wire.WriteVarBytes(b, 0, value)
}

// txOutBytes is a serialized transaction output (a witness_utxo value).
func txOutBytes(amount int64, script []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, amount)
	_ = wire.WriteVarBytes(&b, 0, script)
	return b.Bytes()
}
