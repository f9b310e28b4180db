package server_test

// Chain payloads through Server.Handle. Every signature is checked with an
// independent implementation: go-ethereum (tests only; the enclave does not
// import it), btcd's script engine and signature code, and crypto/ed25519.

import (
	"bytes"
	"context"
	stdecdsa "crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
	"github.com/mr-tron/base58"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/btc"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/sol"
	"github.com/nitrosigner/nitrosigner/enclave/internal/server"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const (
	k1Alg   = signerv1.Algorithm_ALGORITHM_SECP256K1
	edAlg   = signerv1.Algorithm_ALGORITHM_ED25519
	p256Alg = signerv1.Algorithm_ALGORITHM_P256
)

// Vectors of the chain packages.

func readVector(t testing.TB, chain, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "chain", chain, "testdata", name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	require.NoError(t, err)
	return b
}

// eip155RLP is the unsigned transaction of EIP-155's example (chain 1,
// nonce 9, 1 ether to 0x3535...).
func eip155RLP(t testing.TB) []byte {
	t.Helper()
	var v struct {
		SigningDataRLP string `json:"signing_data_rlp"`
	}
	readVector(t, "eth", "eip155_example.json", &v)
	return unhex(t, v.SigningDataRLP)
}

// mailTypedData is EIP-712's Mail example.
func mailTypedData(t testing.TB) string {
	t.Helper()
	var v struct {
		TypedData json.RawMessage `json:"typed_data"`
	}
	readVector(t, "eth", "eip712_mail_example.json", &v)
	return string(v.TypedData)
}

// solanaVector returns the message of solana-web3.js's legacy transfer
// vector (49 lamports from its fee payer), with the fee payer replaced by
// payer when it is not nil.
func solanaVector(t testing.TB, payer []byte) []byte {
	t.Helper()
	var v struct {
		MessageHex string `json:"message_hex"`
		SignerHex  string `json:"signer_pubkey_hex"`
	}
	readVector(t, "sol", "solana_legacy_transfer.json", &v)
	msg := unhex(t, v.MessageHex)
	// Header (3 bytes), compact-u16 key count (1), then the fee payer.
	require.Equal(t, unhex(t, v.SignerHex), msg[4:36])
	if payer != nil {
		copy(msg[4:36], payer)
	}
	return msg
}

// Independent Bitcoin helpers.

// p2wpkhScript is OP_0 <HASH160(compressed pub)>, built with btcd.
func p2wpkhScript(t testing.TB, pub []byte) []byte {
	t.Helper()
	pk, err := btcec.ParsePubKey(pub)
	require.NoError(t, err)
	s, err := txscript.NewScriptBuilder().AddOp(txscript.OP_0).AddData(btcutil.Hash160(pk.SerializeCompressed())).Script()
	require.NoError(t, err)
	return s
}

// p2trScript is the BIP-86 key-path output script of pub, built with btcd.
func p2trScript(t testing.TB, pub []byte) []byte {
	t.Helper()
	pk, err := btcec.ParsePubKey(pub)
	require.NoError(t, err)
	s, err := txscript.PayToTaprootScript(txscript.ComputeTaprootKeyNoScript(pk))
	require.NoError(t, err)
	return s
}

// unsignedPSBT spends one output per script (100,000 sat each) to pay all
// but a 1,000 sat fee to payTo, with btcutil/psbt. withUTXO false leaves out the
// inputs' UTXO data.
func unsignedPSBT(t testing.TB, scripts [][]byte, payTo []byte, withUTXO bool) (*psbt.Packet, []*wire.TxOut) {
	t.Helper()
	var ops []*wire.OutPoint
	var seqs []uint32
	utxos := make([]*wire.TxOut, len(scripts))
	for i, s := range scripts {
		h := chainhash.DoubleHashH([]byte{byte(i), 0x42})
		ops = append(ops, wire.NewOutPoint(&h, uint32(i)))
		seqs = append(seqs, wire.MaxTxInSequenceNum-2)
		utxos[i] = wire.NewTxOut(100_000, s)
	}
	pkt, err := psbt.New(ops, []*wire.TxOut{wire.NewTxOut(int64(100_000*len(scripts)-1_000), payTo)}, 2, 0, seqs)
	require.NoError(t, err)
	if withUTXO {
		for i := range pkt.Inputs {
			pkt.Inputs[i].WitnessUtxo = utxos[i]
		}
	}
	return pkt, utxos
}

func serializePSBT(t testing.TB, pkt *psbt.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, pkt.Serialize(&b))
	return b.Bytes()
}

// Request builders.

