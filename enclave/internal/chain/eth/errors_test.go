package eth_test

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/chain/eth"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// rlpList wraps already-encoded items (hex) in an RLP list header.
func rlpList(t testing.TB, items ...string) []byte {
	t.Helper()
	payload := unhex(t, strings.Join(items, ""))
	if len(payload) < 56 {
		return append([]byte{0xc0 + byte(len(payload))}, payload...)
	}
	require.Less(t, len(payload), 1<<16)
	if len(payload) < 256 {
		return append([]byte{0xf8, byte(len(payload))}, payload...)
	}
	return append([]byte{0xf9, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

// The EIP-155 example's items, encoded.
var (
	eipNonce    = "09"
	eipGasPrice = "8504a817c800"
	eipGas      = "825208"
	eipTo       = "94" + strings.Repeat("35", 20)
	eipValue    = "880de0b6b3a7640000"
)

func legacy(t testing.TB, nonce, chainID string) []byte {
	return rlpList(t, nonce, eipGasPrice, eipGas, eipTo, eipValue, "80", chainID, "80", "80")
}

// dynamicFee builds 0x02 || rlp([chainId, nonce, tip, fee, gas, to, value, data, accessList]).
func dynamicFee(t testing.TB, tip, fee, data, accessList string) []byte {
	return append([]byte{2}, rlpList(t, "01", "80", tip, fee, eipGas, eipTo, "80", data, accessList)...)
}

func TestMalformedUnsignedRLP(t *testing.T) {
	good := legacy(t, eipNonce, "01")
	var eip155 struct {
		SignedTx string `json:"signed_tx_rlp"`
	}
	readJSON(t, "eip155_example.json", &eip155)
	var eip1559 []eip1559Vector
	readJSON(t, "eip1559_ethereumjs.json", &eip1559)
	deep := "80"
	for range 10 {
		deep = hex.EncodeToString(rlpList(t, deep))
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"truncated list", good[:40], "truncated: list at byte 0 declares 44 bytes, 39 remain"},
		{"truncated string", rlpList(t, "8504a8"), "truncated: string at byte 1 declares 5 bytes, 2 remain"},
		{"truncated long length", rlpList(t, "b9"), "truncated: string header at byte 1 needs 2 length bytes, 0 remain"},
		{"trailing bytes", append(append([]byte(nil), good...), 0x00), "1 trailing bytes after the RLP item (at byte 45)"},
		{"wrapped single byte", legacy(t, "8109", "01"), "non-canonical RLP at byte 1: single byte 0x09 must not have a string header"},
		{"integer with leading zero", legacy(t, "820009", "01"), "nonce: non-canonical integer with a leading zero byte"},
		{"long header for short string", legacy(t, "b80109", "01"), "string of 1 bytes must use the short header"},
		{"long header for short list", append([]byte{0xf8, 0x2c}, good[1:]...), "list of 44 bytes must use the short header"},
		{"length with leading zero", append([]byte{0xf9, 0x00, 0x2c}, good[1:]...), "list length has a leading zero byte"},
		{"chain id is a list", legacy(t, eipNonce, "c0"), "chain_id: expected an integer, got a list"},
		{"chain id 0", legacy(t, eipNonce, "80"), "chain_id: must not be 0"},
		{"chain id beyond EIP-2294", legacy(t, eipNonce, "88ffffffffffffffff"), "chain_id: 18446744073709551615 exceeds 9223372036854775771 (EIP-2294)"},
		{"nonce over 64 bits", legacy(t, "89010000000000000000", "01"), "nonce: integer is 9 bytes, more than 64 bits"},
		{"value over 256 bits", rlpList(t, eipNonce, eipGasPrice, eipGas, eipTo, "a101"+strings.Repeat("00", 32), "80", "01", "80", "80"), "value: integer is 33 bytes, more than 256 bits"},
		{"to of 19 bytes", rlpList(t, eipNonce, eipGasPrice, eipGas, "93"+strings.Repeat("35", 19), eipValue, "80", "01", "80", "80"), "to: must be 20 bytes or empty (contract creation), got 19 bytes"},
		{"pre-EIP-155 six items", rlpList(t, eipNonce, eipGasPrice, eipGas, eipTo, eipValue, "80"), "pre-EIP-155 legacy transaction (6 items) has no chain id"},
		{"legacy with 7 items", rlpList(t, eipNonce, eipGasPrice, eipGas, eipTo, eipValue, "80", "01"), "legacy transaction has 7 items, want 9"},
		{"signed legacy", unhex(t, eip155.SignedTx), "eip155_zero_r: the last two items of an unsigned EIP-155 transaction must be empty (0x80)"},
		{"signed EIP-1559", eip1559[0].networkEncoding(t), "EIP-1559 transaction has 12 items: it looks signed"},
		{"unsupported type", append([]byte{0x03}, good...), "transaction type 0x03 is not supported"},
		{"top-level string", []byte{0x83, 1, 2, 3}, "starts with an RLP string (0x83)"},
		{"typed payload is a string", []byte{0x02, 0x80}, "type 0x02 payload must be an RLP list, got a string"},
		{"tip above fee cap", dynamicFee(t, "05", "04", "80", "c0"), "max_priority_fee_per_gas: 5 exceeds max_fee_per_gas 4"},
		{"access list is a string", dynamicFee(t, "01", "01", "80", "80"), "access_list: expected a list, got a byte string"},
		{"access tuple address 19 bytes", dynamicFee(t, "01", "01", "80", hex.EncodeToString(rlpList(t, hex.EncodeToString(rlpList(t, "93"+strings.Repeat("11", 19), "c0"))))), "access_list[0].address: must be 20 bytes, got 19"},
		{"storage key 31 bytes", dynamicFee(t, "01", "01", "80", hex.EncodeToString(rlpList(t, hex.EncodeToString(rlpList(t, "94"+strings.Repeat("11", 20), hex.EncodeToString(rlpList(t, "9f"+strings.Repeat("22", 31)))))))), "access_list[0].storage_keys[0]: must be 32 bytes, got 31"},
		{"nested too deep", dynamicFee(t, "01", "01", deep, "c0"), "RLP lists nested deeper than 8"},
		{"data is a list", dynamicFee(t, "01", "01", "c0", "c0"), "data: expected a byte string, got a list"},
		{"too large", append([]byte{0x02}, make([]byte, eth.MaxTxSize)...), "is 131073 bytes, limit 131072"},
	}
	priv, pub := keyPair(t, testKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: tt.in}})
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.True(t, strings.HasPrefix(err.Error(), "eth_transaction.unsigned_rlp: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestMalformedFields(t *testing.T) {
	base := func() *signerv1.EthTxFields {
		return &signerv1.EthTxFields{Type: 2, ChainId: "1", Nonce: "0", MaxPriorityFeePerGas: "1", MaxFeePerGas: "2", Gas: "21000", To: "0x3535353535353535353535353535353535353535", Value: "1"}
	}
	tests := []struct {
		name   string
		mutate func(f *signerv1.EthTxFields)
		want   string
	}{
		{"chain id not a number", func(f *signerv1.EthTxFields) { f.ChainId = "abc" }, `eth_transaction.fields.chain_id: must be an unsigned integer (decimal or 0x-hex), got "abc"`},
		{"chain id missing", func(f *signerv1.EthTxFields) { f.ChainId = "" }, "eth_transaction.fields.chain_id: required"},
		{"chain id 0", func(f *signerv1.EthTxFields) { f.ChainId = "0x0" }, "eth_transaction.fields.chain_id: must not be 0"},
		{"chain id too large", func(f *signerv1.EthTxFields) { f.ChainId = "9223372036854775772" }, "eth_transaction.fields.chain_id: 9223372036854775772 exceeds"},
		{"negative nonce", func(f *signerv1.EthTxFields) { f.Nonce = "-1" }, `eth_transaction.fields.nonce: must not be negative, got "-1"`},
		{"fractional value", func(f *signerv1.EthTxFields) { f.Value = "1.5" }, `eth_transaction.fields.value: must be a whole number, got "1.5"`},
		{"exponent value", func(f *signerv1.EthTxFields) { f.Value = "1e18" }, `eth_transaction.fields.value: must be an unsigned integer (decimal or 0x-hex), got "1e18"`},
		{"space in quantity", func(f *signerv1.EthTxFields) { f.Gas = " 21000" }, `eth_transaction.fields.gas: must be an unsigned integer`},
		{"bare 0x", func(f *signerv1.EthTxFields) { f.Gas = "0x" }, `eth_transaction.fields.gas: must be an unsigned integer (decimal or 0x-hex), got "0x"`},
		{"value over 256 bits", func(f *signerv1.EthTxFields) { f.Value = "0x1" + strings.Repeat("0", 64) }, "eth_transaction.fields.value: \"0x1" + strings.Repeat("0", 44)},
		{"nonce over 64 bits", func(f *signerv1.EthTxFields) { f.Nonce = "18446744073709551616" }, `eth_transaction.fields.nonce: "18446744073709551616" does not fit in 64 bits`},
		{"overlong quantity", func(f *signerv1.EthTxFields) { f.Value = strings.Repeat("0", 101) }, "eth_transaction.fields.value: is 101 characters, too long"},
		{"gas missing", func(f *signerv1.EthTxFields) { f.Gas = "" }, "eth_transaction.fields.gas: required"},
		{"max fee missing", func(f *signerv1.EthTxFields) { f.MaxFeePerGas = "" }, "eth_transaction.fields.max_fee_per_gas: required"},
		{"tip above fee", func(f *signerv1.EthTxFields) { f.MaxPriorityFeePerGas = "3" }, "eth_transaction.fields.max_priority_fee_per_gas: 3 exceeds max_fee_per_gas 2"},
		{"gas price on type 2", func(f *signerv1.EthTxFields) { f.GasPrice = "1" }, "eth_transaction.fields.gas_price: not used by EIP-1559"},
		{"max fee on type 0", func(f *signerv1.EthTxFields) { f.Type, f.GasPrice, f.MaxPriorityFeePerGas = 0, "1", "" }, "eth_transaction.fields.max_fee_per_gas: only used by EIP-1559 (type 2) transactions; this is type 0"},
		{"gas price missing on type 1", func(f *signerv1.EthTxFields) { f.Type, f.MaxFeePerGas, f.MaxPriorityFeePerGas = 1, "", "" }, "eth_transaction.fields.gas_price: required"},
		{"unsupported type", func(f *signerv1.EthTxFields) { f.Type = 3 }, "eth_transaction.fields.type: 3 is not supported"},
		{"to of 19 bytes", func(f *signerv1.EthTxFields) { f.To = "0x35353535353535353535353535353535353535" }, "eth_transaction.fields.to: must be a 0x-prefixed 20-byte hex address"},
		{"to without 0x", func(f *signerv1.EthTxFields) { f.To = "3535353535353535353535353535353535353535" }, "eth_transaction.fields.to: must be a 0x-prefixed 20-byte hex address"},
		{"to with a bad checksum", func(f *signerv1.EthTxFields) { f.To = "0x9d8a62f656a8d1615C1294fd71e9CFb3E4855A4F" }, "eth_transaction.fields.to: bad EIP-55 checksum"},
		{"data odd hex", func(f *signerv1.EthTxFields) { f.Data = "0xabc" }, "eth_transaction.fields.data: hex has an odd number of digits"},
		{"data not hex", func(f *signerv1.EthTxFields) { f.Data = "0xzz" }, "eth_transaction.fields.data: must be 0x-prefixed hex"},
		{"data too large", func(f *signerv1.EthTxFields) { f.Data = "0x" + strings.Repeat("00", eth.MaxTxSize+1) }, "eth_transaction.fields.data: is 131073 bytes, limit 131072"},
		{"encoding too large", func(f *signerv1.EthTxFields) { f.Data = "0x" + strings.Repeat("00", eth.MaxTxSize) }, "eth_transaction.fields: encoded transaction is"},
		{"access list on legacy", func(f *signerv1.EthTxFields) {
			f.Type, f.GasPrice, f.MaxFeePerGas, f.MaxPriorityFeePerGas = 0, "1", "", ""
			f.AccessList = []*signerv1.EthAccessTuple{{Address: f.To}}
		}, "eth_transaction.fields.access_list: legacy transactions have no access list"},
		{"access list bad address", func(f *signerv1.EthTxFields) { f.AccessList = []*signerv1.EthAccessTuple{{Address: "0x12"}} }, "eth_transaction.fields.access_list[0].address: must be a 0x-prefixed 20-byte hex address"},
		{"storage key 31 bytes", func(f *signerv1.EthTxFields) {
			f.AccessList = []*signerv1.EthAccessTuple{{Address: f.To, StorageKeys: []string{"0x" + strings.Repeat("11", 31)}}}
		}, "eth_transaction.fields.access_list[0].storage_keys[0]: must be 32 bytes, got 31"},
		{"access list too large", func(f *signerv1.EthTxFields) {
			f.AccessList = []*signerv1.EthAccessTuple{{Address: f.To, StorageKeys: make([]string, 4000)}}
		}, "eth_transaction.fields.access_list: needs at least 132022 bytes encoded"},
	}
	priv, pub := keyPair(t, testKey)
	_, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: base()}})
	require.NoError(t, err, "the base transaction is valid")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.mutate(f)
			_, err := eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_Fields{Fields: f}})
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	_, err = eth.SignTransaction(sign.Secp256k1{}, priv, pub, &signerv1.EthTransaction{})
	require.ErrorIs(t, err, sign.ErrInvalidPayload)
	assert.EqualError(t, err, "eth_transaction: one of unsigned_rlp or fields is required")
}

