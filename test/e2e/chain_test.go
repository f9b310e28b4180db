package e2e_test

// Chain payloads through the whole stack (client -> parent -> link ->
// enclave). Every signature is checked with code independent of the
// enclave's: go-ethereum (tests only), btcd's signature code and script
// engine, and crypto/ed25519. Addresses come from CreateKey's answer.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	btcecdsa "github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	gethcrypto "github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
	"github.com/mr-tron/base58"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Vectors copied from /work/shared/testdata/signing (see its README for
// their sources).
const (
	// eip155_example.json: EIP-155's example, chain 1, nonce 9, 1 ether to
	// 0x3535..., gas price 20 gwei, gas 21000.
	eip155UnsignedHex  = "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080"
	eip155SigningHash  = "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
	eip155To           = "0x3535353535353535353535353535353535353535"
	eip155ValueDecimal = "1000000000000000000"

	// eip712_mail_example.json: EIP-712's Mail typed data and its digest.
	mailTypedDataJSON = `{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},` +
		`{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],` +
		`"Person":[{"name":"name","type":"string"},{"name":"wallet","type":"address"}],` +
		`"Mail":[{"name":"from","type":"Person"},{"name":"to","type":"Person"},{"name":"contents","type":"string"}]},` +
		`"primaryType":"Mail","domain":{"name":"Ether Mail","version":"1","chainId":1,` +
		`"verifyingContract":"0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"},` +
		`"message":{"from":{"name":"Cow","wallet":"0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},` +
		`"to":{"name":"Bob","wallet":"0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},"contents":"Hello, Bob!"}}`
	mailDigest = "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"

	// solana_legacy_transfer.json: solana-web3.js's legacy message, one
	// SystemProgram transfer of 49 lamports from the fee payer (bytes 4..36).
	solanaMessageHex = "010001031398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93cafd439fccb66727f289c5c6" +
		"de3bc4a8fe5dd5d77770bc8ff15c3eeedcb14af3fc000000000000000000000000000000000000000000000000000000000000" +
		"0000c49ae77603782054f17a9decea43b444eba0edb12c6f1d31c6e0e4a84bf052eb01020200010c020000003100000000000000"
	solanaRecipient = "J3dxNj7nDRRqRRXuEMynDG57DkZK4jYRuv3Garmb1i99"
	solanaLamports  = 49
)

// eipTypeCycle is EIP-712 typed data whose types A and B contain each other.
const eipTypeCycle = `{"types":{"EIP712Domain":[{"name":"name","type":"string"}],` +
	`"A":[{"name":"b","type":"B"}],"B":[{"name":"a","type":"A"}]},` +
	`"primaryType":"A","domain":{"name":"x"},"message":{"b":{"a":{}}}}`

// transfer1559 is a 2 ether EIP-1559 transfer with call data and an access
// list on Sepolia, given field by field (quantities in hex and decimal).
var transfer1559 = &signerv1.EthTxFields{
	Type: 2, ChainId: "11155111", Nonce: "0x2a", MaxPriorityFeePerGas: "1500000000", MaxFeePerGas: "0x6fc23ac00",
	Gas: "90000", To: "0x1111111111111111111111111111111111111111", Value: "0x1bc16d674ec80000",
	Data: "0xa9059cbb000000000000000000000000222222222222222222222222222222222222222200000000000000000000000000000000000000000000000000000000000003e8",
	AccessList: []*signerv1.EthAccessTuple{{
		Address:     "0x1111111111111111111111111111111111111111",
		StorageKeys: []string{"0x0000000000000000000000000000000000000000000000000000000000000001"},
	}},
}

// PSBT amounts: inputs of 150,000 (P2WPKH) and 250,000 (P2TR) sat pay
// 300,000 to a stranger and 98,766 back to the key, leaving a 1,234 fee.
const (
	psbtInWPKH, psbtInTR = 150_000, 250_000
	psbtPay, psbtFee     = 300_000, 1_234
	psbtChange           = psbtInWPKH + psbtInTR - psbtPay - psbtFee
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// Request builders.

func ethTxReq(id string, tx *signerv1.EthTransaction) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_EthTransaction{EthTransaction: tx}}
}

