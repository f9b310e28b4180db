package eth_test

import (
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimPrefix(s, "0x"))
	require.NoError(t, err)
	return b
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

// keyPair returns a private key (hex) and its uncompressed public key.
func keyPair(t testing.TB, privHex string) (priv, pub []byte) {
	t.Helper()
	s, ok := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	require.True(t, ok)
	priv = unhex(t, privHex)
	pub, err := s.PublicKey(priv)
	require.NoError(t, err)
	return priv, pub
}

func ethSummary(t testing.TB, r *signerv1.SignResponse) *signerv1.EthSummary {
	t.Helper()
	s := r.GetSummary().GetEthereum()
	require.NotNil(t, s)
	return s
}

func TestEIP155Vector(t *testing.T) {
	var v struct {
		PrivateKey string `json:"private_key"`
		Tx         struct {
			Nonce    uint64 `json:"nonce"`
			GasPrice string `json:"gasPrice"`
			GasLimit uint64 `json:"gasLimit"`
			To       string `json:"to"`
			Value    string `json:"value"`
			Data     string `json:"data"`
			ChainID  uint64 `json:"chainId"`
		} `json:"tx"`
		SigningData string `json:"signing_data_rlp"`
		SigningHash string `json:"signing_hash"`
		V           uint64 `json:"v"`
		R           string `json:"r"`
		S           string `json:"s"`
		SignedTx    string `json:"signed_tx_rlp"`
		Derived     struct {
			Sender string `json:"sender_address"`
			TxHash string `json:"tx_hash"`
		} `json:"derived_not_in_eip"`
	}
	readJSON(t, "eip155_example.json", &v)
	priv, pub := keyPair(t, v.PrivateKey)
	forms := map[string]*signerv1.EthTransaction{
		"unsigned_rlp": {Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: unhex(t, v.SigningData)}},
		"fields": {Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{
			Type:     0,
			ChainId:  strconv.FormatUint(v.Tx.ChainID, 10),
			Nonce:    strconv.FormatUint(v.Tx.Nonce, 10),
			GasPrice: v.Tx.GasPrice,
			Gas:      "0x5208", // 21000, in hex to cover both notations
			To:       v.Tx.To,
			Value:    v.Tx.Value,
			Data:     v.Tx.Data,
		}}},
	}
	for name, tx := range forms {
		t.Run(name, func(t *testing.T) {
			r, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, tx)
			require.NoError(t, err)
			assert.Equal(t, v.SignedTx, "0x"+hex.EncodeToString(r.GetSignedPayload()))
			assert.Equal(t, v.Derived.TxHash, "0x"+hex.EncodeToString(r.GetTxHash()))
			assert.Equal(t, v.V, r.GetEthSignature().GetV())
			assert.Equal(t, unhex(t, v.R), r.GetEthSignature().GetR())
			assert.Equal(t, unhex(t, v.S), r.GetEthSignature().GetS())
			assert.Equal(t, append(unhex(t, v.R+v.S[2:]), byte(v.V-35-2*v.Tx.ChainID)), r.GetSignature())
			assert.Empty(t, r.GetKeyId())
			assert.Equal(t, signerv1.Algorithm_ALGORITHM_UNSPECIFIED, r.GetAlgorithm())
			s := ethSummary(t, r)
			assert.Equal(t, "transaction", s.GetKind())
			assert.Equal(t, "1", s.GetChainId())
			assert.Equal(t, uint32(0), s.GetTxType())
			assert.Equal(t, v.Derived.Sender, s.GetFrom())
			assert.Equal(t, "0x3535353535353535353535353535353535353535", s.GetTo())
			assert.Equal(t, "1000000000000000000", s.GetValue())
			assert.Equal(t, uint64(9), s.GetNonce())
			assert.Equal(t, uint64(21000), s.GetGasLimit())
			assert.Equal(t, "20000000000", s.GetGasPrice())
			assert.Empty(t, s.GetMaxFeePerGas())
			assert.Empty(t, s.GetSelector())
			assert.Zero(t, s.GetDataLength())
			assert.Equal(t, unhex(t, v.SigningHash), s.GetDigest())
		})
	}
}