func chainReq(id string, p any) *enclavev1.SignRequest {
	r := &signerv1.SignRequest{KeyId: id}
	switch p := p.(type) {
	case *signerv1.EthTransaction:
		r.Payload = &signerv1.SignRequest_EthTransaction{EthTransaction: p}
	case personal:
		r.Payload = &signerv1.SignRequest_EthPersonalMessage{EthPersonalMessage: p}
	case typedData:
		r.Payload = &signerv1.SignRequest_EthTypedDataJson{EthTypedDataJson: string(p)}
	case *signerv1.BitcoinSighash:
		r.Payload = &signerv1.SignRequest_BitcoinSighash{BitcoinSighash: p}
	case *signerv1.BitcoinPsbt:
		r.Payload = &signerv1.SignRequest_BitcoinPsbt{BitcoinPsbt: p}
	case solana:
		r.Payload = &signerv1.SignRequest_SolanaMessage{SolanaMessage: p}
	default:
		panic("unknown payload")
	}
	return &enclavev1.SignRequest{Request: r}
}

// Payload types for chainReq whose Go types would otherwise be ambiguous.
type (
	personal  []byte
	typedData string
	solana    []byte
)

func rlpTx(b []byte) *signerv1.EthTransaction {
	return &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: b}}
}

func fieldsTx(f *signerv1.EthTxFields) *signerv1.EthTransaction {
	return &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: f}}
}

// eip1559Fields is a contract call with an access list on chain 11155111.
var eip1559Fields = &signerv1.EthTxFields{
	Type: 2, ChainId: "11155111", Nonce: "0x2a", MaxPriorityFeePerGas: "1500000000", MaxFeePerGas: "30000000000",
	Gas: "90000", To: "0x1111111111111111111111111111111111111111", Value: "0",
	Data: "0xa9059cbb000000000000000000000000222222222222222222222222222222222222222200000000000000000000000000000000000000000000000000000000000003e8",
	AccessList: []*signerv1.EthAccessTuple{{
		Address:     "0x1111111111111111111111111111111111111111",
		StorageKeys: []string{"0x0000000000000000000000000000000000000000000000000000000000000001"},
	}},
}

// signOK signs through Handle and fails the test on any error.
func signOK(t *testing.T, s *server.Server, req *enclavev1.SignRequest) *signerv1.SignResponse {
	t.Helper()
	r, err := call(t, s, enclavev1.Method_METHOD_SIGN, req, &enclavev1.SignResponse{})
	require.NoError(t, err)
	require.NotNil(t, r.GetResponse())
	return r.GetResponse()
}

// ethAddress is go-ethereum's address of a SEC1 public key.
func ethAddress(t testing.TB, pub []byte) string {
	t.Helper()
	pk, err := crypto.UnmarshalPubkey(pub)
	require.NoError(t, err)
	return crypto.PubkeyToAddress(*pk).Hex()
}

// recoverEIP191 recovers the address that made a 65-byte r || s || v
// (v = 27 + id) signature of digest, with go-ethereum.
func recoverEIP191(t testing.TB, digest, sig []byte) string {
	t.Helper()
	require.Len(t, sig, 65)
	require.Contains(t, []byte{27, 28}, sig[64])
	rsv := bytes.Clone(sig)
	rsv[64] -= 27
	pk, err := crypto.SigToPub(digest, rsv)
	require.NoError(t, err)
	return crypto.PubkeyToAddress(*pk).Hex()
}