func ethRLPReq(id string, b []byte) *signerv1.SignRequest {
	return ethTxReq(id, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: b}})
}

func ethFieldsReq(id string, f *signerv1.EthTxFields) *signerv1.SignRequest {
	return ethTxReq(id, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: f}})
}

func typedDataReq(id, js string) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_EthTypedDataJson{EthTypedDataJson: js}}
}

func sighashReq(id string, h *signerv1.BitcoinSighash) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: h}}
}

func psbtReq(t testing.TB, id string, pkt *psbt.Packet) *signerv1.SignRequest {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, pkt.Serialize(&b))
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: &signerv1.BitcoinPsbt{
		Psbt: b.Bytes(), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST}}}
}

func solanaReq(id string, msg []byte) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_SolanaMessage{SolanaMessage: msg}}
}

// signChain signs through the parent and fails the test on any error.
func signChain(t *testing.T, c signerv1.SignerServiceClient, req *signerv1.SignRequest) *signerv1.SignResponse {
	t.Helper()
	r, err := c.Sign(ctx(t), req)
	require.NoError(t, err)
	return r
}

// Independent checks.

// ethSender decodes a signed raw transaction with go-ethereum and returns it
// with its sender.
func ethSender(t testing.TB, raw []byte, chainID int64) (*types.Transaction, string) {
	t.Helper()
	var tx types.Transaction
	require.NoError(t, tx.UnmarshalBinary(raw))
	from, err := types.Sender(types.LatestSignerForChainID(big.NewInt(chainID)), &tx)
	require.NoError(t, err)
	return &tx, from.Hex()
}

// ecrecoverAddress recovers the address of a 65-byte r || s || v signature
// (v = 27 + recovery id) over digest with go-ethereum's Ecrecover.
func ecrecoverAddress(t testing.TB, digest, sig []byte) string {
	t.Helper()
	require.Len(t, sig, 65)
	require.Contains(t, []byte{27, 28}, sig[64])
	rsv := bytes.Clone(sig)
	rsv[64] -= 27
	pub, err := gethcrypto.Ecrecover(digest, rsv)
	require.NoError(t, err)
	return common.BytesToAddress(gethcrypto.Keccak256(pub[1:])[12:]).Hex()
}

// regtestScript decodes a regtest address with btcutil and returns its
// output script.
func regtestScript(t testing.TB, addr string) []byte {
	t.Helper()
	a, err := btcutil.DecodeAddress(addr, &chaincfg.RegressionNetParams)
	require.NoError(t, err, addr)
	require.True(t, a.IsForNet(&chaincfg.RegressionNetParams), addr)
	s, err := txscript.PayToAddrScript(a)
	require.NoError(t, err)
	return s
}

// strangerScript is a P2WPKH output that belongs to no key of the test.
func strangerScript(t testing.TB) []byte {
	t.Helper()
	a, err := btcutil.NewAddressWitnessPubKeyHash(bytes.Repeat([]byte{0x77}, 20), &chaincfg.RegressionNetParams)
	require.NoError(t, err)
	s, err := txscript.PayToAddrScript(a)
	require.NoError(t, err)
	return s
}

// spendTx spends one output per script (amounts alike) to the given
// outputs; the prevouts are in a fetcher for sighashes and the script engine.
func spendTx(scripts [][]byte, amounts []int64, outs []*wire.TxOut) (*wire.MsgTx, []*wire.TxOut, *txscript.MultiPrevOutFetcher) {
	tx := wire.NewMsgTx(2)
	prev := make([]*wire.TxOut, len(scripts))
	fetch := txscript.NewMultiPrevOutFetcher(nil)
	for i, s := range scripts {
		h := chainhash.DoubleHashH([]byte{byte(i), 0xe2, 0xe0})
		op := wire.NewOutPoint(&h, uint32(i))
		tx.AddTxIn(wire.NewTxIn(op, nil, nil))
		prev[i] = wire.NewTxOut(amounts[i], s)
		fetch.AddPrevOut(*op, prev[i])
	}
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	return tx, prev, fetch
}

