package btc

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/btcsuite/btcd/wire"
)

// Bounds on an untrusted PSBT, checked before btcd decodes it.
const (
	// MaxPSBTSize is the largest serialized PSBT SignPSBT accepts (4 MiB,
	// gRPC's default message limit). With the checks below, decoding
	// allocates a small multiple of this. It must not exceed btcd wire's
	// 4 MiB script slab: a transaction with more script bytes than that
	// makes wire's decoder panic.
	MaxPSBTSize = 4 << 20
	// maxTxInputs and maxTxOutputs bound the transaction being signed. A
	// standard transaction (400,000 weight units) has fewer than 2,500
	// inputs and 10,000 outputs; the bound keeps the signing work of one
	// request (0.25 to 0.4 ms of CPU per signed input) to about a second.
	maxTxInputs  = 2_500
	maxTxOutputs = 10_000
	// maxPairsPerMap bounds the key-value pairs in one PSBT map and
	// maxPairs those in the whole PSBT. btcd checks duplicate keys
	// pairwise, so together they bound that quadratic work (at most
	// maxPairs*maxPairsPerMap/2 comparisons) and the decoder's allocations.
	maxPairsPerMap = 1000
	maxPairs       = 100_000
	// maxKeyEntries bounds the entries whose key holds a public key that
	// btcd's decoder parses (a field square root, about 20 µs each):
	// partial signatures, BIP-32 and taproot BIP-32 derivations, taproot
	// script signatures and leaf scripts, and global xpubs. 100,000 of them
	// fit in 4 MiB and cost over 2 s of CPU before anything is signed;
	// 10,000 (four per input of the largest transaction accepted) cost
	// about 0.23 s here, in a 400 KB PSBT.
	maxKeyEntries = 10_000
	// maxWitnessItems bounds the witness stack items across all
	// non_witness_utxo transactions: btcd allocates a 24-byte slice header
	// per item, even for an empty one.
	maxWitnessItems = 1 << 18
	// Smallest serializations, used to bound declared counts by the bytes
	// that remain.
	minTxInSize  = 32 + 4 + 1 + 4 // outpoint, empty script, sequence
	minTxOutSize = 8 + 1          // value, empty script
)

// PSBT key types this walk looks into (BIP-174, BIP-371).
const (
	globalUnsignedTx       = 0x00
	inNonWitnessUTXO       = 0x00
	inWitnessUTXO          = 0x01
	inPartialSig           = 0x02
	inBIP32Derivation      = 0x06
	inTapScriptSig         = 0x14
	inTapLeafScript        = 0x15
	inTapBIP32Derivation   = 0x16
	outBIP32Derivation     = 0x02
	outTapBIP32Derivation  = 0x07
	psbtSeparator          = 0x00
	psbtGlobalVersion      = 0xfb
	psbtGlobalXPub         = 0x01
	psbtGlobalXPubKeyBytes = 1 + 78
)

var psbtMagic = []byte("psbt\xff")

// framing is what the walk learned from a PSBT that passed it.
type framing struct {
	// witnessUTXO[i] is input i's witness_utxo decoded strictly, or nil.
	// btcd's own decoder skips the script length and mis-reads scripts of
	// 253 bytes or more, so SignPSBT uses these instead.
	witnessUTXO []*wire.TxOut
}

// cursor reads a byte slice front to back; every read is bounds-checked.
type cursor struct {
	b   []byte
	off int
}

func (c *cursor) left() int { return len(c.b) - c.off }

func (c *cursor) take(n uint64) ([]byte, bool) {
	if n > uint64(c.left()) {
		return nil, false
	}
	out := c.b[c.off : c.off+int(n)]
	c.off += int(n)
	return out, true
}

// varint reads a Bitcoin CompactSize integer and insists on the shortest
// encoding, as btcd does.
func (c *cursor) varint() (uint64, bool) {
	p, ok := c.take(1)
	if !ok {
		return 0, false
	}
	var v uint64
	var least uint64
	switch p[0] {
	case 0xfd:
		b, ok := c.take(2)
		if !ok {
			return 0, false
		}
		v, least = uint64(binary.LittleEndian.Uint16(b)), 0xfd
	case 0xfe:
		b, ok := c.take(4)
		if !ok {
			return 0, false
		}
		v, least = uint64(binary.LittleEndian.Uint32(b)), 0x10000
	case 0xff:
		b, ok := c.take(8)
		if !ok {
			return 0, false
		}
		v, least = binary.LittleEndian.Uint64(b), 0x100000000
	default:
		return uint64(p[0]), true
	}
	return v, v >= least
}