func TestSignChainPayloads(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, k1Alg)
	ed := createKey(t, s, edAlg)
	from := ethAddress(t, k1.GetPublicKey())
	require.Equal(t, from, k1.GetAddresses().GetEthereum())

	t.Run("eth_transaction rlp", func(t *testing.T) {
		r := signOK(t, s, chainReq(k1.GetKeyId(), rlpTx(eip155RLP(t))))
		assert.Equal(t, k1.GetKeyId(), r.GetKeyId())
		assert.Equal(t, k1Alg, r.GetAlgorithm())
		var tx types.Transaction
		require.NoError(t, tx.UnmarshalBinary(r.GetSignedPayload()))
		sender, err := types.Sender(types.LatestSignerForChainID(big.NewInt(1)), &tx)
		require.NoError(t, err)
		assert.Equal(t, from, sender.Hex())
		assert.Equal(t, tx.Hash().Bytes(), r.GetTxHash())
		assert.EqualValues(t, 9, tx.Nonce())
		assert.Equal(t, "0x3535353535353535353535353535353535353535", strings.ToLower(tx.To().Hex()))
		v, _, _ := tx.RawSignatureValues()
		assert.Equal(t, v.Uint64(), r.GetEthSignature().GetV())
		sum := r.GetSummary().GetEthereum()
		assert.Equal(t, "transaction", sum.GetKind())
		assert.Equal(t, "1", sum.GetChainId())
		assert.Equal(t, from, sum.GetFrom())
	})
	t.Run("eth_transaction fields", func(t *testing.T) {
		r := signOK(t, s, chainReq(k1.GetKeyId(), fieldsTx(eip1559Fields)))
		var tx types.Transaction
		require.NoError(t, tx.UnmarshalBinary(r.GetSignedPayload()))
		assert.Equal(t, uint8(types.DynamicFeeTxType), tx.Type())
		sender, err := types.Sender(types.LatestSignerForChainID(big.NewInt(11155111)), &tx)
		require.NoError(t, err)
		assert.Equal(t, from, sender.Hex())
		assert.EqualValues(t, 42, tx.Nonce())
		assert.Len(t, tx.AccessList(), 1)
		assert.Equal(t, []byte{0xa9, 0x05, 0x9c, 0xbb}, r.GetSummary().GetEthereum().GetSelector())
	})
	t.Run("eth_personal_message", func(t *testing.T) {
		msg := []byte("Some data")
		r := signOK(t, s, chainReq(k1.GetKeyId(), personal(msg)))
		assert.Equal(t, from, recoverEIP191(t, accounts.TextHash(msg), r.GetSignature()))
		assert.Equal(t, k1Alg, r.GetAlgorithm())
	})
	t.Run("eth_typed_data_json", func(t *testing.T) {
		js := mailTypedData(t)
		var td apitypes.TypedData
		require.NoError(t, json.Unmarshal([]byte(js), &td))
		digest, _, err := apitypes.TypedDataAndHash(td)
		require.NoError(t, err)
		r := signOK(t, s, chainReq(k1.GetKeyId(), typedData(js)))
		assert.Equal(t, from, recoverEIP191(t, digest, r.GetSignature()))
		assert.Equal(t, "Mail", r.GetSummary().GetEthereum().GetPrimaryType())
	})
	t.Run("bitcoin_sighash", func(t *testing.T) {
		pub, err := btcec.ParsePubKey(k1.GetPublicKey())
		require.NoError(t, err)
		hash := bytes.Repeat([]byte{0x5a}, 32)

		r := signOK(t, s, chainReq(k1.GetKeyId(), &signerv1.BitcoinSighash{
			Sighash: hash, Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: 1}))
		sig := r.GetSignature()
		require.Equal(t, byte(1), sig[len(sig)-1])
		der, err := btcecdsa.ParseDERSignature(sig[:len(sig)-1])
		require.NoError(t, err)
		assert.True(t, der.Verify(hash, pub))
		assert.Equal(t, "ecdsa:ALL", r.GetSummary().GetBitcoin().GetScheme())

		r = signOK(t, s, chainReq(k1.GetKeyId(), &signerv1.BitcoinSighash{
			Sighash: hash, Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, TaprootTweak: true}))
		require.Len(t, r.GetSignature(), 64)
		sch, err := schnorr.ParseSignature(r.GetSignature())
		require.NoError(t, err)
		assert.True(t, sch.Verify(hash, txscript.ComputeTaprootKeyNoScript(pub)))
		assert.False(t, sch.Verify(hash, pub), "signed with the untweaked key")
	})
	t.Run("bitcoin_psbt", func(t *testing.T) {
		// Pay the key's own regtest address, decoded independently.
		addr, err := btcutil.DecodeAddress(k1.GetAddresses().GetBitcoinRegtestP2Wpkh(), &chaincfg.RegressionNetParams)
		require.NoError(t, err)
		payTo, err := txscript.PayToAddrScript(addr)
		require.NoError(t, err)
		require.Equal(t, p2wpkhScript(t, k1.GetPublicKey()), payTo)

		for _, tc := range []struct {
			name    string
			scripts [][]byte
		}{
			{"p2wpkh", [][]byte{payTo}},
			{"p2wpkh and p2tr", [][]byte{payTo, p2trScript(t, k1.GetPublicKey())}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				pkt, utxos := unsignedPSBT(t, tc.scripts, payTo, true)
				r := signOK(t, s, chainReq(k1.GetKeyId(), &signerv1.BitcoinPsbt{
					Psbt: serializePSBT(t, pkt), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST}))
				assert.Empty(t, r.GetSignature())
				signed, err := psbt.NewFromRawBytes(bytes.NewReader(r.GetSignedPayload()), false)
				require.NoError(t, err)

				// The P2WPKH partial signature verifies over btcd's BIP-143 sighash.
				pub, err := btcec.ParsePubKey(k1.GetPublicKey())
				require.NoError(t, err)
				in := signed.Inputs[0]
				require.Len(t, in.PartialSigs, 1)
				assert.Equal(t, pub.SerializeCompressed(), in.PartialSigs[0].PubKey)
				fetch := txscript.NewMultiPrevOutFetcher(nil)
				for i, ti := range signed.UnsignedTx.TxIn {
					fetch.AddPrevOut(ti.PreviousOutPoint, utxos[i])
				}
				hashes := txscript.NewTxSigHashes(signed.UnsignedTx, fetch)
				hash, err := txscript.CalcWitnessSigHash(payTo, hashes, txscript.SigHashAll, signed.UnsignedTx, 0, utxos[0].Value)
				require.NoError(t, err)
				sig := in.PartialSigs[0].Signature
				der, err := btcecdsa.ParseDERSignature(sig[:len(sig)-1])
				require.NoError(t, err)
				assert.True(t, der.Verify(hash, pub))

				// Finalized, every input passes btcd's script engine.
				require.NoError(t, psbt.MaybeFinalizeAll(signed))
				tx, err := psbt.Extract(signed)
				require.NoError(t, err)
				for i := range tx.TxIn {
					vm, err := txscript.NewEngine(utxos[i].PkScript, tx, i, txscript.StandardVerifyFlags, nil, hashes, utxos[i].Value, fetch)
					require.NoError(t, err)
					require.NoError(t, vm.Execute(), "input %d", i)
				}

				sum := r.GetSummary().GetBitcoin()
				assert.EqualValues(t, len(tc.scripts), sum.GetSignedInputs())
				assert.EqualValues(t, 1_000, sum.GetFee())
				assert.True(t, sum.GetOutputs()[0].GetIsChange())
			})
		}
	})
	t.Run("solana_message", func(t *testing.T) {
		msg := solanaVector(t, ed.GetPublicKey())
		r := signOK(t, s, chainReq(ed.GetKeyId(), solana(msg)))
		assert.Equal(t, edAlg, r.GetAlgorithm())
		assert.True(t, ed25519.Verify(ed.GetPublicKey(), msg, r.GetSignature()))
		want := append(append([]byte{1}, r.GetSignature()...), msg...)
		assert.Equal(t, want, r.GetSignedPayload())
		sum := r.GetSummary().GetSolana()
		assert.Equal(t, ed.GetAddresses().GetSolana(), sum.GetFeePayer())
		require.Len(t, sum.GetTransfers(), 1)
		assert.EqualValues(t, 49, sum.GetTransfers()[0].GetLamports())
	})
}

