//go:build !nosim

package nsmsim

// A minimal CBOR (RFC 8949) writer used for everything the simulated device
// emits: responses, attestation payloads and the COSE_Sign1 envelope. Writing
// the bytes by hand keeps map entries in the exact order the device uses
// (serde's declaration order, AWS's payload order) instead of relying on an
// encoder's sorting rules or Go map iteration. All lengths use the shortest
// encoding, as serde_cbor and ciborium do.

// CBOR major types, already shifted into the top three bits.
const (
	majorUint  = 0 << 5
	majorBytes = 2 << 5
	majorText  = 3 << 5
	majorArray = 4 << 5
	majorMap   = 5 << 5
)

// CBOR simple values.
const (
	cborFalse = 0xf4
	cborTrue  = 0xf5
	cborNull  = 0xf6
)

// appendHead appends the initial byte(s) of an item of the given major type
// with argument n.
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xff:
		return append(b, major|24, byte(n))
	case n <= 0xffff:
		return append(b, major|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(b, major|27,
			byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendUint(b []byte, v uint64) []byte { return appendHead(b, majorUint, v) }

func appendBytes(b, p []byte) []byte {
	return append(appendHead(b, majorBytes, uint64(len(p))), p...)
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, majorText, uint64(len(s))), s...)
}

// appendOptBytes appends p as a bstr, or CBOR null when p is nil. A non-nil
// empty slice becomes an empty bstr (0x40).
func appendOptBytes(b, p []byte) []byte {
	if p == nil {
		return append(b, cborNull)
	}
	return appendBytes(b, p)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, cborTrue)
	}
	return append(b, cborFalse)
}

func appendArrayHead(b []byte, n int) []byte { return appendHead(b, majorArray, uint64(n)) }

func appendMapHead(b []byte, n int) []byte { return appendHead(b, majorMap, uint64(n)) }
