package btc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// errDecoderFault is returned when btcd's PSBT decoder panics on input that
// passed checkFraming. It should never happen; the fuzz target fails on it.
var errDecoderFault = invalid("bitcoin_psbt: malformed PSBT (decoder fault)")

// How an input is signed.
type signKind int

const (
	signNone signKind = iota
	signP2WPKH
	signP2TR
)

// inputPlan is what SignPSBT decided for one input.
type inputPlan struct {
	utxo     *wire.TxOut
	kind     signKind
	hashType txscript.SigHashType
}

// SignPSBT parses a BIP-174 v0 PSBT (untrusted), signs every input that
// belongs to the key — P2WPKH inputs whose witness_utxo script is the key's
// P2WPKH script (BIP-143 sighash) and P2TR key-path inputs whose output key
// is the key's BIP-86 tweaked key (BIP-341 sighash; needs ALL inputs'
// witness_utxo for the sighash) — and returns SignedPayload = the updated
// PSBT (partial sigs / tap_key_sig added; not finalized), Signature empty,
// Summary with inputs (txid, vout, amount, address, script_type, signed,
// sighash_type), outputs (address for the network, amount, is_change when it
// pays the key), totals and fee.
//
// It refuses, with an error wrapping [sign.ErrInvalidPayload] that names the
// input or output: a PSBT over [MaxPSBTSize] or malformed in any way
// (including duplicate keys and trailing bytes); a PSBT version other than 0;
// an unset network; inputs without UTXO data, or whose non_witness_utxo does
// not hash to the outpoint's txid or disagrees with witness_utxo; duplicate or
// null outpoints; amounts outside 0..21e6 BTC or totals beyond that; outputs
// worth more than the inputs; inputs of this key it cannot sign (legacy,
// nested or non-BIP-86 scripts, or derivation data naming the key on another
// script); sighash types that are not ALL/DEFAULT unless given in the
// input's sighash_type field (then ALL, NONE, SINGLE with or without
// ANYONECANPAY, and for P2TR also DEFAULT); SIGHASH_SINGLE without a matching
// output; and BIP-32 data of the other network (a global xpub's version, or
// coin type 0'/1' under purpose 44'/49'/84'/86'). A PSBT with nothing for the
// key to sign returns [ErrNoInputForKey].
//
// An existing partial signature of this key, or tap_key_sig, is replaced. A
// signed input that only had non_witness_utxo gets its witness_utxo added,
// as Bitcoin Core's signer does. Schnorr signatures use fresh BIP-340
// auxiliary randomness.
//
// An input's script_type is "p2wpkh", "p2tr", "p2wsh", "p2pkh", "p2sh",
// "p2pk", "multisig", "nulldata", "witness_vN" or "nonstandard"; inputs and
// outputs have an address for the first five only. Outputs always carry
// their script. An input's sighash_type is the type signed with, or for
// inputs not signed the PSBT's field (0 when absent).
func SignPSBT(ds sign.DigestSigner, priv, pub []byte, req *signerv1.BitcoinPsbt) (*signerv1.SignResponse, error) {
	if req == nil {
		return nil, invalid("bitcoin_psbt: request is empty")
	}
	params, err := netParams(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	k, err := parseKey(pub)
	if err != nil {
		return nil, err
	}
	key, err := privateKey(priv, k.pub)
	if err != nil {
		return nil, err
	}
	defer key.Zero()

	pkt, err := decodePSBT(req.GetPsbt())
	if err != nil {
		return nil, err
	}
	plans, fetcher, summary, err := inspect(pkt, k, params)
	if err != nil {
		return nil, err
	}
	summary.Network = req.GetNetwork()

	tx := pkt.UnsignedTx
	sigHashes := txscript.NewTxSigHashes(tx, fetcher)
	var tweaked *btcec.PrivateKey // BIP-86 key-path signing key, made once
	defer func() {
		if tweaked != nil {
			tweaked.Zero()
		}
	}()
	for i, p := range plans {
		pin := &pkt.Inputs[i]
		if p.kind != signNone && pin.WitnessUtxo == nil {
			// As Bitcoin Core does: a signed segwit input carries its
			// witness_utxo, which finalizers rely on.
			pin.WitnessUtxo = p.utxo
		}
		switch p.kind {
		case signP2WPKH:
			h, err := txscript.CalcWitnessSigHash(p.utxo.PkScript, sigHashes, p.hashType, tx, i, p.utxo.Value)
			if err != nil {
				return nil, fmt.Errorf("bitcoin_psbt: input %d: bip-143 sighash: %w", i, err)
			}
			sig, err := signECDSA(ds, priv, k.pub, h, p.hashType)
			if err != nil {
				return nil, err
			}
			sigs := pin.PartialSigs[:0]
			for _, s := range pin.PartialSigs {
				if !bytes.Equal(s.PubKey, k.compressed) {
					sigs = append(sigs, s)
				}
			}
			pin.PartialSigs = append(sigs, &psbt.PartialSig{PubKey: k.compressed, Signature: sig})
		case signP2TR:
			h, err := txscript.CalcTaprootSignatureHash(sigHashes, p.hashType, tx, i, fetcher)
			if err != nil {
				return nil, fmt.Errorf("bitcoin_psbt: input %d: bip-341 sighash: %w", i, err)
			}
			if tweaked == nil {
				if tweaked, err = tweakKey(key, nil); err != nil {
					return nil, err
				}
			}
			sig, err := signSchnorr(tweaked, h, false, nil, p.hashType, freshAux())
			if err != nil {
				return nil, err
			}
			pin.TaprootKeySpendSig = sig
		}
	}

	var out bytes.Buffer
	if err := pkt.Serialize(&out); err != nil {
		return nil, fmt.Errorf("bitcoin_psbt: serialize: %w", err)
	}
	return &signerv1.SignResponse{
		SignedPayload: out.Bytes(),
		Summary:       &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Bitcoin{Bitcoin: summary}},
	}, nil
}

