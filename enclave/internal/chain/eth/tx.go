package eth

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Transaction types (EIP-2718).
const (
	legacyTxType     = 0
	accessListTxType = 1 // EIP-2930
	dynamicFeeTxType = 2 // EIP-1559
)

// maxChainID is the largest chain id accepted: floor(MaxUint64/2) - 36
// (EIP-2294), so that a legacy v = chainId*2 + 35 + {0,1} fits in 64 bits.
const maxChainID = (1<<64-1)/2 - 36

// transaction is a decoded unsigned transaction. Integers that the protocol
// bounds to 64 bits (EIP-2681 nonce, gas) are uint64; prices and value are
// uint256.
type transaction struct {
	typ        uint8
	chainID    uint64
	nonce      uint64
	gasPrice   *big.Int // legacy and EIP-2930
	tipCap     *big.Int // EIP-1559 max_priority_fee_per_gas
	feeCap     *big.Int // EIP-1559 max_fee_per_gas
	gas        uint64
	to         []byte // nil for contract creation, else 20 bytes
	value      *big.Int
	data       []byte
	accessList []accessTuple
}

type accessTuple struct {
	address     []byte   // 20 bytes
	storageKeys [][]byte // 32 bytes each
}

// Item names of the unsigned RLP lists, in order.
var (
	legacyItems     = []string{"nonce", "gas_price", "gas", "to", "value", "data", "chain_id", "eip155_zero_r", "eip155_zero_s"}
	accessListItems = []string{"chain_id", "nonce", "gas_price", "gas", "to", "value", "data", "access_list"}
	dynamicFeeItems = []string{"chain_id", "nonce", "max_priority_fee_per_gas", "max_fee_per_gas", "gas", "to", "value", "data", "access_list"}
)

// decodeUnsignedTx decodes an unsigned legacy EIP-155 or EIP-2718 typed
// transaction. Errors are plain; the caller adds the field name.
func decodeUnsignedTx(b []byte) (*transaction, error) {
	switch {
	case len(b) == 0:
		return nil, errors.New("empty")
	case len(b) > MaxTxSize:
		return nil, fmt.Errorf("is %d bytes, limit %d", len(b), MaxTxSize)
	}
	var tx transaction
	var items []string
	base := 0
	switch first := b[0]; {
	case first >= 0xc0:
		tx.typ, items = legacyTxType, legacyItems
	case first == accessListTxType:
		tx.typ, items, b, base = accessListTxType, accessListItems, b[1:], 1
	case first == dynamicFeeTxType:
		tx.typ, items, b, base = dynamicFeeTxType, dynamicFeeItems, b[1:], 1
	case first < 0x80:
		return nil, fmt.Errorf("transaction type 0x%02x is not supported (legacy, 0x01 EIP-2930 and 0x02 EIP-1559 are)", first)
	default:
		return nil, fmt.Errorf("starts with an RLP string (0x%02x); want a legacy RLP list or a typed transaction 0x01 || rlp or 0x02 || rlp", first)
	}
	root, err := decodeRLP(b, base)
	if err != nil {
		return nil, err
	}
	if !root.list {
		return nil, fmt.Errorf("type 0x%02x payload must be an RLP list, got a string", tx.typ)
	}
	if n := len(root.items); n != len(items) {
		switch {
		case tx.typ == legacyTxType && n == 6:
			return nil, errors.New("pre-EIP-155 legacy transaction (6 items) has no chain id and could be replayed on any chain; send the EIP-155 form [nonce, gasPrice, gas, to, value, data, chainId, 0, 0]")
		case tx.typ != legacyTxType && n == len(items)+3:
			return nil, fmt.Errorf("%s transaction has %d items: it looks signed; send it without the signature fields (%d items)", typeName(tx.typ), n, len(items))
		}
		return nil, fmt.Errorf("%s transaction has %d items, want %d", typeName(tx.typ), n, len(items))
	}
	f := make(map[string]rlpItem, len(items))
	for i, name := range items {
		f[name] = root.items[i]
	}
	if err := tx.decodeFields(f); err != nil {
		return nil, err
	}
	return &tx, tx.check()
}