type eip1559Vector struct {
	Nonce       uint64 `json:"nonce"`
	Value       uint64 `json:"value"`
	GasLimit    uint64 `json:"gasLimit"`
	MaxPriority uint64 `json:"maxPriorityFeePerGas"`
	MaxFee      uint64 `json:"maxFeePerGas"`
	To          string `json:"to"`
	PrivateKey  string `json:"privateKey"`
	SignedRLP   string `json:"signedTransactionRLP"`
}

// networkEncoding strips the extra RLP string header of the ethereumjs file
// (see testdata/README.md) to get 0x02 || rlp([...]).
func (v eip1559Vector) networkEncoding(t testing.TB) []byte {
	t.Helper()
	b := unhex(t, v.SignedRLP)
	require.Equal(t, byte(0xb8), b[0], "long string header")
	require.Equal(t, int(b[1]), len(b)-2)
	return b[2:]
}

func TestEIP1559Vectors(t *testing.T) {
	var vs []eip1559Vector
	readJSON(t, "eip1559_ethereumjs.json", &vs)
	require.Len(t, vs, 10)
	for i, v := range vs {
		priv, pub := keyPair(t, v.PrivateKey)
		want := v.networkEncoding(t)
		tx := &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: &signerv1.EthTxFields{
			Type:                 2,
			ChainId:              "4",
			Nonce:                strconv.FormatUint(v.Nonce, 10),
			MaxPriorityFeePerGas: "0x" + strconv.FormatUint(v.MaxPriority, 16),
			MaxFeePerGas:         strconv.FormatUint(v.MaxFee, 10),
			Gas:                  strconv.FormatUint(v.GasLimit, 10),
			To:                   v.To,
			Value:                strconv.FormatUint(v.Value, 10),
		}}}
		r, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, tx)
		require.NoError(t, err, i)
		assert.Equal(t, want, r.GetSignedPayload(), "vector %d", i)
		assert.Equal(t, "0xFE3B557E8Fb62b89F4916B721be55cEb828dBd73", ethSummary(t, r).GetFrom())
		s := ethSummary(t, r)
		assert.Equal(t, "4", s.GetChainId())
		assert.Equal(t, uint32(2), s.GetTxType())
		assert.Equal(t, strconv.FormatUint(v.MaxFee, 10), s.GetMaxFeePerGas())
		assert.Equal(t, strconv.FormatUint(v.MaxPriority, 10), s.GetMaxPriorityFeePerGas())
		assert.Empty(t, s.GetGasPrice())
		if i == 0 {
			// Values the shared README derived for vector 0.
			assert.Equal(t, unhex(t, "0xe0b52197916ca4528d05e8abfe4fd902e91dbd3137a423856228e737d984f6b2"), s.GetDigest())
			assert.Equal(t, unhex(t, "0x2e564c87eb4b40e7f469b2eec5aa5d18b0b46a24e8bf0919439cfb0e8fcae446"), r.GetTxHash())
			assert.Equal(t, uint64(0), r.GetEthSignature().GetV())
			assert.Equal(t, unhex(t, "0x0f924cb68412c8f1cfd74d9b581c71eeaf94fff6abdde3e5b02ca6b2931dcf47"), r.GetEthSignature().GetR())
			assert.Equal(t, unhex(t, "0x7dd1c50027c3e31f8b565e25ce68a5072110f61fce5eee81b195dd51273c2f83"), r.GetEthSignature().GetS())
		}
		// The y parity is the signature's last byte and the encoding's
		// y_parity item (third-to-last item, before two 33-byte r, s).
		assert.Equal(t, byte(r.GetEthSignature().GetV()), r.GetSignature()[64])
	}
}

func TestPersonalSignVectors(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name        string `json:"name"`
			PrivateKey  string `json:"private_key"`
			Address     string `json:"address"`
			MessageHex  string `json:"message_hex"`
			MessageHash string `json:"message_hash"`
			Signature   string `json:"signature"`
		} `json:"vectors"`
	}
	readJSON(t, "eip191_personal_sign.json", &f)
	require.Len(t, f.Vectors, 4)
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			priv, pub := keyPair(t, v.PrivateKey)
			msg := unhex(t, v.MessageHex)
			r, err := eth.SignPersonalMessage(sign.Secp256k1{}, priv, pub, msg)
			require.NoError(t, err)
			want := unhex(t, v.Signature)
			assert.Equal(t, want, r.GetSignature())
			assert.Equal(t, uint64(want[64]), r.GetEthSignature().GetV())
			assert.Equal(t, want[:32], r.GetEthSignature().GetR())
			assert.Equal(t, want[32:64], r.GetEthSignature().GetS())
			assert.Empty(t, r.GetSignedPayload())
			s := ethSummary(t, r)
			assert.Equal(t, "personal_message", s.GetKind())
			assert.Equal(t, v.Address, s.GetFrom())
			assert.Equal(t, uint32(len(msg)), s.GetMessageLength())
			assert.Equal(t, unhex(t, v.MessageHash), s.GetDigest())
		})
	}
}