// decodePSBT bounds-checks raw and decodes it with btcd. A panic inside the
// decoder becomes errDecoderFault rather than taking the enclave down.
func decodePSBT(raw []byte) (pkt *psbt.Packet, err error) {
	fr, err := checkFraming(raw)
	if err != nil {
		return nil, err
	}
	defer func() {
		if recover() != nil {
			pkt, err = nil, errDecoderFault
		}
	}()
	pkt, err = psbt.NewFromRawBytes(bytes.NewReader(raw), false)
	if err != nil {
		return nil, invalid("bitcoin_psbt: malformed PSBT: %v", err)
	}
	for i, out := range fr.witnessUTXO {
		if out != nil {
			pkt.Inputs[i].WitnessUtxo = out
		}
	}
	return pkt, nil
}

// inspect applies every check that does not need the private key, decides
// which inputs to sign and builds the summary.
func inspect(pkt *psbt.Packet, k *keyInfo, params *chaincfg.Params) ([]inputPlan, *txscript.MultiPrevOutFetcher, *signerv1.BitcoinSummary, error) {
	tx := pkt.UnsignedTx
	if len(tx.TxIn) == 0 {
		return nil, nil, nil, invalid("bitcoin_psbt: transaction has no inputs")
	}
	if len(tx.TxOut) == 0 {
		return nil, nil, nil, invalid("bitcoin_psbt: transaction has no outputs")
	}
	mainnet := params.Net == wire.MainNet
	if err := checkGlobals(pkt, mainnet, params.Name); err != nil {
		return nil, nil, nil, err
	}

	summary := &signerv1.BitcoinSummary{OutputsCommitted: true, InputsCommitted: true}
	allVerified, taprootCommits := true, false
	plans := make([]inputPlan, len(tx.TxIn))
	fetcher := txscript.NewMultiPrevOutFetcher(nil)
	seen := make(map[wire.OutPoint]int, len(tx.TxIn))
	var totalIn, totalOut int64
	for i, txIn := range tx.TxIn {
		pin := &pkt.Inputs[i]
		op := txIn.PreviousOutPoint
		if op.Index == math.MaxUint32 && op.Hash == (chainhash.Hash{}) {
			return nil, nil, nil, invalid("bitcoin_psbt: input %d spends the null (coinbase) outpoint", i)
		}
		if j, dup := seen[op]; dup {
			return nil, nil, nil, invalid("bitcoin_psbt: input %d spends the same outpoint as input %d", i, j)
		}
		seen[op] = i
		utxo, verified, err := inputUTXO(i, pin, op)
		if err != nil {
			return nil, nil, nil, err
		}
		allVerified = allVerified && verified
		if utxo.Value < 0 || utxo.Value > btcutil.MaxSatoshi {
			return nil, nil, nil, invalid("bitcoin_psbt: input %d: amount %d sat is out of range", i, utxo.Value)
		}
		if totalIn += utxo.Value; totalIn > btcutil.MaxSatoshi {
			return nil, nil, nil, invalid("bitcoin_psbt: input amounts overflow (sum exceeds 21 million BTC)")
		}
		fetcher.AddPrevOut(op, utxo)
		where := fmt.Sprintf("input %d", i)
		for _, d := range pin.Bip32Derivation {
			if err := checkPath(d.Bip32Path, mainnet, params.Name, where); err != nil {
				return nil, nil, nil, err
			}
		}
		for _, d := range pin.TaprootBip32Derivation {
			if err := checkPath(d.Bip32Path, mainnet, params.Name, where); err != nil {
				return nil, nil, nil, err
			}
		}
		if plans[i], err = planInput(i, pin, utxo, k, len(tx.TxOut)); err != nil {
			return nil, nil, nil, err
		}
		addr, kind := describe(utxo.PkScript, params)
		hashType := pin.SighashType
		if plans[i].kind != signNone {
			hashType = plans[i].hashType
			summary.SignedInputs++
			base, acp := hashType&^txscript.SigHashAnyOneCanPay, hashType&txscript.SigHashAnyOneCanPay != 0
			if base == txscript.SigHashNone || base == txscript.SigHashSingle {
				summary.OutputsCommitted = false
			}
			if acp {
				summary.InputsCommitted = false
			} else if plans[i].kind == signP2TR && verified {
				// BIP-341 commits to every input's amount and script, but
				// only a P2TR output proven to be the key's (its previous
				// transaction checked) needs this signature to be spent. On
				// witness_utxo alone it may be the caller's own output,
				// spent with the caller's key, and this signature dropped.
				taprootCommits = true
			}
		}
		summary.Inputs = append(summary.Inputs, &signerv1.BitcoinInput{
			Txid:         op.Hash.String(),
			Vout:         op.Index,
			Amount:       uint64(utxo.Value),
			Address:      addr,
			ScriptType:   kind,
			Signed:       plans[i].kind != signNone,
			SighashType:  uint32(hashType),
			UtxoVerified: verified,
		})
	}
	for i, txOut := range tx.TxOut {
		if txOut.Value < 0 || txOut.Value > btcutil.MaxSatoshi {
			return nil, nil, nil, invalid("bitcoin_psbt: output %d: amount %d sat is out of range", i, txOut.Value)
		}
		if totalOut += txOut.Value; totalOut > btcutil.MaxSatoshi {
			return nil, nil, nil, invalid("bitcoin_psbt: output amounts overflow (sum exceeds 21 million BTC)")
		}
		where := fmt.Sprintf("output %d", i)
		for _, d := range pkt.Outputs[i].Bip32Derivation {
			if err := checkPath(d.Bip32Path, mainnet, params.Name, where); err != nil {
				return nil, nil, nil, err
			}
		}
		for _, d := range pkt.Outputs[i].TaprootBip32Derivation {
			if err := checkPath(d.Bip32Path, mainnet, params.Name, where); err != nil {
				return nil, nil, nil, err
			}
		}
		addr, _ := describe(txOut.PkScript, params)
		summary.Outputs = append(summary.Outputs, &signerv1.BitcoinOutput{
			Address:  addr,
			Script:   bytes.Clone(txOut.PkScript),
			Amount:   uint64(txOut.Value),
			IsChange: bytes.Equal(txOut.PkScript, k.p2wpkh) || bytes.Equal(txOut.PkScript, k.p2tr),
		})
	}
	if totalOut > totalIn {
		return nil, nil, nil, invalid("bitcoin_psbt: outputs (%d sat) exceed inputs (%d sat)", totalOut, totalIn)
	}
	if summary.SignedInputs == 0 {
		return nil, nil, nil, ErrNoInputForKey
	}
	summary.AmountsCommitted = allVerified || taprootCommits
	summary.TotalInput = uint64(totalIn)
	summary.TotalOutput = uint64(totalOut)
	summary.Fee = uint64(totalIn - totalOut)
	return plans, fetcher, summary, nil
}