func TestSignDigestP256(t *testing.T) {
	s, _ := newServer(t)
	k := createKey(t, s, p256Alg)
	assert.Nil(t, k.GetAddresses())
	pub, err := stdecdsa.ParseUncompressedPublicKey(elliptic.P256(), k.GetPublicKey())
	require.NoError(t, err)
	digest := bytes.Repeat([]byte{0xd1}, 32)
	r := signOK(t, s, signReq(k.GetKeyId(), digest, nil))
	assert.Equal(t, p256Alg, r.GetAlgorithm())
	sig := r.GetSignature()
	require.Len(t, sig, 64)
	assert.True(t, stdecdsa.Verify(pub, digest, new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])))

	_, err = call(t, s, enclavev1.Method_METHOD_SIGN, signReq(k.GetKeyId(), nil, []byte("m")), &enclavev1.SignResponse{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, "message: p256 keys sign 32-byte digests; send the digest field", status.Convert(err).Message())
}

func TestChainWrongAlgorithm(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, k1Alg).GetKeyId()
	ed := createKey(t, s, edAlg).GetKeyId()
	p256 := createKey(t, s, p256Alg).GetKeyId()
	psbtReq := &signerv1.BitcoinPsbt{Psbt: []byte("psbt\xff"), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET}
	sighash := &signerv1.BitcoinSighash{Sighash: make([]byte, 32), Scheme: signerv1.BitcoinSighash_SCHEME_ECDSA, SighashType: 1}

	tests := []struct {
		name string
		req  *enclavev1.SignRequest
		want string
	}{
		{"eth tx, ed25519", chainReq(ed, rlpTx(eip155RLP(t))), "eth_transaction: ed25519 keys cannot sign Ethereum payloads; use a secp256k1 key"},
		{"eth tx, p256", chainReq(p256, rlpTx(eip155RLP(t))), "eth_transaction: p256 keys cannot sign Ethereum payloads; use a secp256k1 key"},
		{"personal, ed25519", chainReq(ed, personal("hi")), "eth_personal_message: ed25519 keys cannot sign Ethereum payloads; use a secp256k1 key"},
		{"typed data, p256", chainReq(p256, typedData(mailTypedData(t))), "eth_typed_data_json: p256 keys cannot sign Ethereum payloads; use a secp256k1 key"},
		{"sighash, ed25519", chainReq(ed, sighash), "bitcoin_sighash: ed25519 keys cannot sign Bitcoin payloads; use a secp256k1 key"},
		{"psbt, p256", chainReq(p256, psbtReq), "bitcoin_psbt: p256 keys cannot sign Bitcoin payloads; use a secp256k1 key"},
		{"solana, secp256k1", chainReq(k1, solana(solanaVector(t, nil))), "solana_message: secp256k1 keys cannot sign Solana payloads; use an ed25519 key"},
		{"solana, p256", chainReq(p256, solana(solanaVector(t, nil))), "solana_message: p256 keys cannot sign Solana payloads; use an ed25519 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, s, enclavev1.Method_METHOD_SIGN, tt.req, &enclavev1.SignResponse{})
			assert.Equal(t, codes.InvalidArgument, status.Code(err))
			assert.Equal(t, tt.want, status.Convert(err).Message())
		})
	}
}