// runScripts runs every input of tx through btcd's script engine.
func runScripts(t testing.TB, tx *wire.MsgTx, prev []*wire.TxOut, fetch *txscript.MultiPrevOutFetcher) {
	t.Helper()
	hashes := txscript.NewTxSigHashes(tx, fetch)
	for i := range tx.TxIn {
		vm, err := txscript.NewEngine(prev[i].PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, prev[i].Value, fetch)
		require.NoError(t, err)
		require.NoError(t, vm.Execute(), "input %d", i)
	}
}

// keyPSBT is an unsigned PSBT spending the key's regtest P2WPKH and P2TR
// outputs (btcutil/psbt), paying a stranger and the key's change address.
// withUTXO false leaves out the inputs' UTXO data.
func keyPSBT(t testing.TB, k *signerv1.Key, withUTXO bool) (*psbt.Packet, []*wire.TxOut, *txscript.MultiPrevOutFetcher) {
	t.Helper()
	wpkh := regtestScript(t, k.GetAddresses().GetBitcoinRegtestP2Wpkh())
	tr := regtestScript(t, k.GetAddresses().GetBitcoinRegtestP2Tr())
	return scriptPSBT(t, [][]byte{wpkh, tr}, []*wire.TxOut{
		wire.NewTxOut(psbtPay, strangerScript(t)), wire.NewTxOut(psbtChange, wpkh)}, withUTXO)
}

func scriptPSBT(t testing.TB, scripts [][]byte, outs []*wire.TxOut, withUTXO bool) (*psbt.Packet, []*wire.TxOut, *txscript.MultiPrevOutFetcher) {
	t.Helper()
	tx, prev, fetch := spendTx(scripts, []int64{psbtInWPKH, psbtInTR}, outs)
	var ops []*wire.OutPoint
	var seqs []uint32
	for _, in := range tx.TxIn {
		ops = append(ops, &in.PreviousOutPoint)
		seqs = append(seqs, wire.MaxTxInSequenceNum-2)
	}
	pkt, err := psbt.New(ops, tx.TxOut, 2, 0, seqs)
	require.NoError(t, err)
	if withUTXO {
		for i := range pkt.Inputs {
			pkt.Inputs[i].WitnessUtxo = prev[i]
		}
	}
	return pkt, prev, fetch
}

// solanaMessage is the vector's message with the fee payer replaced by the
// key of the Solana address (decoded with base58), or unchanged when
// feePayer is empty.
func solanaMessage(t testing.TB, feePayer string) []byte {
	t.Helper()
	msg := mustHex(t, solanaMessageHex)
	if feePayer != "" {
		pub, err := base58.Decode(feePayer)
		require.NoError(t, err)
		require.Len(t, pub, 32)
		copy(msg[4:36], pub)
	}
	return msg
}

// Independent verifiers of each answer, shared by the single and batch tests.

func check1559(t *testing.T, k *signerv1.Key, r *signerv1.SignResponse) {
	t.Helper()
	tx, from := ethSender(t, r.GetSignedPayload(), 11155111)
	assert.Equal(t, k.GetAddresses().GetEthereum(), from)
	assert.Equal(t, tx.Hash().Bytes(), r.GetTxHash())
	assert.Equal(t, uint8(types.DynamicFeeTxType), tx.Type())
	assert.EqualValues(t, 11155111, tx.ChainId().Int64())
	assert.EqualValues(t, 42, tx.Nonce())
	assert.EqualValues(t, 90_000, tx.Gas())
	assert.Equal(t, "30000000000", tx.GasFeeCap().String())
	assert.Equal(t, "1500000000", tx.GasTipCap().String())
	assert.Equal(t, "2000000000000000000", tx.Value().String())
	assert.Equal(t, common.HexToAddress("0x1111111111111111111111111111111111111111"), *tx.To())
	assert.Equal(t, mustHex(t, strings.TrimPrefix(transfer1559.Data, "0x")), tx.Data())
	require.Len(t, tx.AccessList(), 1)
	assert.Equal(t, []common.Hash{common.BigToHash(big.NewInt(1))}, tx.AccessList()[0].StorageKeys)
	v, rr, s := tx.RawSignatureValues()
	assert.Equal(t, v.Uint64(), r.GetEthSignature().GetV())
	assert.Equal(t, rr.FillBytes(make([]byte, 32)), r.GetEthSignature().GetR())
	assert.Equal(t, s.FillBytes(make([]byte, 32)), r.GetEthSignature().GetS())

	sum := r.GetSummary().GetEthereum()
	assert.Equal(t, "transaction", sum.GetKind())
	assert.Equal(t, "11155111", sum.GetChainId())
	assert.EqualValues(t, 2, sum.GetTxType())
	assert.Equal(t, k.GetAddresses().GetEthereum(), sum.GetFrom())
	assert.True(t, strings.EqualFold("0x1111111111111111111111111111111111111111", sum.GetTo()), sum.GetTo())
	assert.Equal(t, "2000000000000000000", sum.GetValue())
	assert.EqualValues(t, 42, sum.GetNonce())
	assert.EqualValues(t, 90_000, sum.GetGasLimit())
	assert.Equal(t, "30000000000", sum.GetMaxFeePerGas())
	assert.Equal(t, "1500000000", sum.GetMaxPriorityFeePerGas())
	assert.Equal(t, []byte{0xa9, 0x05, 0x9c, 0xbb}, sum.GetSelector())
	assert.EqualValues(t, 68, sum.GetDataLength())
	assert.EqualValues(t, 1, sum.GetAccessListEntries())
}

