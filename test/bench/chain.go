package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/big"
	"strconv"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	gethcrypto "github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/grpc"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// The EIP-1559 transaction the bench signs; the nonce varies per call.
const (
	ethTo     = "0x00000000000000000000000000000000deadbeef"
	ethValue  = "1000000000000000" // 0.001 ether
	ethGas    = 21000
	ethTip    = "1500000000"  // 1.5 gwei
	ethFeeCap = "30000000000" // 30 gwei
)

func ethRequest(keyID string, nonce uint64) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: keyID, Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: &signerv1.EthTransaction{
		Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{
			Type: 2, ChainId: "1", Nonce: strconv.FormatUint(nonce, 10),
			MaxPriorityFeePerGas: ethTip, MaxFeePerGas: ethFeeCap, Gas: strconv.Itoa(ethGas),
			To: ethTo, Value: ethValue,
		}},
	}}}
}

// chainPayloads measures signing an EIP-1559 transaction and a 2-input PSBT
// end to end (issue 4), after checking one answer of each independently.
func chainPayloads(ctx context.Context, st *stack, conns []*grpc.ClientConn, o options, rep *report) error {
	cl := signerv1.NewSignerServiceClient(conns[0])
	created, err := cl.CreateKey(ctx, &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	key := created.GetKey()
	id := key.GetKeyId()

	// EIP-1559.
	const checkNonce = 7
	r, err := cl.Sign(ctx, ethRequest(id, checkNonce))
	if err != nil {
		return fmt.Errorf("EIP-1559: %w", err)
	}
	ethErr := verifyEth(key, r, checkNonce)
	ethV := rep.check("4", "EIP-1559 answer: go-ethereum recovers the key's address", errText(ethErr), "no error", ethErr == nil)
	res, err := load(ctx, st, conns, o.clients, 1, o.duration, func(ctx context.Context, cl signerv1.SignerServiceClient, c int, n uint64) error {
		_, err := cl.Sign(ctx, ethRequest(id, uint64(c)<<32|n))
		return err
	})
	if err != nil {
		return fmt.Errorf("EIP-1559: %w", err)
	}
	printChain(fmt.Sprintf("EIP-1559 tx, %d clients", o.clients), "txs/s", res)
	fmt.Printf("  one answer checked with go-ethereum (types.Sender = the key's address, tx hash, fields): %s%s\n", ethV, errSuffix(ethErr))
	rep.info("4", fmt.Sprintf("EIP-1559 signs/s, %d clients", o.clients), fmt.Sprintf("%.0f (p50 %.0f µs, p99 %.0f µs)", res.rate, res.p50/1e3, res.p99/1e3))

	// PSBT: one per client, so that requests differ.
	pkts := make([][]byte, o.clients)
	var utxos []*wire.TxOut
	for c := range pkts {
		if pkts[c], utxos, err = buildPSBT(key, c); err != nil {
			return fmt.Errorf("PSBT: %w", err)
		}
	}
	psbtReq := func(c int) *signerv1.SignRequest {
		return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{
			Psbt: pkts[c], Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST}}}
	}
	// Every variant spends outputs of the same scripts and amounts: utxos
	// serve them all.
	r, err = cl.Sign(ctx, psbtReq(0))
	if err != nil {
		return fmt.Errorf("PSBT: %w", err)
	}
	psbtErr := verifyPSBT(r, utxos)
	psbtV := rep.check("4", "PSBT answer: 2 inputs signed, btcd's script engine accepts", errText(psbtErr), "no error", psbtErr == nil)
	res, err = load(ctx, st, conns, o.clients, 1, o.duration, func(ctx context.Context, cl signerv1.SignerServiceClient, c int, _ uint64) error {
		_, err := cl.Sign(ctx, psbtReq(c))
		return err
	})
	if err != nil {
		return fmt.Errorf("PSBT: %w", err)
	}
	printChain(fmt.Sprintf("2-input PSBT, %d clients", o.clients), "PSBTs/s", res)
	fmt.Printf("  one answer checked with btcd (P2WPKH partial signature and P2TR key-path signature present; finalized, both inputs pass the script engine): %s%s\n", psbtV, errSuffix(psbtErr))
	rep.info("4", fmt.Sprintf("2-input PSBT signs/s, %d clients", o.clients), fmt.Sprintf("%.0f (p50 %.0f µs, p99 %.0f µs)", res.rate, res.p50/1e3, res.p99/1e3))
	return nil
}

func printChain(name, unit string, r result) {
	fmt.Printf("  %-26s %8.0f %s  p50 %7.1f µs  p99 %7.1f µs  CPU/call parent %5.1f µs + enclave %5.1f µs  [load generator %5.1f µs]\n",
		name, r.rate, unit, r.p50/1e3, r.p99/1e3, r.parentCPU/float64(r.calls)/1e3, r.enclaveCPU/float64(r.calls)/1e3, r.loadCPU/float64(r.calls)/1e3)
}

func errText(err error) string {
	if err != nil {
		return "error"
	}
	return "verified"
}

func errSuffix(err error) string {
	if err != nil {
		return ": " + err.Error()
	}
	return ""
}