// inputUTXO returns the output an input spends, from witness_utxo or from
// non_witness_utxo (whose txid must match the outpoint), and whether it was
// checked against the previous transaction. When both are present they
// must agree.
func inputUTXO(i int, pin *psbt.PInput, op wire.OutPoint) (*wire.TxOut, bool, error) {
	var prev *wire.TxOut
	if pin.NonWitnessUtxo != nil {
		if pin.NonWitnessUtxo.TxHash() != op.Hash {
			return nil, false, invalid("bitcoin_psbt: input %d: non_witness_utxo is not the transaction %s the input spends", i, op.Hash)
		}
		if int64(op.Index) >= int64(len(pin.NonWitnessUtxo.TxOut)) {
			return nil, false, invalid("bitcoin_psbt: input %d: non_witness_utxo has no output %d", i, op.Index)
		}
		prev = pin.NonWitnessUtxo.TxOut[op.Index]
	}
	if w := pin.WitnessUtxo; w != nil {
		if prev != nil && (prev.Value != w.Value || !bytes.Equal(prev.PkScript, w.PkScript)) {
			return nil, false, invalid("bitcoin_psbt: input %d: witness_utxo disagrees with non_witness_utxo", i)
		}
		return w, prev != nil, nil
	}
	if prev == nil {
		return nil, false, invalid("bitcoin_psbt: input %d: missing witness_utxo (UTXO data required to sign)", i)
	}
	return prev, true, nil
}

