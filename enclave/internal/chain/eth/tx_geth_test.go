package eth_test

// Transactions signed here must be accepted by go-ethereum, used as an
// independent implementation (tests only; the enclave does not import it).

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// randTx is a random transaction in go-ethereum's terms, with both request
// forms for it.
type randTx struct {
	data     types.TxData
	chainID  *big.Int
	unsigned []byte // unsigned encoding built with go-ethereum's rlp package
	fields   *signerv1.EthTxFields
}

func randBig(r *rand.Rand, maxBits int) *big.Int {
	bits := r.IntN(maxBits + 1)
	b := make([]byte, (bits+7)/8)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	x := new(big.Int).SetBytes(b)
	return x.Rsh(x, uint(len(b)*8-bits))
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// quantity writes x in decimal or in 0x-hex at random.
func quantity(r *rand.Rand, x *big.Int) string {
	if r.IntN(2) == 0 {
		return x.String()
	}
	return "0x" + x.Text(16)
}

func newRandTx(t testing.TB, r *rand.Rand, typ uint8) randTx {
	t.Helper()
	chainIDs := []uint64{1, 5, 56, 137, 42161, 11155111, r.Uint64N((1<<64-1)/2 - 36)}
	chainID := new(big.Int).SetUint64(chainIDs[r.IntN(len(chainIDs))])
	if chainID.Sign() == 0 {
		chainID.SetUint64(1)
	}
	nonce := randBig(r, 64).Uint64()
	gas := randBig(r, 64).Uint64()
	value := randBig(r, 256)
	lengths := []int{0, 1, 4, 36, 55, 56, 200, 255, 256, 1000, 70000}
	data := randBytes(r, lengths[r.IntN(len(lengths))])
	var to *common.Address
	if r.IntN(5) > 0 {
		a := common.BytesToAddress(randBytes(r, 20))
		to = &a
	}
	var al types.AccessList
	if typ != 0 {
		for range r.IntN(4) {
			tuple := types.AccessTuple{Address: common.BytesToAddress(randBytes(r, 20)), StorageKeys: []common.Hash{}}
			for range r.IntN(4) {
				tuple.StorageKeys = append(tuple.StorageKeys, common.BytesToHash(randBytes(r, 32)))
			}
			al = append(al, tuple)
		}
	}
	toBytes := []byte{}
	toField := ""
	if to != nil {
		toBytes = to.Bytes()
		toField = to.Hex() // EIP-55
		if r.IntN(2) == 0 {
			toField = "0x" + hex.EncodeToString(toBytes)
		}
	}
	f := &signerv1.EthTxFields{
		Type:    uint32(typ),
		ChainId: quantity(r, chainID),
		Nonce:   quantity(r, new(big.Int).SetUint64(nonce)),
		Gas:     quantity(r, new(big.Int).SetUint64(gas)),
		To:      toField,
		Value:   quantity(r, value),
		Data:    "0x" + hex.EncodeToString(data),
	}
	for _, tuple := range al {
		et := &signerv1.EthAccessTuple{Address: tuple.Address.Hex(), StorageKeys: []string{}}
		for _, k := range tuple.StorageKeys {
			et.StorageKeys = append(et.StorageKeys, k.Hex())
		}
		f.AccessList = append(f.AccessList, et)
	}
	var items []any
	rt := randTx{chainID: chainID, fields: f}
	switch typ {
	case 0:
		gasPrice := randBig(r, 256)
		f.GasPrice = quantity(r, gasPrice)
		rt.data = &types.LegacyTx{Nonce: nonce, GasPrice: gasPrice, Gas: gas, To: to, Value: value, Data: data}
		items = []any{nonce, gasPrice, gas, toBytes, value, data, chainID, uint(0), uint(0)}
	case 1:
		gasPrice := randBig(r, 256)
		f.GasPrice = quantity(r, gasPrice)
		rt.data = &types.AccessListTx{ChainID: chainID, Nonce: nonce, GasPrice: gasPrice, Gas: gas, To: to, Value: value, Data: data, AccessList: al}
		items = []any{chainID, nonce, gasPrice, gas, toBytes, value, data, al}
	case 2:
		tip, fee := randBig(r, 256), randBig(r, 256)
		if tip.Cmp(fee) > 0 {
			tip, fee = fee, tip
		}
		f.MaxPriorityFeePerGas, f.MaxFeePerGas = quantity(r, tip), quantity(r, fee)
		rt.data = &types.DynamicFeeTx{ChainID: chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: fee, Gas: gas, To: to, Value: value, Data: data, AccessList: al}
		items = []any{chainID, nonce, tip, fee, gas, toBytes, value, data, al}
	}
	enc, err := rlp.EncodeToBytes(items)
	require.NoError(t, err)
	if typ != 0 {
		enc = append([]byte{typ}, enc...)
	}
	rt.unsigned = enc
	return rt
}

func TestRandomTransactionsAcceptedByGeth(t *testing.T) {
	const perType = 40
	for typ := range uint8(3) {
		for i := range perType {
			t.Run(fmt.Sprintf("type%d/%d", typ, i), func(t *testing.T) {
				r := rand.New(rand.NewPCG(uint64(typ), uint64(i)))
				priv, pub := keyPair(t, hex.EncodeToString(randBytes(r, 32)))
				rt := newRandTx(t, r, typ)

				byRLP, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: rt.unsigned}})
				require.NoError(t, err)
				byFields, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: rt.fields}})
				require.NoError(t, err)
				require.True(t, proto.Equal(byRLP, byFields), "both request forms give the same answer")

				// go-ethereum decodes the signed payload to the same fields.
				var got types.Transaction
				require.NoError(t, got.UnmarshalBinary(byRLP.GetSignedPayload()))
				want := types.NewTx(rt.data)
				assert.Equal(t, typ, got.Type())
				assert.Equal(t, rt.chainID, got.ChainId())
				assert.Equal(t, want.Nonce(), got.Nonce())
				assert.Equal(t, want.Gas(), got.Gas())
				assert.Equal(t, want.GasPrice(), got.GasPrice())
				assert.Equal(t, want.GasTipCap(), got.GasTipCap())
				assert.Equal(t, want.GasFeeCap(), got.GasFeeCap())
				assert.Equal(t, want.To(), got.To())
				assert.Equal(t, want.Value(), got.Value())
				assert.Equal(t, want.Data(), got.Data())
				assert.Equal(t, want.AccessList(), got.AccessList())
				assert.Equal(t, got.Hash().Bytes(), byRLP.GetTxHash())

				// Its signer computes the same signing hash and recovers our address.
				signer := types.LatestSignerForChainID(rt.chainID)
				s := ethSummary(t, byRLP)
				assert.Equal(t, signer.Hash(&got).Bytes(), s.GetDigest())
				from, err := types.Sender(signer, &got)
				require.NoError(t, err)
				assert.Equal(t, from.Hex(), s.GetFrom())
				v, rr, ss := got.RawSignatureValues()
				assert.Equal(t, v.Uint64(), byRLP.GetEthSignature().GetV())
				assert.Equal(t, rr.FillBytes(make([]byte, 32)), byRLP.GetEthSignature().GetR())
				assert.Equal(t, ss.FillBytes(make([]byte, 32)), byRLP.GetEthSignature().GetS())

				// go-ethereum signing the same transaction (RFC 6979) gives the
				// same bytes.
				key, err := crypto.ToECDSA(priv)
				require.NoError(t, err)
				gethSigned, err := types.SignNewTx(key, signer, rt.data)
				require.NoError(t, err)
				enc, err := gethSigned.MarshalBinary()
				require.NoError(t, err)
				assert.Equal(t, enc, byRLP.GetSignedPayload())

				// The summary matches the transaction.
				assert.Equal(t, rt.chainID.String(), s.GetChainId())
				assert.Equal(t, uint32(typ), s.GetTxType())
				assert.Equal(t, want.Value().String(), s.GetValue())
				assert.Equal(t, want.Nonce(), s.GetNonce())
				assert.Equal(t, want.Gas(), s.GetGasLimit())
				assert.Equal(t, uint32(len(want.Data())), s.GetDataLength())
				assert.Equal(t, uint32(len(want.AccessList())), s.GetAccessListEntries())
				if want.To() != nil {
					assert.Equal(t, want.To().Hex(), s.GetTo())
				} else {
					assert.Empty(t, s.GetTo())
				}
				if len(want.Data()) >= 4 {
					assert.Equal(t, want.Data()[:4], s.GetSelector())
				} else {
					assert.Empty(t, s.GetSelector())
				}
				if typ == 2 {
					assert.Equal(t, want.GasFeeCap().String(), s.GetMaxFeePerGas())
					assert.Equal(t, want.GasTipCap().String(), s.GetMaxPriorityFeePerGas())
					assert.Empty(t, s.GetGasPrice())
				} else {
					assert.Equal(t, want.GasPrice().String(), s.GetGasPrice())
					assert.Empty(t, s.GetMaxFeePerGas())
				}
			})
		}
	}
}
