package eth

import (
	"fmt"
	"math/big"
	"strings"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// maxQuantityLen bounds a quantity string: 78 decimal digits hold 2^256,
// and hex may be zero-padded to 64 digits.
const maxQuantityLen = 100

// parseQuantity parses an unsigned integer written as decimal digits or as
// 0x-hex, exactly, and refuses values wider than bits. Signs, fractions,
// exponents, whitespace and separators are refused.
func parseQuantity(s string, bits int) (*big.Int, error) {
	if len(s) > maxQuantityLen {
		return nil, fmt.Errorf("is %d characters, too long for a quantity", len(s))
	}
	digits, base := s, 10
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		digits, base = s[2:], 16
	}
	ok := digits != ""
	for i := 0; ok && i < len(digits); i++ {
		c := digits[i]
		ok = c >= '0' && c <= '9' || base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
	}
	if !ok {
		switch {
		case strings.HasPrefix(s, "-"):
			return nil, fmt.Errorf("must not be negative, got %s", quote(s))
		case strings.Contains(s, "."):
			return nil, fmt.Errorf("must be a whole number, got %s", quote(s))
		}
		return nil, fmt.Errorf("must be an unsigned integer (decimal or 0x-hex), got %s", quote(s))
	}
	x, _ := new(big.Int).SetString(digits, base)
	if x.BitLen() > bits {
		return nil, fmt.Errorf("%s does not fit in %d bits", quote(s), bits)
	}
	return x, nil
}

// txFromFields builds a transaction from the field-by-field form. Errors are
// payload errors naming the field.
func txFromFields(f *signerv1.EthTxFields) (*transaction, error) {
	const pfx = "eth_transaction.fields."
	tx := &transaction{}
	switch f.GetType() {
	case legacyTxType, accessListTxType, dynamicFeeTxType:
		tx.typ = uint8(f.GetType())
	default:
		return nil, invalid(pfx+"type", "%d is not supported (0 legacy, 1 EIP-2930, 2 EIP-1559)", f.GetType())
	}
	quantity := func(name, s string, bits int, required bool) (*big.Int, error) {
		if s == "" {
			if required {
				return nil, invalid(pfx+name, "required")
			}
			return new(big.Int), nil
		}
		x, err := parseQuantity(s, bits)
		if err != nil {
			return nil, invalid(pfx+name, "%v", err)
		}
		return x, nil
	}
	chainID, err := quantity("chain_id", f.GetChainId(), 256, true)
	if err != nil {
		return nil, err
	}
	if !chainID.IsUint64() || chainID.Uint64() > maxChainID {
		return nil, invalid(pfx+"chain_id", "%s exceeds %d (EIP-2294)", chainID, uint64(maxChainID))
	}
	tx.chainID = chainID.Uint64()
	nonce, err := quantity("nonce", f.GetNonce(), 64, true)
	if err != nil {
		return nil, err
	}
	tx.nonce = nonce.Uint64()
	gas, err := quantity("gas", f.GetGas(), 64, true)
	if err != nil {
		return nil, err
	}
	tx.gas = gas.Uint64()
	if tx.typ == dynamicFeeTxType {
		if f.GetGasPrice() != "" {
			return nil, invalid(pfx+"gas_price", "not used by EIP-1559 (type 2) transactions; set max_fee_per_gas and max_priority_fee_per_gas")
		}
		if tx.tipCap, err = quantity("max_priority_fee_per_gas", f.GetMaxPriorityFeePerGas(), 256, true); err != nil {
			return nil, err
		}
		if tx.feeCap, err = quantity("max_fee_per_gas", f.GetMaxFeePerGas(), 256, true); err != nil {
			return nil, err
		}
	} else {
		for _, c := range [...]struct{ name, v string }{
			{"max_priority_fee_per_gas", f.GetMaxPriorityFeePerGas()},
			{"max_fee_per_gas", f.GetMaxFeePerGas()},
		} {
			if c.v != "" {
				return nil, invalid(pfx+c.name, "only used by EIP-1559 (type 2) transactions; this is type %d, set gas_price", tx.typ)
			}
		}
		if tx.gasPrice, err = quantity("gas_price", f.GetGasPrice(), 256, true); err != nil {
			return nil, err
		}
	}
	if s := f.GetTo(); s != "" {
		if tx.to, err = parseAddress(s); err != nil {
			return nil, invalid(pfx+"to", "%v (leave empty for contract creation)", err)
		}
	}
	if tx.value, err = quantity("value", f.GetValue(), 256, false); err != nil {
		return nil, err
	}
	if s := f.GetData(); s != "" {
		if tx.data, err = parseHexBytes(s, MaxTxSize); err != nil {
			return nil, invalid(pfx+"data", "%v", err)
		}
	}
	if err := tx.accessListFromFields(f.GetAccessList()); err != nil {
		return nil, err
	}
	if err := tx.check(); err != nil {
		return nil, &payloadError{msg: pfx + err.Error()}
	}
	if n := len(tx.encode(nil)); n > MaxTxSize {
		return nil, invalid("eth_transaction.fields", "encoded transaction is %d bytes, limit %d", n, MaxTxSize)
	}
	return tx, nil
}

func (tx *transaction) accessListFromFields(al []*signerv1.EthAccessTuple) error {
	const name = "eth_transaction.fields.access_list"
	if len(al) == 0 {
		return nil
	}
	if tx.typ == legacyTxType {
		return invalid(name, "legacy transactions have no access list; use type 1 or 2")
	}
	// Each tuple takes at least 22 encoded bytes and each key 33: refuse
	// lists that cannot fit before decoding them.
	size := 0
	for _, t := range al {
		size += 22 + 33*len(t.GetStorageKeys())
	}
	if size > MaxTxSize {
		return invalid(name, "needs at least %d bytes encoded, more than the %d-byte transaction limit", size, MaxTxSize)
	}
	for i, t := range al {
		field := fmt.Sprintf("%s[%d]", name, i)
		addr, err := parseAddress(t.GetAddress())
		if err != nil {
			return invalid(field+".address", "%v", err)
		}
		tuple := accessTuple{address: addr, storageKeys: make([][]byte, 0, len(t.GetStorageKeys()))}
		for j, s := range t.GetStorageKeys() {
			key, err := parseHexBytes(s, 1024)
			if err == nil && len(key) != 32 {
				err = fmt.Errorf("must be 32 bytes, got %d", len(key))
			}
			if err != nil {
				return invalid(fmt.Sprintf("%s.storage_keys[%d]", field, j), "%v", err)
			}
			tuple.storageKeys = append(tuple.storageKeys, key)
		}
		tx.accessList = append(tx.accessList, tuple)
	}
	return nil
}