// typeCycle is EIP-712 typed data whose types A and B contain each other.
const typeCycle = `{"types":{"EIP712Domain":[{"name":"name","type":"string"}],` +
	`"A":[{"name":"b","type":"B"}],"B":[{"name":"a","type":"A"}]},` +
	`"primaryType":"A","domain":{"name":"x"},"message":{"b":{"a":{}}}}`

func TestChainMalformed(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, k1Alg)
	ed := createKey(t, s, edAlg)
	noUTXO, _ := unsignedPSBT(t, [][]byte{p2wpkhScript(t, k1.GetPublicKey())}, p2wpkhScript(t, k1.GetPublicKey()), false)
	truncated := eip155RLP(t)
	truncated = truncated[:len(truncated)-1]

	// Each chain error must reach the client verbatim: sign the same payload
	// with a throwaway key of the same algorithm through the chain package.
	k1Priv, k1Pub, err := sign.Secp256k1{}.Generate()
	require.NoError(t, err)
	edPriv, edPub, err := sign.Ed25519{}.Generate()
	require.NoError(t, err)
	direct := func(f func() (*signerv1.SignResponse, error)) string {
		_, err := f()
		require.ErrorIs(t, err, sign.ErrInvalidPayload)
		return err.Error()
	}
	badFields := proto.CloneOf(eip1559Fields)
	badFields.Nonce = "-1"

	tests := []struct {
		name     string
		req      *enclavev1.SignRequest
		want     string // exact message
		contains string
	}{
		{"truncated rlp", chainReq(k1.GetKeyId(), rlpTx(truncated)),
			direct(func() (*signerv1.SignResponse, error) {
				return eth.SignTransaction(sign.Secp256k1{}, k1Priv, k1Pub, rlpTx(truncated))
			}),
			"eth_transaction.unsigned_rlp: "},
		{"bad nonce", chainReq(k1.GetKeyId(), fieldsTx(badFields)),
			direct(func() (*signerv1.SignResponse, error) {
				return eth.SignTransaction(sign.Secp256k1{}, k1Priv, k1Pub, fieldsTx(badFields))
			}),
			"eth_transaction.fields.nonce: must not be negative"},
		{"no transaction", chainReq(k1.GetKeyId(), &signerv1.EthTransaction{}), "eth_transaction: one of unsigned_rlp or fields is required", ""},
		{"type cycle", chainReq(k1.GetKeyId(), typedData(typeCycle)),
			direct(func() (*signerv1.SignResponse, error) {
				return eth.SignTypedData(sign.Secp256k1{}, k1Priv, k1Pub, typeCycle)
			}),
			"type cycle: A -> B -> A"},
		{"psbt without utxo", chainReq(k1.GetKeyId(), &signerv1.BitcoinPsbt{Psbt: serializePSBT(t, noUTXO), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST}),
			"bitcoin_psbt: input 0: missing witness_utxo (UTXO data required to sign)", ""},
		{"psbt garbage", chainReq(k1.GetKeyId(), &signerv1.BitcoinPsbt{Psbt: []byte("not a psbt"), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST}),
			"", "bitcoin_psbt: "},
		{"sighash scheme", chainReq(k1.GetKeyId(), &signerv1.BitcoinSighash{Sighash: make([]byte, 32)}),
			"bitcoin_sighash: scheme must be ecdsa or schnorr, got SCHEME_UNSPECIFIED", ""},
		{"solana not a signer", chainReq(ed.GetKeyId(), solana(solanaVector(t, nil))),
			"solana_message: key " + ed.GetAddresses().GetSolana() + " is not a required signer of this message", ""},
		{"solana trailing bytes", chainReq(ed.GetKeyId(), solana(append(solanaVector(t, ed.GetPublicKey()), 0))),
			direct(func() (*signerv1.SignResponse, error) {
				return sol.SignMessage(edPriv, edPub, append(solanaVector(t, edPub), 0))
			}), "solana_message: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, s, enclavev1.Method_METHOD_SIGN, tt.req, &enclavev1.SignResponse{})
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
			msg := status.Convert(err).Message()
			if tt.want != "" {
				assert.Equal(t, tt.want, msg)
			}
			assert.Contains(t, msg, tt.contains)
			assert.NotContains(t, msg, sign.ErrInvalidPayload.Error())
			field, _, _ := strings.Cut(msg, ":")
			assert.Equal(t, 1, strings.Count(msg, field+":"), "field named twice: %s", msg)
		})
	}
}