// varBytes reads a CompactSize length and that many bytes.
func (c *cursor) varBytes() ([]byte, bool) {
	n, ok := c.varint()
	if !ok {
		return nil, false
	}
	return c.take(n)
}

// checkFraming walks the whole PSBT without decoding it and rejects, with an
// error naming the place, anything whose lengths or counts do not fit in the
// bytes that follow. It also checks the values btcd's psbt decoder trusts
// (BIP-32 derivations, witness_utxo, embedded transactions), so that the
// decoder neither panics nor allocates far more than the input size.
func checkFraming(b []byte) (*framing, error) {
	if len(b) > MaxPSBTSize {
		return nil, invalid("bitcoin_psbt: PSBT is %d bytes, limit %d", len(b), MaxPSBTSize)
	}
	if !bytes.HasPrefix(b, psbtMagic) {
		return nil, invalid("bitcoin_psbt: not a binary PSBT (missing magic \"psbt\\xff\")")
	}
	c := &cursor{b: b, off: len(psbtMagic)}
	f := &framing{}
	var nIn, nOut uint64
	witnessItems, pairs, keyEntries := 0, 0, 0
	// keyEntry counts an entry whose key btcd parses as a public key.
	keyEntry := func() error {
		if keyEntries++; keyEntries > maxKeyEntries {
			return invalid("bitcoin_psbt: more than %d entries keyed by a public key (signatures, derivations, xpubs)", maxKeyEntries)
		}
		return nil
	}
	// derivation counts and checks a BIP-32 or taproot BIP-32 derivation.
	derivation := func(value []byte, taproot bool, where string) error {
		if err := keyEntry(); err != nil {
			return err
		}
		return checkDerivation(value, taproot, where)
	}

	first := true
	err := walkMap(c, "global map", &pairs, func(key, value []byte) error {
		if first {
			first = false
			if len(key) != 1 || key[0] != globalUnsignedTx {
				return invalid("bitcoin_psbt: global map must start with the unsigned transaction")
			}
			var err error
			if nIn, nOut, _, err = checkTx(value, false, "unsigned transaction"); err != nil {
				return err
			}
			if nIn > maxTxInputs || nOut > maxTxOutputs {
				return invalid("bitcoin_psbt: transaction has %d inputs and %d outputs, limits %d and %d", nIn, nOut, maxTxInputs, maxTxOutputs)
			}
			return nil
		}
		if key[0] == psbtGlobalXPub {
			return keyEntry()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if first {
		return nil, invalid("bitcoin_psbt: global map has no unsigned transaction")
	}

	f.witnessUTXO = make([]*wire.TxOut, nIn)
	for i := range nIn {
		where := "input " + strconv.FormatUint(i, 10)
		err := walkMap(c, where, &pairs, func(key, value []byte) error {
			switch key[0] {
			case inNonWitnessUTXO:
				_, _, items, err := checkTx(value, true, where+" non_witness_utxo")
				if err != nil {
					return err
				}
				if witnessItems += items; witnessItems > maxWitnessItems {
					return invalid("bitcoin_psbt: non_witness_utxo transactions hold more than %d witness items", maxWitnessItems)
				}
			case inWitnessUTXO:
				out, err := parseTxOut(value)
				if err != nil {
					return invalid("bitcoin_psbt: %s: malformed witness_utxo", where)
				}
				f.witnessUTXO[i] = out
			case inPartialSig, inTapScriptSig, inTapLeafScript:
				return keyEntry()
			case inBIP32Derivation:
				return derivation(value, false, where)
			case inTapBIP32Derivation:
				return derivation(value, true, where)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for i := range nOut {
		where := "output " + strconv.FormatUint(i, 10)
		err := walkMap(c, where, &pairs, func(key, value []byte) error {
			switch key[0] {
			case outBIP32Derivation:
				return derivation(value, false, where)
			case outTapBIP32Derivation:
				return derivation(value, true, where)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if c.left() != 0 {
		return nil, invalid("bitcoin_psbt: %d unexpected bytes after the last output map", c.left())
	}
	return f, nil
}

// walkMap reads one key-value map up to its separator, refusing truncation,
// duplicate keys and oversized maps, and hands each pair to fn. pairs counts
// the pairs seen across the whole PSBT.
func walkMap(c *cursor, where string, pairs *int, fn func(key, value []byte) error) error {
	seen := make(map[string]struct{})
	for {
		key, ok := c.varBytes()
		if !ok {
			return invalid("bitcoin_psbt: %s: truncated key at byte %d", where, c.off)
		}
		if len(key) == 0 {
			return nil // separator
		}
		value, ok := c.varBytes()
		if !ok {
			return invalid("bitcoin_psbt: %s: truncated value at byte %d", where, c.off)
		}
		if _, dup := seen[string(key)]; dup {
			return invalid("bitcoin_psbt: %s: duplicate key of type 0x%02x", where, key[0])
		}
		if len(seen) == maxPairsPerMap {
			return invalid("bitcoin_psbt: %s: more than %d entries", where, maxPairsPerMap)
		}
		if *pairs++; *pairs > maxPairs {
			return invalid("bitcoin_psbt: more than %d entries in the PSBT", maxPairs)
		}
		seen[string(key)] = struct{}{}
		if err := fn(key, value); err != nil {
			return err
		}
	}
}

// checkTx walks a serialized transaction (with the segwit marker when
// witness is set, as btcd's Deserialize allows) and returns its input,
// output and witness item counts. It rejects counts larger than the
// remaining bytes could hold and trailing bytes.
func checkTx(b []byte, witness bool, where string) (nIn, nOut uint64, items int, err error) {
	bad := func(what string) error { return invalid("bitcoin_psbt: %s: %s", where, what) }
	c := &cursor{b: b}
	if _, ok := c.take(4); !ok {
		return 0, 0, 0, bad("truncated version")
	}
	nIn, ok := c.varint()
	if !ok {
		return 0, 0, 0, bad("truncated input count")
	}
	segwit := false
	if nIn == 0 && witness {
		flag, ok := c.take(1)
		if !ok || flag[0] != 0x01 {
			return 0, 0, 0, bad("bad segwit marker")
		}
		if nIn, ok = c.varint(); !ok {
			return 0, 0, 0, bad("truncated input count")
		}
		segwit = true
	}
	if nIn > uint64(c.left()/minTxInSize) {
		return 0, 0, 0, bad("input count larger than the data")
	}
	for range nIn {
		if _, ok := c.take(36); !ok {
			return 0, 0, 0, bad("truncated input")
		}
		if _, ok := c.varBytes(); !ok {
			return 0, 0, 0, bad("truncated input script")
		}
		if _, ok := c.take(4); !ok {
			return 0, 0, 0, bad("truncated input sequence")
		}
	}
	if nOut, ok = c.varint(); !ok {
		return 0, 0, 0, bad("truncated output count")
	}
	if nOut > uint64(c.left()/minTxOutSize) {
		return 0, 0, 0, bad("output count larger than the data")
	}
	for range nOut {
		if _, ok := c.take(8); !ok {
			return 0, 0, 0, bad("truncated output value")
		}
		if _, ok := c.varBytes(); !ok {
			return 0, 0, 0, bad("truncated output script")
		}
	}
	if segwit {
		for range nIn {
			n, ok := c.varint()
			if !ok || n > uint64(c.left()) {
				return 0, 0, 0, bad("truncated witness")
			}
			items += int(n)
			for range n {
				if _, ok := c.varBytes(); !ok {
					return 0, 0, 0, bad("truncated witness item")
				}
			}
		}
	}
	if _, ok := c.take(4); !ok {
		return 0, 0, 0, bad("truncated lock time")
	}
	if c.left() != 0 {
		return 0, 0, 0, bad("trailing bytes after the transaction")
	}
	return nIn, nOut, items, nil
}

// parseTxOut decodes a serialized transaction output (value, script) that
// must fill b exactly.
func parseTxOut(b []byte) (*wire.TxOut, error) {
	c := &cursor{b: b}
	v, ok := c.take(8)
	if !ok {
		return nil, errTruncated
	}
	script, ok := c.varBytes()
	if !ok || c.left() != 0 {
		return nil, errTruncated
	}
	return wire.NewTxOut(int64(binary.LittleEndian.Uint64(v)), bytes.Clone(script)), nil
}

var errTruncated = invalid("bitcoin_psbt: truncated")

// checkDerivation checks a BIP-32 derivation value: for taproot a
// CompactSize count of 32-byte leaf hashes first, then a 4-byte fingerprint
// and 4-byte path elements.
func checkDerivation(v []byte, taproot bool, where string) error {
	c := &cursor{b: v}
	if taproot {
		n, ok := c.varint()
		if !ok || n > uint64(c.left()/32) {
			return invalid("bitcoin_psbt: %s: malformed taproot BIP-32 derivation", where)
		}
		c.take(n * 32)
	}
	if c.left() < 4 || c.left()%4 != 0 {
		return invalid("bitcoin_psbt: %s: malformed BIP-32 derivation", where)
	}
	return nil
}
