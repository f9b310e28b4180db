package eth_test

import (
	"bytes"
	"encoding/json"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rlp"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// unsignedFromSigned drops the y_parity, r, s items of a signed typed
// transaction, using go-ethereum's rlp package.
func unsignedFromSigned(t testing.TB, signed []byte) []byte {
	t.Helper()
	var items []rlp.RawValue
	require.NoError(t, rlp.DecodeBytes(signed[1:], &items))
	enc, err := rlp.EncodeToBytes(items[:len(items)-3])
	require.NoError(t, err)
	return append([]byte{signed[0]}, enc...)
}

func txSeeds(t testing.TB) [][]byte {
	t.Helper()
	var eip155 struct {
		SigningData string `json:"signing_data_rlp"`
		SignedTx    string `json:"signed_tx_rlp"`
	}
	readJSON(t, "eip155_example.json", &eip155)
	var eip1559 []eip1559Vector
	readJSON(t, "eip1559_ethereumjs.json", &eip1559)
	seeds := [][]byte{unhex(t, eip155.SigningData), unhex(t, eip155.SignedTx)}
	for _, v := range eip1559 {
		signed := v.networkEncoding(t)
		seeds = append(seeds, signed, unsignedFromSigned(t, signed))
	}
	r := rand.New(rand.NewPCG(3, 3))
	for typ := range uint8(3) {
		for range 3 {
			seeds = append(seeds, newRandTx(t, r, typ).unsigned)
		}
	}
	return seeds
}

// FuzzDecodeTransaction feeds arbitrary bytes to the unsigned-transaction
// decoder. Whatever it accepts must be canonical (encoding it again gives the
// same bytes), and once signed must be accepted by go-ethereum with the same
// signing hash and sender.
func FuzzDecodeTransaction(f *testing.F) {
	for _, s := range txSeeds(f) {
		f.Add(s)
	}
	priv, pub := keyPair(f, testKey)
	from, err := eth.Address(pub)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, b []byte) {
		again, err := eth.ReencodeUnsignedTx(b)
		if err != nil {
			return
		}
		require.Equal(t, b, again, "accepted encodings are canonical")
		r, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: b}})
		require.NoError(t, err)
		var tx types.Transaction
		require.NoError(t, tx.UnmarshalBinary(r.GetSignedPayload()))
		signer := types.LatestSignerForChainID(tx.ChainId())
		require.Equal(t, signer.Hash(&tx).Bytes(), r.GetSummary().GetEthereum().GetDigest())
		sender, err := types.Sender(signer, &tx)
		require.NoError(t, err)
		require.Equal(t, from, sender.Hex())
		require.Equal(t, tx.Hash().Bytes(), r.GetTxHash())
	})
}

func typedDataSeeds(t testing.TB) []string {
	t.Helper()
	var v mailExample
	readJSON(t, "eip712_mail_example.json", &v)
	seeds := []string{string(v.TypedData), recursiveDoc}
	for i := range 6 {
		g := &tdGen{r: rand.New(rand.NewPCG(9, uint64(i))), types: map[string][]map[string]string{}}
		names := structNames[:2+i%3]
		g.defineStructs(names)
		domainFields, domain := g.domain()
		types := map[string]any{"EIP712Domain": domainFields}
		for n, f := range g.types {
			if f == nil {
				f = []map[string]string{}
			}
			types[n] = f
		}
		doc, err := json.Marshal(map[string]any{"types": types, "primaryType": names[0], "domain": domain, "message": g.value(names[0])})
		require.NoError(t, err)
		seeds = append(seeds, string(doc))
	}
	return seeds
}

// FuzzTypedData feeds arbitrary JSON to the EIP-712 hasher. It must not
// panic, and whenever both it and go-ethereum accept an input they must
// agree on the digest (go-ethereum accepts some inputs this package refuses
// on purpose, such as duplicate keys or out-of-range intN values).
func FuzzTypedData(f *testing.F) {
	for _, s := range typedDataSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := eth.HashTypedData(s)
		if err != nil {
			return
		}
		require.Len(t, got, 32)
		if want, err := gethTypedDataHash(s); err == nil && !bytes.Equal(want, got) {
			t.Fatalf("digest %x, go-ethereum %x for %s", got, want, s)
		}
	})
}

func BenchmarkSignTransactionEIP1559(b *testing.B) {
	priv, pub := keyPair(b, testKey)
	tx := &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{
		Type: 2, ChainId: "1", Nonce: "42", MaxPriorityFeePerGas: "1500000000", MaxFeePerGas: "30000000000",
		Gas: "65000", To: "0xdAC17F958D2ee523a2206206994597C13D831ec7", Value: "0",
		Data: "0xa9059cbb0000000000000000000000009d8a62f656a8d1615c1294fd71e9cfb3e4855a4f00000000000000000000000000000000000000000000000000000000000f4240",
	}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, tx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignTransactionEIP1559RLP(b *testing.B) {
	priv, pub := keyPair(b, testKey)
	to := new(big.Int).SetBytes(unhex(b, "dAC17F958D2ee523a2206206994597C13D831ec7")).FillBytes(make([]byte, 20))
	enc, err := rlp.EncodeToBytes([]any{uint64(1), uint64(42), uint64(1500000000), uint64(30000000000), uint64(65000), to, uint64(0), unhex(b, "a9059cbb0000000000000000000000009d8a62f656a8d1615c1294fd71e9cfb3e4855a4f00000000000000000000000000000000000000000000000000000000000f4240"), types.AccessList{}})
	require.NoError(b, err)
	tx := &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: append([]byte{2}, enc...)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, tx); err != nil {
			b.Fatal(err)
		}
	}
}