// planInput decides whether input i is signed and with which sighash type,
// and refuses inputs of this key that cannot be signed.
func planInput(i int, pin *psbt.PInput, utxo *wire.TxOut, k *keyInfo, nOut int) (inputPlan, error) {
	p := inputPlan{utxo: utxo}
	if len(pin.FinalScriptSig) != 0 || len(pin.FinalScriptWitness) != 0 {
		return p, nil // already finalized: nothing to add
	}
	script := utxo.PkScript
	switch {
	case bytes.Equal(script, k.p2wpkh):
		p.kind, p.hashType = signP2WPKH, pin.SighashType
		if p.hashType == txscript.SigHashDefault { // absent (btcd cannot tell an explicit 0)
			p.hashType = txscript.SigHashAll
		}
		if !validECDSAType(p.hashType) {
			return p, invalid("bitcoin_psbt: input %d: sighash_type 0x%02x is not valid for p2wpkh", i, uint32(p.hashType))
		}
	case bytes.Equal(script, k.p2tr):
		p.kind, p.hashType = signP2TR, pin.SighashType
		if !validSchnorrType(p.hashType) {
			return p, invalid("bitcoin_psbt: input %d: sighash_type 0x%02x is not a BIP-341 sighash type", i, uint32(p.hashType))
		}
	default:
		if what, ok := k.legacy[string(script)]; ok {
			return p, invalid("bitcoin_psbt: input %d: spends a %s output of this key, which cannot be signed (only p2wpkh and p2tr key path)", i, what)
		}
		if namesKey(pin, k) {
			return p, invalid("bitcoin_psbt: input %d: derivation data names this key but the input's script is not this key's p2wpkh or p2tr (BIP-86) output", i)
		}
		return p, nil
	}
	if p.hashType&^txscript.SigHashAnyOneCanPay == txscript.SigHashSingle && i >= nOut {
		return p, invalid("bitcoin_psbt: input %d: SIGHASH_SINGLE without an output at index %d", i, i)
	}
	return p, nil
}