// mailDoc returns the EIP-712 Mail example as a generic JSON tree.
func mailDoc(t testing.TB) map[string]any {
	t.Helper()
	var v mailExample
	readJSON(t, "eip712_mail_example.json", &v)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(v.TypedData, &doc))
	return doc
}

func TestMalformedTypedData(t *testing.T) {
	type doc = map[string]any
	types := func(d doc) doc { return d["types"].(doc) }
	msg := func(d doc) doc { return d["message"].(doc) }
	addField := func(d doc, typ, name, fieldType string) {
		types(d)[typ] = append(types(d)[typ].([]any), doc{"name": name, "type": fieldType})
	}
	tests := []struct {
		name   string
		mutate func(d doc)
		want   string
	}{
		{"type cycle", func(d doc) { addField(d, "Person", "mail", "Mail") }, "type cycle: Mail -> Person -> Mail"},
		{"direct self reference", func(d doc) { addField(d, "Person", "self", "Person") }, "type cycle: Person -> Person"},
		{"cycle through a fixed-size array", func(d doc) { addField(d, "Person", "pair", "Mail[2]") }, "type cycle: Mail -> Person -> Mail"},
		{"unknown primary type", func(d doc) { d["primaryType"] = "Letter" }, `primaryType: "Letter" is not defined in types`},
		{"domain as primary type", func(d doc) { d["primaryType"] = "EIP712Domain" }, "primaryType: EIP712Domain cannot be the primary type"},
		{"primary type not a string", func(d doc) { d["primaryType"] = 1 }, "primaryType: expected a string, got a number"},
		{"missing field", func(d doc) { delete(msg(d), "contents") }, "message.contents: missing (member of type Mail)"},
		{"missing nested field", func(d doc) { delete(msg(d)["from"].(doc), "wallet") }, "message.from.wallet: missing (member of type Person)"},
		{"extra field", func(d doc) { msg(d)["cc"] = "x" }, `message: key "cc" is not a member of type Mail`},
		{"extra nested field", func(d doc) { msg(d)["to"].(doc)["age"] = 3 }, `message.to: key "age" is not a member of type Person`},
		{"struct given as string", func(d doc) { msg(d)["to"] = "Bob" }, "message.to: expected an object of type Person, got a string"},
		{"missing message", func(d doc) { delete(d, "message") }, "message: missing"},
		{"unknown top-level key", func(d doc) { d["signer"] = "me" }, `unknown top-level key "signer"`},
		{"unknown type", func(d doc) { types(d)["Person"].([]any)[1].(doc)["type"] = "adress" }, `types.Person.wallet: unknown type "adress"`},
		{"bad integer size", func(d doc) { addField(d, "Mail", "n", "uint7") }, `types.Mail.n: type "uint7": invalid size 7`},
		{"bad bytes size", func(d doc) { addField(d, "Mail", "n", "bytes33") }, `types.Mail.n: type "bytes33": invalid size 33`},
		{"malformed array type", func(d doc) { addField(d, "Mail", "n", "uint256]") }, `types.Mail.n: malformed type "uint256]"`},
		{"zero-length array", func(d doc) { addField(d, "Mail", "n", "uint256[0]") }, `array length "0" must be a positive decimal number`},
		{"struct named like an atomic type", func(d doc) { types(d)["uint256"] = []any{} }, `types: "uint256" is an atomic type and cannot name a struct`},
		{"member declared twice", func(d doc) { addField(d, "Person", "name", "string") }, "types.Person.name: member declared twice"},
		{"member name not an identifier", func(d doc) { addField(d, "Person", "a b", "string") }, `types.Person[2]: member name "a b" is not an identifier`},
		// Types that libraries hash differently (review of 2026-11-22).
		{"bare uint", func(d doc) { addField(d, "Person", "n", "uint") }, `type "uint": is not an EIP-712 type; write uint256`},
		{"bare int array", func(d doc) { addField(d, "Person", "n", "int[]") }, `type "int[]": is not an EIP-712 type; write int256`},
		{"dollar in a struct name", func(d doc) { types(d)["$S"] = []any{doc{"name": "a", "type": "string"}} }, `types: type name "$S" must not contain "$"`},
		{"member with an unknown key", func(d doc) { types(d)["Person"].([]any)[0].(doc)["doc"] = "x" }, `types.Person[0]: unknown key "doc" (want name, type)`},
		{"types not an object", func(d doc) { d["types"] = []any{} }, "types: expected an object, got an array"},
		{"no EIP712Domain", func(d doc) { delete(types(d), "EIP712Domain") }, "types.EIP712Domain: missing"},
		{"empty EIP712Domain", func(d doc) { types(d)["EIP712Domain"] = []any{}; d["domain"] = doc{} }, "types.EIP712Domain: declares no fields"},
		{"non-standard domain field", func(d doc) { addField(d, "EIP712Domain", "owner", "address") }, "types.EIP712Domain.owner: not an EIP-712 domain field"},
		{"domain field with the wrong type", func(d doc) { types(d)["EIP712Domain"].([]any)[2].(doc)["type"] = "uint64" }, `types.EIP712Domain.chainId: must have type uint256, got "uint64"`},
		{"domain value missing", func(d doc) { delete(d["domain"].(doc), "verifyingContract") }, "domain.verifyingContract: missing (member of type EIP712Domain)"},
		{"domain value undeclared", func(d doc) { d["domain"].(doc)["salt"] = "0x" + strings.Repeat("00", 32) }, `domain: key "salt" is not a member of type EIP712Domain`},
		{"bad address", func(d doc) { msg(d)["to"].(doc)["wallet"] = "0x1234" }, "message.to.wallet: must be a 0x-prefixed 20-byte hex address"},
		{"address checksum", func(d doc) { msg(d)["to"].(doc)["wallet"] = "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbb" }, "message.to.wallet: bad EIP-55 checksum"},
		{"string given a number", func(d doc) { msg(d)["contents"] = 5 }, "message.contents: expected a string (string), got a number"},
		{"uint8 overflow", func(d doc) { addField(d, "Mail", "n", "uint8"); msg(d)["n"] = 256 }, "message.n: 256 does not fit in uint8"},
		{"int8 underflow", func(d doc) { addField(d, "Mail", "n", "int8"); msg(d)["n"] = "-129" }, "message.n: -129 does not fit in int8"},
		{"int8 overflow", func(d doc) { addField(d, "Mail", "n", "int8"); msg(d)["n"] = "0x80" }, "message.n: 128 does not fit in int8"},
		{"negative uint", func(d doc) { addField(d, "Mail", "n", "uint256"); msg(d)["n"] = "-1" }, "message.n: -1 is negative; uint256 is unsigned"},
		{"integer as bool", func(d doc) { addField(d, "Mail", "n", "uint256"); msg(d)["n"] = true }, "message.n: expected an integer (JSON number or string), got a boolean"},
		{"integer string not a number", func(d doc) { addField(d, "Mail", "n", "uint256"); msg(d)["n"] = "12a" }, `message.n: integer string: must be an unsigned integer (decimal or 0x-hex), got "12a"`},
		{"fractional number", func(d doc) { addField(d, "Mail", "n", "uint256"); msg(d)["n"] = 1.5 }, `message.n: JSON number "1.5" is not an integer literal`},
		{"inexact number", func(d doc) { addField(d, "Mail", "n", "uint256"); msg(d)["n"] = json.Number("9007199254740993") }, "message.n: JSON number 9007199254740993 is not exactly representable as a double"},
		{"bool as string", func(d doc) { addField(d, "Mail", "b", "bool"); msg(d)["b"] = "true" }, "message.b: expected true or false (bool), got a string"},
		{"bytes32 too short", func(d doc) { addField(d, "Mail", "h", "bytes32"); msg(d)["h"] = "0x" + strings.Repeat("ab", 31) }, "message.h: bytes32 needs exactly 32 bytes, got 31"},
		{"bytes without 0x", func(d doc) { addField(d, "Mail", "h", "bytes"); msg(d)["h"] = "abcd" }, `message.h: must be 0x-prefixed hex, got "abcd"`},
		{"fixed array length", func(d doc) { addField(d, "Mail", "a", "uint256[2]"); msg(d)["a"] = []any{1, 2, 3} }, "message.a: fixed-size array (type uint256[2]) needs 2 elements, got 3"},
		{"array given an object", func(d doc) { addField(d, "Mail", "a", "Person[]"); msg(d)["a"] = doc{} }, "message.a: expected an array (type Person[]), got an object"},
		{"bad element deep inside", func(d doc) {
			addField(d, "Mail", "a", "Person[][1]")
			msg(d)["a"] = []any{[]any{doc{"name": "x", "wallet": "0x1"}}}
		}, "message.a[0][0].wallet: must be a 0x-prefixed 20-byte hex address"},
		{"null value", func(d doc) { msg(d)["contents"] = nil }, "message.contents: expected a string (string), got null"},
	}
	// go-ethereum (apitypes) accepts these; this package refuses them on
	// purpose: each is ambiguous, or a value that differs from what the
	// type or the JSON text says.
	stricterThanGeth := map[string]bool{
		"unknown top-level key":            true,
		"member declared twice":            true,
		"member with an unknown key":       true,
		"domain field with the wrong type": true,
		"address checksum":                 true,
		"int8 underflow":                   true, // go-ethereum checks only the bit length
		"int8 overflow":                    true,
		"inexact number":                   true, // go-ethereum reads it as the double 9007199254740992
		"fixed array length":               true, // go-ethereum ignores the declared length
		"dollar in a struct name":          true, // MetaMask leaves such a struct out of encodeType
	}
	priv, pub := keyPair(t, testKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mailDoc(t)
			tt.mutate(d)
			b, err := json.Marshal(d)
			require.NoError(t, err)
			_, err = eth.SignTypedData(sign.Secp256k1{}, priv, pub, string(b))
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.True(t, strings.HasPrefix(err.Error(), "eth_typed_data_json: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)
			_, gerr := gethTypedDataHash(string(b))
			if stricterThanGeth[tt.name] {
				assert.NoError(t, gerr, "go-ethereum accepts this")
			} else {
				assert.Error(t, gerr, "go-ethereum refuses this too")
			}
		})
	}
}