func TestChainSizeLimits(t *testing.T) {
	s, _ := newServer(t)
	// The key is not loaded: a size error before FailedPrecondition shows
	// that sizes are checked before the keyring is asked.
	unknown := "key_0123456789abcdef0123456789abcdef"
	hugeFields := &signerv1.EthTxFields{Type: 2, Data: "0x" + strings.Repeat("ab", 3*eth.MaxTxSize/2+1)}

	tests := []struct {
		name string
		req  *enclavev1.SignRequest
		want string
	}{
		{"rlp", chainReq(unknown, rlpTx(make([]byte, eth.MaxTxSize+1))), "eth_transaction.unsigned_rlp: must be at most 131072 bytes, got 131073"},
		{"fields", chainReq(unknown, fieldsTx(hugeFields)), "eth_transaction.fields: must encode to at most 393216 bytes"},
		{"personal empty", chainReq(unknown, personal{}), "eth_personal_message: must not be empty"},
		{"personal", chainReq(unknown, personal(make([]byte, eth.MaxMessageSize+1))), "eth_personal_message: must be at most 65536 bytes"},
		{"typed data empty", chainReq(unknown, typedData("")), "eth_typed_data_json: must not be empty"},
		{"typed data", chainReq(unknown, typedData(strings.Repeat(" ", eth.MaxTypedDataSize+1))), "eth_typed_data_json: must be at most 131072 bytes"},
		{"sighash", chainReq(unknown, &signerv1.BitcoinSighash{Sighash: make([]byte, 31)}), "bitcoin_sighash.sighash: must be 32 bytes, got 31"},
		{"merkle root", chainReq(unknown, &signerv1.BitcoinSighash{Sighash: make([]byte, 32), TaprootMerkleRoot: make([]byte, 33)}),
			"bitcoin_sighash.taproot_merkle_root: must be empty or 32 bytes, got 33"},
		{"psbt empty", chainReq(unknown, &signerv1.BitcoinPsbt{}), "bitcoin_psbt.psbt: must not be empty"},
		{"psbt", chainReq(unknown, &signerv1.BitcoinPsbt{Psbt: make([]byte, btc.MaxPSBTSize+1)}), "bitcoin_psbt.psbt: must be at most 4194304 bytes"},
		{"solana empty", chainReq(unknown, solana{}), "solana_message: must not be empty"},
		{"solana", chainReq(unknown, solana(make([]byte, sol.MaxTransactionSize+1))), "solana_message: must be at most 1232 bytes, got 1233"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call(t, s, enclavev1.Method_METHOD_SIGN, tt.req, &enclavev1.SignResponse{})
			assert.Equal(t, codes.InvalidArgument, status.Code(err))
			assert.Contains(t, status.Convert(err).Message(), tt.want)
		})
	}
}

func TestPSBTWithoutInputOfKey(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, k1Alg)
	other := createKey(t, s, k1Alg)
	pkt, _ := unsignedPSBT(t, [][]byte{p2wpkhScript(t, other.GetPublicKey())}, p2wpkhScript(t, k1.GetPublicKey()), true)
	_, err := call(t, s, enclavev1.Method_METHOD_SIGN, chainReq(k1.GetKeyId(), &signerv1.BitcoinPsbt{
		Psbt: serializePSBT(t, pkt), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET}), &enclavev1.SignResponse{})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Equal(t, "bitcoin_psbt: no input belongs to this key", status.Convert(err).Message())
}

