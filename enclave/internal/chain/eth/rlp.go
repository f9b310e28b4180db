package eth

import (
	"fmt"
	"math/big"
)

// maxRLPDepth bounds list nesting. A transaction needs 4 levels (the
// transaction, the access list, a tuple, its storage keys).
const maxRLPDepth = 8

// maxRLPItems bounds the items one decode builds, so that a payload made
// of one-byte items (empty lists) cannot make the decoder allocate hundreds
// of times its size before the transaction's shape refuses it. The densest
// real transaction, an access list of address tuples without storage keys
// (3 items in 23 bytes), has under 17,000 items in the 128 KiB limit.
const maxRLPItems = 20_000

// rlpItem is one decoded RLP item: a byte string or a list.
type rlpItem struct {
	list  bool
	str   []byte    // string content; aliases the input
	items []rlpItem // list elements
	off   int       // offset of the item's first byte in the input
}

// decodeRLP decodes exactly one canonical RLP item from b; base is the offset
// of b in the caller's input, for error messages. It refuses non-canonical
// encodings (a single byte below 0x80 wrapped in a header, long forms for
// short payloads, lengths with leading zeros), truncated input, trailing
// bytes and nesting deeper than maxRLPDepth.
func decodeRLP(b []byte, base int) (rlpItem, error) {
	budget := maxRLPItems
	it, n, err := decodeRLPItem(b, base, 0, &budget)
	if err != nil {
		return rlpItem{}, err
	}
	if n != len(b) {
		return rlpItem{}, fmt.Errorf("%d trailing bytes after the RLP item (at byte %d)", len(b)-n, base+n)
	}
	return it, nil
}

// decodeRLPItem decodes the item at the start of b and returns it with the
// number of bytes it used. budget counts down the items left to build.
func decodeRLPItem(b []byte, off, depth int, budget *int) (rlpItem, int, error) {
	if *budget--; *budget < 0 {
		return rlpItem{}, 0, fmt.Errorf("more than %d RLP items (at byte %d)", maxRLPItems, off)
	}
	hdr, size, list, err := rlpHeader(b, off)
	if err != nil {
		return rlpItem{}, 0, err
	}
	content := b[hdr : hdr+size]
	if !list {
		if hdr == 0 {
			return rlpItem{str: b[:1], off: off}, 1, nil
		}
		if size == 1 && content[0] < 0x80 {
			return rlpItem{}, 0, fmt.Errorf("non-canonical RLP at byte %d: single byte 0x%02x must not have a string header", off, content[0])
		}
		return rlpItem{str: content, off: off}, hdr + size, nil
	}
	if depth >= maxRLPDepth {
		return rlpItem{}, 0, fmt.Errorf("RLP lists nested deeper than %d (at byte %d)", maxRLPDepth, off)
	}
	// Count the children first (headers only), so that the list is
	// allocated once, at its size, and a flood stops at the budget.
	n := 0
	for pos := 0; pos < len(content); n++ {
		if n >= *budget {
			return rlpItem{}, 0, fmt.Errorf("more than %d RLP items (at byte %d)", maxRLPItems, off+hdr+pos)
		}
		h, sz, _, err := rlpHeader(content[pos:], off+hdr+pos)
		if err != nil {
			return rlpItem{}, 0, err
		}
		pos += h + sz
	}
	it := rlpItem{list: true, off: off, items: make([]rlpItem, 0, n)}
	for pos := 0; pos < len(content); {
		child, n, err := decodeRLPItem(content[pos:], off+hdr+pos, depth+1, budget)
		if err != nil {
			return rlpItem{}, 0, err
		}
		it.items = append(it.items, child)
		pos += n
	}
	return it, hdr + size, nil
}