func TestMalformedTypedDataJSON(t *testing.T) {
	good, err := json.Marshal(mailDoc(t))
	require.NoError(t, err)
	deep := strings.Repeat("[", 50) + strings.Repeat("]", 50)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "malformed JSON: unexpected end of input"},
		{"not an object", "[]", "expected a JSON object with types, primaryType, domain and message, got an array"},
		{"syntax error", `{"types": }`, "malformed JSON near byte"},
		{"truncated", string(good[:len(good)-1]), "malformed JSON: unexpected end of input"},
		{"trailing data", string(good) + " {}", "unexpected data after the top-level value"},
		{"duplicate key", `{"types": {}, "types": {}}`, `duplicate key "types" in a JSON object`},
		{"duplicate nested key", strings.Replace(string(good), `"contents":"Hello, Bob!"`, `"contents":"Hello, Bob!","contents":"Pay Eve"`, 1), `duplicate key "contents"`},
		{"too deep", `{"message": ` + deep + `}`, "JSON nested deeper than 40 levels"},
		{"invalid UTF-8", "{\"types\": \"\xff\"}", "is not valid UTF-8"},
		// encoding/json would read each of these as U+FFFD.
		{"lone low surrogate", strings.Replace(string(good), `Hello, Bob!`, `Hello, \udc00Bob!`, 1), `\udc00 at byte`},
		{"lone high surrogate", strings.Replace(string(good), `Hello, Bob!`, `Hello, \uD800Bob!`, 1), `\ud800 at byte`},
		{"high surrogate before another escape", strings.Replace(string(good), `Hello, Bob!`, `Hello, \ud800\u0041`, 1), "without its low half"},
		{"too large", `{"message": "` + strings.Repeat("a", eth.MaxTypedDataSize) + `"}`, "limit 131072"},
	}
	priv, pub := keyPair(t, testKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eth.SignTypedData(sign.Secp256k1{}, priv, pub, tt.in)
			require.ErrorIs(t, err, sign.ErrInvalidPayload)
			assert.True(t, strings.HasPrefix(err.Error(), "eth_typed_data_json: "), err.Error())
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestMalformedPersonalMessage(t *testing.T) {
	priv, pub := keyPair(t, testKey)
	_, err := eth.SignPersonalMessage(sign.Secp256k1{}, priv, pub, nil)
	require.ErrorIs(t, err, sign.ErrInvalidPayload)
	assert.EqualError(t, err, "eth_personal_message: empty message")
	_, err = eth.SignPersonalMessage(sign.Secp256k1{}, priv, pub, make([]byte, eth.MaxMessageSize+1))
	require.ErrorIs(t, err, sign.ErrInvalidPayload)
	assert.EqualError(t, err, "eth_personal_message: is 65537 bytes, limit 65536")
	_, err = eth.SignPersonalMessage(sign.Secp256k1{}, priv, pub, make([]byte, eth.MaxMessageSize))
	require.NoError(t, err)
}

// A bad key is the keyring's fault, not the payload's: the error must not
// claim the payload is invalid.
func TestBadKeyIsNotAPayloadError(t *testing.T) {
	priv, pub := keyPair(t, testKey)
	tx := &signerv1.EthTransaction{Tx: &signerv1.EthTransaction_UnsignedRlp{UnsignedRlp: legacy(t, eipNonce, "01")}}
	_, err := eth.SignTransaction(sign.Secp256k1{}, priv[:31], pub, tx)
	require.ErrorIs(t, err, sign.ErrInvalidKey)
	assert.NotErrorIs(t, err, sign.ErrInvalidPayload)
	_, err = eth.SignPersonalMessage(sign.Secp256k1{}, priv, pub[:33], []byte("hi"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, sign.ErrInvalidPayload)
}

// Escapes that are not lone surrogates keep working: a surrogate pair, and
// an escaped backslash before "ud800" (text, not an escape).
func TestTypedDataEscapesKept(t *testing.T) {
	good, err := json.Marshal(mailDoc(t))
	require.NoError(t, err)
	in := strings.Replace(string(good), `Hello, Bob!`, `Hello \ud83d\ude00 \\ud800 \u00e9`, 1)
	got, err := eth.HashTypedData(in)
	require.NoError(t, err)
	want, err := gethTypedDataHash(in)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}