// namesKey reports whether an input's key data refers to this key.
func namesKey(pin *psbt.PInput, k *keyInfo) bool {
	for _, d := range pin.Bip32Derivation {
		if k.namesKey(d.PubKey) {
			return true
		}
	}
	for _, d := range pin.TaprootBip32Derivation {
		if k.namesKey(d.XOnlyPubKey) {
			return true
		}
	}
	for _, s := range pin.PartialSigs {
		if k.namesKey(s.PubKey) {
			return true
		}
	}
	return k.namesKey(pin.TaprootInternalKey)
}

// Extended key version bytes (BIP-32, SLIP-132): xpub/ypub/zpub/Ypub/Zpub
// for mainnet, tpub/upub/vpub/Upub/Vpub for test networks.
var xpubIsMainnet = map[uint32]bool{
	0x0488b21e: true, 0x049d7cb2: true, 0x04b24746: true, 0x0295b43f: true, 0x02aa7ed3: true,
	0x043587cf: false, 0x044a5262: false, 0x045f1cf6: false, 0x024289ef: false, 0x02575483: false,
}

// checkGlobals refuses PSBT versions other than 0 and global xpubs of the
// other network.
func checkGlobals(pkt *psbt.Packet, mainnet bool, netName string) error {
	for _, u := range pkt.Unknowns {
		switch {
		case len(u.Key) == 1 && u.Key[0] == psbtGlobalVersion:
			if len(u.Value) != 4 {
				return invalid("bitcoin_psbt: malformed PSBT version field")
			}
			if v := binary.LittleEndian.Uint32(u.Value); v != 0 {
				return invalid("bitcoin_psbt: PSBT version %d is not supported (only version 0)", v)
			}
		case len(u.Key) == psbtGlobalXPubKeyBytes && u.Key[0] == psbtGlobalXPub:
			isMain, known := xpubIsMainnet[binary.BigEndian.Uint32(u.Key[1:5])]
			if known && isMain != mainnet {
				return invalid("bitcoin_psbt: global xpub is for %s but the network is %s", netKind(isMain), netName)
			}
		}
	}
	return nil
}

// checkPath refuses a BIP-44/49/84/86 path whose coin type (0' mainnet, 1'
// test networks) does not match the request's network.
func checkPath(path []uint32, mainnet bool, netName, where string) error {
	const hardened = 1 << 31
	if len(path) < 2 || path[1]&hardened == 0 {
		return nil
	}
	switch path[0] {
	case 44 | hardened, 49 | hardened, 84 | hardened, 86 | hardened:
	default:
		return nil
	}
	coin := path[1] &^ hardened
	if (coin == 0 && !mainnet) || (coin == 1 && mainnet) {
		return invalid("bitcoin_psbt: %s: BIP-32 path m/%d'/%d'/... is for %s but the network is %s",
			where, path[0]&^hardened, coin, netKind(coin == 0), netName)
	}
	return nil
}

func netKind(mainnet bool) string {
	if mainnet {
		return "mainnet"
	}
	return "a test network"
}

// describe returns the address of a standard script on the network (empty
// otherwise) and the script's type name.
func describe(script []byte, p *chaincfg.Params) (addr, kind string) {
	class, addrs, _, err := txscript.ExtractPkScriptAddrs(script, p)
	switch class {
	case txscript.PubKeyHashTy:
		kind = "p2pkh"
	case txscript.ScriptHashTy:
		kind = "p2sh"
	case txscript.WitnessV0PubKeyHashTy:
		kind = "p2wpkh"
	case txscript.WitnessV0ScriptHashTy:
		kind = "p2wsh"
	case txscript.WitnessV1TaprootTy:
		kind = "p2tr"
	case txscript.PubKeyTy:
		return "", "p2pk"
	case txscript.MultiSigTy:
		return "", "multisig"
	case txscript.NullDataTy:
		return "", "nulldata"
	default:
		if v, _, err := txscript.ExtractWitnessProgramInfo(script); err == nil {
			return "", fmt.Sprintf("witness_v%d", v)
		}
		return "", "nonstandard"
	}
	if err == nil && len(addrs) == 1 {
		addr = addrs[0].EncodeAddress()
	}
	return addr, kind
}