// checkPSBT finalizes the signed PSBT with btcutil/psbt and runs every input
// through btcd's script engine.
func checkPSBT(t *testing.T, k *signerv1.Key, r *signerv1.SignResponse, prev []*wire.TxOut, fetch *txscript.MultiPrevOutFetcher) {
	t.Helper()
	assert.Empty(t, r.GetSignature())
	signed, err := psbt.NewFromRawBytes(bytes.NewReader(r.GetSignedPayload()), false)
	require.NoError(t, err)
	pub, err := btcec.ParsePubKey(k.GetPublicKey())
	require.NoError(t, err)
	require.Len(t, signed.Inputs[0].PartialSigs, 1)
	assert.Equal(t, pub.SerializeCompressed(), signed.Inputs[0].PartialSigs[0].PubKey)
	assert.NotEmpty(t, signed.Inputs[1].TaprootKeySpendSig)

	require.NoError(t, psbt.MaybeFinalizeAll(signed))
	tx, err := psbt.Extract(signed)
	require.NoError(t, err)
	runScripts(t, tx, prev, fetch)

	sum := r.GetSummary().GetBitcoin()
	assert.EqualValues(t, psbtFee, sum.GetFee())
	assert.EqualValues(t, psbtInWPKH+psbtInTR, sum.GetTotalInput())
	assert.EqualValues(t, psbtPay+psbtChange, sum.GetTotalOutput())
	assert.EqualValues(t, 2, sum.GetSignedInputs())
	require.Len(t, sum.GetInputs(), 2)
	assert.Equal(t, "p2wpkh", sum.GetInputs()[0].GetScriptType())
	assert.Equal(t, k.GetAddresses().GetBitcoinRegtestP2Wpkh(), sum.GetInputs()[0].GetAddress())
	assert.EqualValues(t, psbtInWPKH, sum.GetInputs()[0].GetAmount())
	assert.Equal(t, "p2tr", sum.GetInputs()[1].GetScriptType())
	assert.Equal(t, k.GetAddresses().GetBitcoinRegtestP2Tr(), sum.GetInputs()[1].GetAddress())
	assert.EqualValues(t, psbtInTR, sum.GetInputs()[1].GetAmount())
	require.Len(t, sum.GetOutputs(), 2)
	assert.EqualValues(t, psbtPay, sum.GetOutputs()[0].GetAmount())
	assert.False(t, sum.GetOutputs()[0].GetIsChange())
	assert.EqualValues(t, psbtChange, sum.GetOutputs()[1].GetAmount())
	assert.True(t, sum.GetOutputs()[1].GetIsChange())
	assert.Equal(t, k.GetAddresses().GetBitcoinRegtestP2Wpkh(), sum.GetOutputs()[1].GetAddress())
}