type mailExample struct {
	TypedData    json.RawMessage `json:"typed_data"`
	Digest       string          `json:"digest"`
	PrivateKey   string          `json:"private_key"`
	Address      string          `json:"address"`
	SignatureRSV string          `json:"signature_rsv"`
	V            uint64          `json:"v"`
}

func TestTypedDataMailVector(t *testing.T) {
	var v mailExample
	readJSON(t, "eip712_mail_example.json", &v)
	priv, pub := keyPair(t, v.PrivateKey)
	r, err := eth.SignTypedData(sign.Secp256k1{}, priv, pub, string(v.TypedData))
	require.NoError(t, err)
	assert.Equal(t, unhex(t, v.SignatureRSV), r.GetSignature())
	assert.Equal(t, v.V, r.GetEthSignature().GetV())
	s := ethSummary(t, r)
	assert.Equal(t, "typed_data", s.GetKind())
	assert.Equal(t, unhex(t, v.Digest), s.GetDigest())
	assert.Equal(t, v.Address, s.GetFrom())
	assert.Equal(t, "Ether Mail", s.GetDomainName())
	assert.Equal(t, "1", s.GetDomainVersion())
	assert.Equal(t, "1", s.GetChainId())
	assert.Equal(t, "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC", s.GetVerifyingContract())
	assert.Equal(t, "Mail", s.GetPrimaryType())
}

func TestAddress(t *testing.T) {
	_, pub := keyPair(t, "0x4646464646464646464646464646464646464646464646464646464646464646")
	addr, err := eth.Address(pub)
	require.NoError(t, err)
	assert.Equal(t, "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F", addr)

	bad := append([]byte(nil), pub...)
	bad[64] ^= 1 // off the curve
	for name, p := range map[string][]byte{"short": pub[:64], "compressed prefix": append([]byte{0x02}, pub[1:]...), "off curve": bad} {
		_, err := eth.Address(p)
		assert.Error(t, err, name)
	}
}

// TestSelectorAndCreation checks the summary of a contract call and of a
// contract creation.
func TestSelectorAndCreation(t *testing.T) {
	priv, pub := keyPair(t, "0x4646464646464646464646464646464646464646464646464646464646464646")
	fields := &signerv1.EthTxFields{
		Type: 1, ChainId: "0x89", Nonce: "0", GasPrice: "1", Gas: "100000",
		To:   "0x3535353535353535353535353535353535353535",
		Data: "0xa9059cbb00000000000000000000000000000000000000000000000000000000000000ff",
		AccessList: []*signerv1.EthAccessTuple{{
			Address:     "0x3535353535353535353535353535353535353535",
			StorageKeys: []string{"0x" + strings.Repeat("00", 31) + "01"},
		}},
	}
	r, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: fields}})
	require.NoError(t, err)
	s := ethSummary(t, r)
	assert.Equal(t, "137", s.GetChainId())
	assert.Equal(t, unhex(t, "a9059cbb"), s.GetSelector())
	assert.Equal(t, uint32(36), s.GetDataLength())
	assert.Equal(t, uint32(1), s.GetAccessListEntries())
	assert.Equal(t, "0", s.GetValue())

	fields.To, fields.AccessList = "", nil
	r, err = eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: fields}})
	require.NoError(t, err)
	assert.Empty(t, ethSummary(t, r).GetTo())

	// The largest chain id whose legacy v fits in 64 bits (EIP-2294):
	// v = chainId*2 + 35 + parity = 2^64 - 39 + parity.
	fields.Type = 0
	fields.ChainId = new(big.Int).SetUint64((1<<64-1)/2 - 36).String()
	r, err = eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: fields}})
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<64-1)-38+uint64(r.GetSignature()[64]), r.GetEthSignature().GetV())
}