func TestCreateKeyAddresses(t *testing.T) {
	s, _ := newServer(t)

	c := createFull(t, s, k1Alg)
	k1 := c.GetKey()
	a := k1.GetAddresses()
	require.NotNil(t, a)
	// EIP-55, as go-ethereum writes it.
	assert.Equal(t, ethAddress(t, k1.GetPublicKey()), a.GetEthereum())
	assert.Regexp(t, `^0x[0-9a-fA-F]{40}$`, a.GetEthereum())
	assert.NotEqual(t, strings.ToLower(a.GetEthereum()), a.GetEthereum(), "no EIP-55 checksum (odds 2^-40)")
	assert.Empty(t, a.GetSolana())

	wpkh, tr := p2wpkhScript(t, k1.GetPublicKey()), p2trScript(t, k1.GetPublicKey())
	for _, tc := range []struct {
		addr, prefix string
		net          *chaincfg.Params
		script       []byte
	}{
		{a.GetBitcoinP2Wpkh(), "bc1q", &chaincfg.MainNetParams, wpkh},
		{a.GetBitcoinP2Tr(), "bc1p", &chaincfg.MainNetParams, tr},
		{a.GetBitcoinTestnetP2Wpkh(), "tb1q", &chaincfg.TestNet3Params, wpkh},
		{a.GetBitcoinTestnetP2Tr(), "tb1p", &chaincfg.TestNet3Params, tr},
		{a.GetBitcoinRegtestP2Wpkh(), "bcrt1q", &chaincfg.RegressionNetParams, wpkh},
		{a.GetBitcoinRegtestP2Tr(), "bcrt1p", &chaincfg.RegressionNetParams, tr},
	} {
		assert.True(t, strings.HasPrefix(tc.addr, tc.prefix), "%s does not start with %s", tc.addr, tc.prefix)
		addr, err := btcutil.DecodeAddress(tc.addr, tc.net)
		require.NoError(t, err, tc.addr)
		assert.True(t, addr.IsForNet(tc.net), tc.addr)
		script, err := txscript.PayToAddrScript(addr)
		require.NoError(t, err)
		assert.Equal(t, tc.script, script, tc.addr)
	}

	ed := createKey(t, s, edAlg)
	require.NotNil(t, ed.GetAddresses())
	b, err := base58.Decode(ed.GetAddresses().GetSolana())
	require.NoError(t, err)
	assert.Equal(t, ed.GetPublicKey(), b)
	assert.True(t, proto.Equal(&signerv1.Addresses{Solana: ed.GetAddresses().GetSolana()}, ed.GetAddresses()))

	assert.Nil(t, createKey(t, s, p256Alg).GetAddresses())

	// Describing the sealed key gives the same addresses.
	d, err := call(t, s, enclavev1.Method_METHOD_DESCRIBE_KEYS,
		&enclavev1.DescribeKeysRequest{Keys: []*enclavev1.SealedBlobs{blobsOf(c)}}, &enclavev1.DescribeKeysResponse{})
	require.NoError(t, err)
	assert.True(t, proto.Equal(a, d.GetKeys()[0].GetKey().GetAddresses()))
}

func TestSignBatchChainPayloads(t *testing.T) {
	s, _ := newServer(t)
	k1 := createKey(t, s, k1Alg)
	ed := createKey(t, s, edAlg)
	other := createKey(t, s, k1Alg)
	notMine, _ := unsignedPSBT(t, [][]byte{p2wpkhScript(t, other.GetPublicKey())}, p2wpkhScript(t, k1.GetPublicKey()), true)
	msg := solanaVector(t, ed.GetPublicKey())

	reqs := []*signerv1.SignRequest{
		chainReq(k1.GetKeyId(), rlpTx(eip155RLP(t))).GetRequest(),
		chainReq(ed.GetKeyId(), solana(msg)).GetRequest(),
		chainReq(k1.GetKeyId(), &signerv1.BitcoinPsbt{Psbt: serializePSBT(t, notMine), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET}).GetRequest(),
		chainReq(k1.GetKeyId(), solana(msg)).GetRequest(),
		chainReq(k1.GetKeyId(), typedData(typeCycle)).GetRequest(),
		chainReq(k1.GetKeyId(), personal("hello")).GetRequest(),
	}
	r, err := call(t, s, enclavev1.Method_METHOD_SIGN_BATCH,
		&enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{Requests: reqs}}, &enclavev1.SignBatchResponse{})
	require.NoError(t, err)
	res := r.GetResponse().GetResults()
	require.Len(t, res, len(reqs))

	var tx types.Transaction
	require.NoError(t, tx.UnmarshalBinary(res[0].GetResponse().GetSignedPayload()))
	sender, err := types.Sender(types.LatestSignerForChainID(big.NewInt(1)), &tx)
	require.NoError(t, err)
	assert.Equal(t, k1.GetAddresses().GetEthereum(), sender.Hex())
	assert.Equal(t, k1.GetKeyId(), res[0].GetResponse().GetKeyId())

	assert.True(t, ed25519.Verify(ed.GetPublicKey(), msg, res[1].GetResponse().GetSignature()))
	assert.Equal(t, edAlg, res[1].GetResponse().GetAlgorithm())

	assert.Equal(t, int32(codes.FailedPrecondition), res[2].GetError().GetCode())
	assert.Equal(t, int32(codes.InvalidArgument), res[3].GetError().GetCode())
	assert.Contains(t, res[3].GetError().GetMessage(), "solana_message: secp256k1 keys cannot sign Solana payloads")
	assert.Equal(t, int32(codes.InvalidArgument), res[4].GetError().GetCode())
	assert.Contains(t, res[4].GetError().GetMessage(), "type cycle")
	assert.Equal(t, k1.GetAddresses().GetEthereum(),
		recoverEIP191(t, accounts.TextHash([]byte("hello")), res[5].GetResponse().GetSignature()))
}