func checkSolana(t *testing.T, ed *signerv1.Key, msg []byte, r *signerv1.SignResponse) {
	t.Helper()
	pub, err := base58.Decode(ed.GetAddresses().GetSolana())
	require.NoError(t, err)
	assert.Equal(t, ed.GetPublicKey(), pub)
	sig := r.GetSignature()
	assert.True(t, ed25519.Verify(ed25519.PublicKey(pub), msg, sig))
	// Wire format: compact-u16 signature count 1, the signature, the message.
	want := append(append([]byte{1}, sig...), msg...)
	assert.Equal(t, want, r.GetSignedPayload())
	assert.Equal(t, signerv1.Algorithm_ALGORITHM_ED25519, r.GetAlgorithm())

	sum := r.GetSummary().GetSolana()
	assert.Equal(t, "legacy", sum.GetVersion())
	assert.Equal(t, ed.GetAddresses().GetSolana(), sum.GetFeePayer())
	require.Len(t, sum.GetTransfers(), 1)
	assert.Equal(t, ed.GetAddresses().GetSolana(), sum.GetTransfers()[0].GetFrom())
	assert.Equal(t, solanaRecipient, sum.GetTransfers()[0].GetTo())
	assert.EqualValues(t, solanaLamports, sum.GetTransfers()[0].GetLamports())
}