// verifyEth decodes the signed transaction with go-ethereum and checks its
// sender, hash and fields.
func verifyEth(key *signerv1.Key, r *signerv1.SignResponse, nonce uint64) error {
	var tx types.Transaction
	if err := tx.UnmarshalBinary(r.GetSignedPayload()); err != nil {
		return fmt.Errorf("decode signed transaction: %w", err)
	}
	from, err := types.Sender(types.LatestSignerForChainID(big.NewInt(1)), &tx)
	if err != nil {
		return fmt.Errorf("recover sender: %w", err)
	}
	pub, err := gethcrypto.UnmarshalPubkey(key.GetPublicKey())
	if err != nil {
		return fmt.Errorf("key's public key: %w", err)
	}
	value, _ := new(big.Int).SetString(ethValue, 10)
	switch {
	case from != gethcrypto.PubkeyToAddress(*pub):
		return fmt.Errorf("sender %s is not the key's address %s", from, gethcrypto.PubkeyToAddress(*pub))
	case from != common.HexToAddress(key.GetAddresses().GetEthereum()):
		return fmt.Errorf("sender %s is not CreateKey's address %s", from, key.GetAddresses().GetEthereum())
	case !bytes.Equal(tx.Hash().Bytes(), r.GetTxHash()):
		return errors.New("tx_hash is not the transaction's hash")
	case tx.Type() != types.DynamicFeeTxType || tx.ChainId().Cmp(big.NewInt(1)) != 0 || tx.Nonce() != nonce ||
		tx.To() == nil || *tx.To() != common.HexToAddress(ethTo) || tx.Value().Cmp(value) != 0 || tx.Gas() != ethGas:
		return errors.New("signed transaction differs from the request")
	}
	return nil
}

// buildPSBT builds, with btcutil/psbt, a PSBT spending a P2WPKH and a P2TR
// (key path) output of the key's regtest addresses to its P2WPKH address,
// and returns it with the spent outputs. variant changes the outpoints.
func buildPSBT(key *signerv1.Key, variant int) ([]byte, []*wire.TxOut, error) {
	params := &chaincfg.RegressionNetParams
	var scripts [][]byte
	for _, a := range []string{key.GetAddresses().GetBitcoinRegtestP2Wpkh(), key.GetAddresses().GetBitcoinRegtestP2Tr()} {
		addr, err := btcutil.DecodeAddress(a, params)
		if err != nil {
			return nil, nil, fmt.Errorf("address %q: %w", a, err)
		}
		s, err := txscript.PayToAddrScript(addr)
		if err != nil {
			return nil, nil, err
		}
		scripts = append(scripts, s)
	}
	// The addresses must be the key's: derive both scripts from its public
	// key with btcd.
	pk, err := btcec.ParsePubKey(key.GetPublicKey())
	if err != nil {
		return nil, nil, err
	}
	wpkh, err := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(btcutil.Hash160(pk.SerializeCompressed())).Script()
	if err != nil {
		return nil, nil, err
	}
	tr, err := txscript.PayToTaprootScript(txscript.ComputeTaprootKeyNoScript(pk))
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(scripts[0], wpkh) || !bytes.Equal(scripts[1], tr) {
		return nil, nil, errors.New("CreateKey's bitcoin addresses are not the key's")
	}

	utxos := []*wire.TxOut{wire.NewTxOut(100_000, scripts[0]), wire.NewTxOut(150_000, scripts[1])}
	var ops []*wire.OutPoint
	var seqs []uint32
	for i := range utxos {
		h := chainhash.DoubleHashH([]byte{byte(variant), byte(variant >> 8), byte(i)})
		ops = append(ops, wire.NewOutPoint(&h, uint32(i)))
		seqs = append(seqs, wire.MaxTxInSequenceNum-2)
	}
	pkt, err := psbt.New(ops, []*wire.TxOut{wire.NewTxOut(249_000, scripts[0])}, 2, 0, seqs)
	if err != nil {
		return nil, nil, err
	}
	for i := range pkt.Inputs {
		pkt.Inputs[i].WitnessUtxo = utxos[i]
	}
	var b bytes.Buffer
	if err := pkt.Serialize(&b); err != nil {
		return nil, nil, err
	}
	return b.Bytes(), utxos, nil
}

// verifyPSBT checks that both inputs of the signed PSBT carry a signature
// and that, finalized, the transaction passes btcd's script engine.
func verifyPSBT(r *signerv1.SignResponse, utxos []*wire.TxOut) error {
	signed, err := psbt.NewFromRawBytes(bytes.NewReader(r.GetSignedPayload()), false)
	if err != nil {
		return fmt.Errorf("decode signed PSBT: %w", err)
	}
	if len(signed.Inputs) != 2 {
		return fmt.Errorf("signed PSBT has %d inputs", len(signed.Inputs))
	}
	if n := len(signed.Inputs[0].PartialSigs); n != 1 {
		return fmt.Errorf("P2WPKH input has %d partial signatures, want 1", n)
	}
	if n := len(signed.Inputs[1].TaprootKeySpendSig); n != 64 && n != 65 {
		return fmt.Errorf("P2TR input has a %d-byte key-path signature", n)
	}
	if err := psbt.MaybeFinalizeAll(signed); err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	tx, err := psbt.Extract(signed)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range tx.TxIn {
		fetch.AddPrevOut(in.PreviousOutPoint, utxos[i])
	}
	hashes := txscript.NewTxSigHashes(tx, fetch)
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(utxos[i].PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, utxos[i].Value, fetch)
		if err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
		if err := vm.Execute(); err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
	}
	return nil
}