func (tx *transaction) decodeFields(f map[string]rlpItem) error {
	chainID, err := rlpInt(f["chain_id"], "chain_id", 32)
	if err != nil {
		return err
	}
	if !chainID.IsUint64() || chainID.Uint64() > maxChainID {
		return fmt.Errorf("chain_id: %s exceeds %d (EIP-2294)", chainID, uint64(maxChainID))
	}
	tx.chainID = chainID.Uint64()
	if tx.nonce, err = rlpUint64(f["nonce"], "nonce"); err != nil {
		return err
	}
	if tx.gas, err = rlpUint64(f["gas"], "gas"); err != nil {
		return err
	}
	if tx.typ == dynamicFeeTxType {
		if tx.tipCap, err = rlpInt(f["max_priority_fee_per_gas"], "max_priority_fee_per_gas", 32); err != nil {
			return err
		}
		if tx.feeCap, err = rlpInt(f["max_fee_per_gas"], "max_fee_per_gas", 32); err != nil {
			return err
		}
	} else if tx.gasPrice, err = rlpInt(f["gas_price"], "gas_price", 32); err != nil {
		return err
	}
	to, err := rlpString(f["to"], "to")
	if err != nil {
		return err
	}
	switch len(to) {
	case 0:
	case 20:
		tx.to = to
	default:
		return fmt.Errorf("to: must be 20 bytes or empty (contract creation), got %d bytes", len(to))
	}
	if tx.value, err = rlpInt(f["value"], "value", 32); err != nil {
		return err
	}
	if tx.data, err = rlpString(f["data"], "data"); err != nil {
		return err
	}
	if tx.typ == legacyTxType {
		for _, name := range []string{"eip155_zero_r", "eip155_zero_s"} {
			if it := f[name]; it.list || len(it.str) != 0 {
				return fmt.Errorf("%s: the last two items of an unsigned EIP-155 transaction must be empty (0x80); is it signed?", name)
			}
		}
		return nil
	}
	al := f["access_list"]
	if !al.list {
		return errors.New("access_list: expected a list, got a byte string")
	}
	for i, t := range al.items {
		name := fmt.Sprintf("access_list[%d]", i)
		if !t.list || len(t.items) != 2 {
			return fmt.Errorf("%s: expected a list [address, [storage keys]]", name)
		}
		addr, err := rlpString(t.items[0], name+".address")
		if err != nil {
			return err
		}
		if len(addr) != 20 {
			return fmt.Errorf("%s.address: must be 20 bytes, got %d", name, len(addr))
		}
		keys := t.items[1]
		if !keys.list {
			return fmt.Errorf("%s.storage_keys: expected a list, got a byte string", name)
		}
		tuple := accessTuple{address: addr, storageKeys: make([][]byte, 0, len(keys.items))}
		for j, k := range keys.items {
			key, err := rlpString(k, fmt.Sprintf("%s.storage_keys[%d]", name, j))
			if err != nil {
				return err
			}
			if len(key) != 32 {
				return fmt.Errorf("%s.storage_keys[%d]: must be 32 bytes, got %d", name, j, len(key))
			}
			tuple.storageKeys = append(tuple.storageKeys, key)
		}
		tx.accessList = append(tx.accessList, tuple)
	}
	return nil
}

// check applies the rules shared by both input forms.
func (tx *transaction) check() error {
	if tx.chainID == 0 {
		return errors.New("chain_id: must not be 0 (a transaction without a chain id can be replayed on any chain)")
	}
	if tx.typ == dynamicFeeTxType && tx.tipCap.Cmp(tx.feeCap) > 0 {
		return fmt.Errorf("max_priority_fee_per_gas: %s exceeds max_fee_per_gas %s; no block could include this transaction", tx.tipCap, tx.feeCap)
	}
	return nil
}

func typeName(t uint8) string {
	switch t {
	case legacyTxType:
		return "legacy"
	case accessListTxType:
		return "EIP-2930"
	default:
		return "EIP-1559"
	}
}

// encode returns the unsigned encoding (sig == nil) whose keccak256 is the
// signing hash, or the signed network encoding for sig = r || s || recid.
func (tx *transaction) encode(sig []byte) []byte {
	p := make([]byte, 0, 128+len(tx.data)+len(tx.accessList)*(24+2*33))
	if tx.typ == legacyTxType {
		p = appendRLPUint64(p, tx.nonce)
		p = appendRLPBig(p, tx.gasPrice)
		p = tx.appendCall(p)
		if sig == nil {
			p = appendRLPUint64(p, tx.chainID)
			p = append(p, 0x80, 0x80)
		} else {
			p = appendRLPUint64(p, tx.chainID*2+35+uint64(sig[64]))
			p = appendSigRS(p, sig)
		}
		return appendRLPList(nil, p)
	}
	p = appendRLPUint64(p, tx.chainID)
	p = appendRLPUint64(p, tx.nonce)
	if tx.typ == dynamicFeeTxType {
		p = appendRLPBig(p, tx.tipCap)
		p = appendRLPBig(p, tx.feeCap)
	} else {
		p = appendRLPBig(p, tx.gasPrice)
	}
	p = tx.appendCall(p)
	var al []byte
	for _, t := range tx.accessList {
		var keys []byte
		for _, k := range t.storageKeys {
			keys = appendRLPString(keys, k)
		}
		al = appendRLPList(al, append(appendRLPString(nil, t.address), appendRLPList(nil, keys)...))
	}
	p = appendRLPList(p, al)
	if sig != nil {
		p = appendRLPUint64(p, uint64(sig[64]))
		p = appendSigRS(p, sig)
	}
	return appendRLPList([]byte{tx.typ}, p)
}