// TestChainSignaturesVerifyIndependently signs every chain payload kind
// through the parent and checks each answer with independent code.
func TestChainSignaturesVerifyIndependently(t *testing.T) {
	s := startStack(t)
	c := s.client
	k1 := createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1)
	ed := createKey(t, c, signerv1.Algorithm_ALGORITHM_ED25519)
	addr := k1.GetAddresses().GetEthereum()
	pk, err := gethcrypto.UnmarshalPubkey(k1.GetPublicKey())
	require.NoError(t, err)
	require.Equal(t, gethcrypto.PubkeyToAddress(*pk).Hex(), addr, "CreateKey's address is go-ethereum's")

	t.Run("eth legacy rlp", func(t *testing.T) {
		r := signChain(t, c, ethRLPReq(k1.GetKeyId(), mustHex(t, eip155UnsignedHex)))
		assert.Equal(t, k1.GetKeyId(), r.GetKeyId())
		assert.Equal(t, signerv1.Algorithm_ALGORITHM_SECP256K1, r.GetAlgorithm())
		tx, from := ethSender(t, r.GetSignedPayload(), 1)
		assert.Equal(t, addr, from)
		assert.Equal(t, tx.Hash().Bytes(), r.GetTxHash())
		assert.Equal(t, uint8(types.LegacyTxType), tx.Type())
		assert.True(t, tx.Protected(), "EIP-155 replay protection")
		// The signed fields are the vector's: same EIP-155 signing hash.
		assert.Equal(t, mustHex(t, eip155SigningHash), types.LatestSignerForChainID(big.NewInt(1)).Hash(tx).Bytes())
		v, _, _ := tx.RawSignatureValues()
		assert.Contains(t, []uint64{37, 38}, v.Uint64())
		assert.Equal(t, v.Uint64(), r.GetEthSignature().GetV())

		sum := r.GetSummary().GetEthereum()
		assert.Equal(t, "1", sum.GetChainId())
		assert.EqualValues(t, 0, sum.GetTxType())
		assert.Equal(t, addr, sum.GetFrom())
		assert.True(t, strings.EqualFold(eip155To, sum.GetTo()), sum.GetTo())
		assert.Equal(t, eip155ValueDecimal, sum.GetValue())
		assert.EqualValues(t, 9, sum.GetNonce())
		assert.EqualValues(t, 21_000, sum.GetGasLimit())
		assert.Equal(t, "20000000000", sum.GetGasPrice())
	})
	t.Run("eth eip1559 fields", func(t *testing.T) {
		check1559(t, k1, signChain(t, c, ethFieldsReq(k1.GetKeyId(), transfer1559)))
	})
	t.Run("eth personal_sign", func(t *testing.T) {
		msg := []byte("Some data")
		r := signChain(t, c, &signerv1.SignRequest{KeyId: k1.GetKeyId(),
			Payload: &signerv1.SignRequest_EthPersonalMessage{EthPersonalMessage: msg}})
		assert.Equal(t, addr, ecrecoverAddress(t, accounts.TextHash(msg), r.GetSignature()))
		assert.Equal(t, uint64(r.GetSignature()[64]), r.GetEthSignature().GetV())
		sum := r.GetSummary().GetEthereum()
		assert.Equal(t, "personal_message", sum.GetKind())
		assert.EqualValues(t, len(msg), sum.GetMessageLength())
	})
	t.Run("eth eip712", func(t *testing.T) {
		var td apitypes.TypedData
		require.NoError(t, json.Unmarshal([]byte(mailTypedDataJSON), &td))
		digest, _, err := apitypes.TypedDataAndHash(td)
		require.NoError(t, err)
		require.Equal(t, mustHex(t, mailDigest), digest, "go-ethereum reproduces EIP-712's digest")

		r := signChain(t, c, typedDataReq(k1.GetKeyId(), mailTypedDataJSON))
		assert.Equal(t, addr, ecrecoverAddress(t, digest, r.GetSignature()))
		sum := r.GetSummary().GetEthereum()
		assert.Equal(t, "typed_data", sum.GetKind())
		assert.Equal(t, "Mail", sum.GetPrimaryType())
		assert.Equal(t, "Ether Mail", sum.GetDomainName())
		assert.Equal(t, "1", sum.GetChainId())
		assert.Equal(t, []byte(digest), sum.GetDigest())
	})
	t.Run("bitcoin sighash", func(t *testing.T) {
		// A transaction spending the key's P2WPKH and P2TR outputs; btcd
		// computes both sighashes, the stack signs them, the witnesses
		// built here pass btcd's script engine.
		pub, err := btcec.ParsePubKey(k1.GetPublicKey())
		require.NoError(t, err)
		wpkh := regtestScript(t, k1.GetAddresses().GetBitcoinRegtestP2Wpkh())
		tr := regtestScript(t, k1.GetAddresses().GetBitcoinRegtestP2Tr())
		tx, prev, fetch := spendTx([][]byte{wpkh, tr}, []int64{psbtInWPKH, psbtInTR},
			[]*wire.TxOut{wire.NewTxOut(psbtPay, strangerScript(t))})
		hashes := txscript.NewTxSigHashes(tx, fetch)

		h0, err := txscript.CalcWitnessSigHash(wpkh, hashes, txscript.SigHashAll, tx, 0, psbtInWPKH)
		require.NoError(t, err)
		r := signChain(t, c, sighashReq(k1.GetKeyId(), &signerv1.BitcoinSighash{
			Sighash: h0, Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: uint32(txscript.SigHashAll)}))
		sig := r.GetSignature()
		require.Equal(t, byte(txscript.SigHashAll), sig[len(sig)-1])
		der, err := btcecdsa.ParseDERSignature(sig[:len(sig)-1])
		require.NoError(t, err)
		assert.True(t, der.Verify(h0, pub))
		tx.TxIn[0].Witness = wire.TxWitness{sig, pub.SerializeCompressed()}

		h1, err := txscript.CalcTaprootSignatureHash(hashes, txscript.SigHashDefault, tx, 1, fetch)
		require.NoError(t, err)
		r = signChain(t, c, sighashReq(k1.GetKeyId(), &signerv1.BitcoinSighash{
			Sighash: h1, Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, TaprootTweak: true}))
		require.Len(t, r.GetSignature(), 64)
		sch, err := schnorr.ParseSignature(r.GetSignature())
		require.NoError(t, err)
		assert.True(t, sch.Verify(h1, txscript.ComputeTaprootKeyNoScript(pub)))
		assert.False(t, sch.Verify(h1, pub), "signed with the untweaked key")
		tx.TxIn[1].Witness = wire.TxWitness{r.GetSignature()}

		runScripts(t, tx, prev, fetch)
	})
	t.Run("bitcoin psbt", func(t *testing.T) {
		pkt, prev, fetch := keyPSBT(t, k1, true)
		checkPSBT(t, k1, signChain(t, c, psbtReq(t, k1.GetKeyId(), pkt)), prev, fetch)
	})
	t.Run("solana", func(t *testing.T) {
		msg := solanaMessage(t, ed.GetAddresses().GetSolana())
		checkSolana(t, ed, msg, signChain(t, c, solanaReq(ed.GetKeyId(), msg)))
	})
	t.Run("batch", func(t *testing.T) {
		pkt, prev, fetch := keyPSBT(t, k1, true)
		msg := solanaMessage(t, ed.GetAddresses().GetSolana())
		br, err := c.SignBatch(ctx(t), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{
			ethFieldsReq(k1.GetKeyId(), transfer1559),
			psbtReq(t, k1.GetKeyId(), pkt),
			solanaReq(ed.GetKeyId(), msg),
		}})
		require.NoError(t, err)
		res := br.GetResults()
		require.Len(t, res, 3)
		for i, r := range res {
			require.NotNil(t, r.GetResponse(), "result %d: %v", i, r.GetError())
		}
		check1559(t, k1, res[0].GetResponse())
		checkPSBT(t, k1, res[1].GetResponse(), prev, fetch)
		checkSolana(t, ed, msg, res[2].GetResponse())
	})
}