// rlpHeader reads the header of the item at the start of b: its length,
// the length of the content after it, and whether it is a list. A single
// byte below 0x80 is its own content (hdr 0, size 1). The content is known
// to fit in b.
func rlpHeader(b []byte, off int) (hdr, size int, list bool, err error) {
	if len(b) == 0 {
		return 0, 0, false, fmt.Errorf("truncated: expected an RLP item at byte %d, got end of input", off)
	}
	p := b[0]
	switch {
	case p < 0x80:
		return 0, 1, false, nil
	case p <= 0xb7:
		hdr, size = 1, int(p-0x80)
	case p <= 0xbf:
		n, err := rlpLongLength(b, off, int(p-0xb7), "string")
		if err != nil {
			return 0, 0, false, err
		}
		hdr, size = 1+int(p-0xb7), n
	case p <= 0xf7:
		hdr, size, list = 1, int(p-0xc0), true
	default:
		n, err := rlpLongLength(b, off, int(p-0xf7), "list")
		if err != nil {
			return 0, 0, false, err
		}
		hdr, size, list = 1+int(p-0xf7), n, true
	}
	if rest := len(b) - hdr; size > rest {
		kind := "string"
		if list {
			kind = "list"
		}
		return 0, 0, false, fmt.Errorf("truncated: %s at byte %d declares %d bytes, %d remain", kind, off, size, rest)
	}
	return hdr, size, list, nil
}

// rlpLongLength reads the big-endian length of a long-form header whose
// length-of-length is lenLen, and checks that it is minimal.
func rlpLongLength(b []byte, off, lenLen int, kind string) (int, error) {
	if len(b) < 1+lenLen {
		return 0, fmt.Errorf("truncated: %s header at byte %d needs %d length bytes, %d remain", kind, off, lenLen, len(b)-1)
	}
	if b[1] == 0 {
		return 0, fmt.Errorf("non-canonical RLP at byte %d: %s length has a leading zero byte", off, kind)
	}
	var n uint64
	for _, c := range b[1 : 1+lenLen] {
		n = n<<8 | uint64(c)
	}
	if n < 56 {
		return 0, fmt.Errorf("non-canonical RLP at byte %d: %s of %d bytes must use the short header", off, kind, n)
	}
	if rest := uint64(len(b) - 1 - lenLen); n > rest {
		return 0, fmt.Errorf("truncated: %s at byte %d declares %d bytes, %d remain", kind, off, n, rest)
	}
	return int(n), nil
}

// Field readers: each names the field in its error.

func rlpString(it rlpItem, name string) ([]byte, error) {
	if it.list {
		return nil, fmt.Errorf("%s: expected a byte string, got a list (at byte %d)", name, it.off)
	}
	return it.str, nil
}

// rlpInt reads an unsigned integer of at most maxBytes bytes in canonical form
// (no leading zero bytes; zero is the empty string).
func rlpInt(it rlpItem, name string, maxBytes int) (*big.Int, error) {
	if it.list {
		return nil, fmt.Errorf("%s: expected an integer, got a list (at byte %d)", name, it.off)
	}
	if len(it.str) > 0 && it.str[0] == 0 {
		return nil, fmt.Errorf("%s: non-canonical integer with a leading zero byte (at byte %d)", name, it.off)
	}
	if len(it.str) > maxBytes {
		return nil, fmt.Errorf("%s: integer is %d bytes, more than %d bits", name, len(it.str), 8*maxBytes)
	}
	return new(big.Int).SetBytes(it.str), nil
}

func rlpUint64(it rlpItem, name string) (uint64, error) {
	x, err := rlpInt(it, name, 8)
	if err != nil {
		return 0, err
	}
	return x.Uint64(), nil
}

// Encoding.

func appendRLPHeader(dst []byte, size int, short byte) []byte {
	if size < 56 {
		return append(dst, short+byte(size))
	}
	var lenBytes [8]byte
	n := 0
	for v := uint64(size); v > 0; v >>= 8 {
		n++
		lenBytes[8-n] = byte(v)
	}
	dst = append(dst, short+55+byte(n))
	return append(dst, lenBytes[8-n:]...)
}

func appendRLPString(dst, s []byte) []byte {
	if len(s) == 1 && s[0] < 0x80 {
		return append(dst, s[0])
	}
	return append(appendRLPHeader(dst, len(s), 0x80), s...)
}

func appendRLPUint64(dst []byte, x uint64) []byte {
	var b [8]byte
	n := 0
	for v := x; v > 0; v >>= 8 {
		n++
		b[8-n] = byte(v)
	}
	return appendRLPString(dst, b[8-n:])
}

func appendRLPBig(dst []byte, x *big.Int) []byte {
	return appendRLPString(dst, x.Bytes())
}

// appendRLPList appends payload (already encoded items) as a list.
func appendRLPList(dst, payload []byte) []byte {
	return append(appendRLPHeader(dst, len(payload), 0xc0), payload...)
}