// recordHandler keeps log records for inspection.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// signed returns the attributes of the "signed" records, with their level.
func (h *recordHandler) signed() []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.records {
		if r.Message != "signed" {
			continue
		}
		m := map[string]string{"level": r.Level.String()}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

func TestSignedLogs(t *testing.T) {
	h := &recordHandler{}
	s, _ := newServerLog(t, slog.New(h))
	k1 := createKey(t, s, k1Alg)
	ed := createKey(t, s, edAlg)

	rlp := eip155RLP(t)
	tx := signOK(t, s, chainReq(k1.GetKeyId(), rlpTx(rlp)))
	call1559 := signOK(t, s, chainReq(k1.GetKeyId(), fieldsTx(eip1559Fields)))
	pkt, _ := unsignedPSBT(t, [][]byte{p2wpkhScript(t, k1.GetPublicKey())}, p2trScript(t, k1.GetPublicKey()), true)
	signOK(t, s, chainReq(k1.GetKeyId(), &signerv1.BitcoinPsbt{Psbt: serializePSBT(t, pkt), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_REGTEST}))
	signOK(t, s, chainReq(ed.GetKeyId(), solana(solanaVector(t, ed.GetPublicKey()))))
	digest := signOK(t, s, signReq(k1.GetKeyId(), make([]byte, 32), nil))

	logs := h.signed()
	require.Len(t, logs, 5)
	assert.Subset(t, logs[0], map[string]string{
		"level": "INFO", "key_id": k1.GetKeyId(), "payload": "eth_transaction", "chain_id": "1", "tx_type": "0",
		"to": "0x3535353535353535353535353535353535353535", "value": "1000000000000000000", "nonce": "9",
		"gas_limit": "21000", "gas_price": "20000000000", "tx_hash": hex.EncodeToString(tx.GetTxHash()),
	})
	assert.Subset(t, logs[1], map[string]string{
		"payload": "eth_transaction", "chain_id": "11155111", "tx_type": "2", "max_fee_per_gas": "30000000000",
		"max_priority_fee_per_gas": "1500000000", "selector": "a9059cbb", "nonce": "42",
	})
	assert.Subset(t, logs[2], map[string]string{
		"payload": "bitcoin_psbt", "network": "BITCOIN_NETWORK_REGTEST", "inputs": "1", "outputs": "1",
		"signed_inputs": "1", "total_input": "100000", "total_output": "99000", "fee": "1000",
		"outputs_committed": "true", "inputs_committed": "true",
	})
	assert.Contains(t, logs[2], "amounts_committed")
	assert.Subset(t, logs[3], map[string]string{
		"payload": "solana_message", "version": "legacy", "fee_payer": ed.GetAddresses().GetSolana(),
		"program_ids": "[11111111111111111111111111111111]",
		"transfers":   "[" + ed.GetAddresses().GetSolana() + ">J3dxNj7nDRRqRRXuEMynDG57DkZK4jYRuv3Garmb1i99:49]",
	})
	assert.Equal(t, map[string]string{"level": "DEBUG", "key_id": k1.GetKeyId(), "payload": "digest"}, logs[4])

	// No log carries the payload, a signature or a key.
	secrets := []string{hex.EncodeToString(rlp), hex.EncodeToString(tx.GetSignature()), hex.EncodeToString(tx.GetSignedPayload()),
		hex.EncodeToString(call1559.GetSignature()), hex.EncodeToString(digest.GetSignature()), hex.EncodeToString(k1.GetPublicKey())}
	for _, l := range logs {
		for k, v := range l {
			for _, sec := range secrets {
				assert.NotContains(t, v, sec, "log attribute %s", k)
			}
		}
	}
}

// chainSeeds returns one valid request per chain payload kind for the
// loaded keys k1 (secp256k1) and ed (ed25519), built from the chain
// packages' vectors.
func chainSeeds(t testing.TB, k1, ed *signerv1.Key) []*enclavev1.SignRequest {
	t.Helper()
	wpkh := p2wpkhScript(t, k1.GetPublicKey())
	pkt, _ := unsignedPSBT(t, [][]byte{wpkh, p2trScript(t, k1.GetPublicKey())}, wpkh, true)
	id := k1.GetKeyId()
	return []*enclavev1.SignRequest{
		chainReq(id, rlpTx(eip155RLP(t))),
		chainReq(id, fieldsTx(eip1559Fields)),
		chainReq(id, personal("Some data")),
		chainReq(id, typedData(mailTypedData(t))),
		chainReq(id, &signerv1.BitcoinSighash{Sighash: make([]byte, 32), Scheme: signerv1.BitcoinSighash_SCHEME_SCHNORR, TaprootTweak: true}),
		chainReq(id, &signerv1.BitcoinPsbt{Psbt: serializePSBT(t, pkt), Network: signerv1.BitcoinNetwork_BITCOIN_NETWORK_MAINNET}),
		chainReq(ed.GetKeyId(), solana(solanaVector(t, ed.GetPublicKey()))),
	}
}