// TestChainMalformedThroughTheStack: malformed chain payloads come back
// through the parent as InvalidArgument naming the problem; a PSBT with
// nothing for the key is FailedPrecondition.
func TestChainMalformedThroughTheStack(t *testing.T) {
	s := startStack(t)
	c := s.client
	k1 := createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1)
	ed := createKey(t, c, signerv1.Algorithm_ALGORITHM_ED25519)

	unsigned := mustHex(t, eip155UnsignedHex)
	truncated := unsigned[:len(unsigned)-1]
	// The EIP-155 transaction with its chain id 1 encoded as the list [1],
	// by go-ethereum's RLP encoder.
	chainIDList, err := rlp.EncodeToBytes([]any{
		uint64(9), big.NewInt(20_000_000_000), uint64(21_000), common.HexToAddress(eip155To),
		new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil), []byte{}, []uint64{1}, uint64(0), uint64(0),
	})
	require.NoError(t, err)
	// Sanity: with the chain id as an integer the same encoder gives the vector.
	plain, err := rlp.EncodeToBytes([]any{
		uint64(9), big.NewInt(20_000_000_000), uint64(21_000), common.HexToAddress(eip155To),
		new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil), []byte{}, uint64(1), uint64(0), uint64(0),
	})
	require.NoError(t, err)
	require.Equal(t, unsigned, plain)

	noUTXO, _, _ := keyPSBT(t, k1, false)
	stranger := strangerScript(t)
	notMine, _, _ := scriptPSBT(t, [][]byte{stranger, stranger}, []*wire.TxOut{wire.NewTxOut(psbtPay, stranger)}, true)

	tests := []struct {
		name string
		req  *signerv1.SignRequest
		code codes.Code
		want string // exact message
	}{
		{"truncated rlp", ethRLPReq(k1.GetKeyId(), truncated), codes.InvalidArgument,
			"eth_transaction.unsigned_rlp: truncated: list at byte 0 declares 44 bytes, 43 remain"},
		{"chain id as a list", ethRLPReq(k1.GetKeyId(), chainIDList), codes.InvalidArgument,
			"eth_transaction.unsigned_rlp: chain_id: expected an integer, got a list (at byte 42)"},
		{"psbt input without utxo", psbtReq(t, k1.GetKeyId(), noUTXO), codes.InvalidArgument,
			"bitcoin_psbt: input 0: missing witness_utxo (UTXO data required to sign)"},
		{"solana key not a signer", solanaReq(ed.GetKeyId(), solanaMessage(t, "")), codes.InvalidArgument,
			"solana_message: key " + ed.GetAddresses().GetSolana() + " is not a required signer of this message"},
		{"eip712 type cycle", typedDataReq(k1.GetKeyId(), eipTypeCycle), codes.InvalidArgument,
			"eth_typed_data_json: type cycle: A -> B -> A (no finite value has this type; recursion needs a dynamic array T[])"},
		{"ed25519 key, eth tx", ethRLPReq(ed.GetKeyId(), unsigned), codes.InvalidArgument,
			"eth_transaction: ed25519 keys cannot sign Ethereum payloads; use a secp256k1 key"},
		{"psbt without input of the key", psbtReq(t, k1.GetKeyId(), notMine), codes.FailedPrecondition,
			"bitcoin_psbt: no input belongs to this key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Sign(ctx(t), tt.req)
			require.Equal(t, tt.code, status.Code(err), "%v", err)
			assert.Equal(t, tt.want, status.Convert(err).Message())
		})
	}
}