// appendCall appends gas, to, value, data: the part all types share.
func (tx *transaction) appendCall(p []byte) []byte {
	p = appendRLPUint64(p, tx.gas)
	p = appendRLPString(p, tx.to)
	p = appendRLPBig(p, tx.value)
	return appendRLPString(p, tx.data)
}

// appendSigRS appends r and s as RLP integers (no leading zeros).
func appendSigRS(p, sig []byte) []byte {
	p = appendRLPBig(p, new(big.Int).SetBytes(sig[:32]))
	return appendRLPBig(p, new(big.Int).SetBytes(sig[32:64]))
}

// SignTransaction decodes tx (unsigned RLP or fields), signs its
// EIP-155/EIP-2718 signing hash with priv (32-byte scalar) and returns
// Signature (65 bytes r || s || y-parity), SignedPayload (the raw signed
// transaction), TxHash, EthSignature (v = chainId*2 + 35 + parity for legacy,
// the y parity for typed transactions) and Summary (EthSummary kind
// "transaction", from = Address(pub)). pub must be priv's public key.
//
// KeyId and Algorithm of the response are left empty. Errors caused by tx
// wrap [sign.ErrInvalidPayload] and start with the offending field
// ("eth_transaction.unsigned_rlp: ...", "eth_transaction.fields.nonce: ...").
func SignTransaction(ds sign.DigestSigner, priv, pub []byte, tx *signerv1.EthTransaction) (*signerv1.SignResponse, error) {
	var t *transaction
	switch p := tx.GetTx().(type) {
	case *signerv1.EthTransaction_UnsignedRlp:
		var err error
		if t, err = decodeUnsignedTx(p.UnsignedRlp); err != nil {
			return nil, invalid("eth_transaction.unsigned_rlp", "%v", err)
		}
	case *signerv1.EthTransaction_Fields:
		var err error
		if t, err = txFromFields(p.Fields); err != nil {
			return nil, err
		}
	default:
		return nil, invalid("eth_transaction", "one of unsigned_rlp or fields is required")
	}
	from, err := Address(pub)
	if err != nil {
		return nil, err
	}
	digest := keccak256(t.encode(nil))
	sig, err := signDigest(ds, priv, digest)
	if err != nil {
		return nil, err
	}
	signed := t.encode(sig)
	v := uint64(sig[64])
	if t.typ == legacyTxType {
		v += t.chainID*2 + 35
	}
	return &signerv1.SignResponse{
		Signature:     sig,
		SignedPayload: signed,
		TxHash:        keccak256(signed),
		EthSignature:  &signerv1.EthSignature{V: v, R: sig[:32:32], S: sig[32:64:64]},
		Summary:       &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Ethereum{Ethereum: t.summary(from, digest)}},
	}, nil
}

func (tx *transaction) summary(from string, digest []byte) *signerv1.EthSummary {
	s := &signerv1.EthSummary{
		Kind:              "transaction",
		ChainId:           fmt.Sprint(tx.chainID),
		TxType:            uint32(tx.typ),
		From:              from,
		Value:             tx.value.String(),
		Nonce:             tx.nonce,
		GasLimit:          tx.gas,
		DataLength:        uint32(len(tx.data)),
		AccessListEntries: uint32(len(tx.accessList)),
		Digest:            digest,
	}
	if tx.to != nil {
		s.To = checksumAddress(tx.to)
	}
	if tx.typ == dynamicFeeTxType {
		s.MaxFeePerGas = tx.feeCap.String()
		s.MaxPriorityFeePerGas = tx.tipCap.String()
	} else {
		s.GasPrice = tx.gasPrice.String()
	}
	if len(tx.data) >= 4 {
		s.Selector = append([]byte(nil), tx.data[:4]...)
	}
	return s
}
