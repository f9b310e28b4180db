package sol

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// solanaShortU16 ports solana-short-vec's decode_shortu16_len (visit_byte),
// the reference for compact-u16 decoding: it returns the value and the bytes
// used, or ok == false where Solana refuses the input.
func solanaShortU16(b []byte) (val, n int, ok bool) {
	v := uint32(0)
	for i := 0; ; i++ {
		if i >= len(b) {
			return 0, 0, false
		}
		c := uint32(b[i])
		if c == 0 && i != 0 {
			return 0, 0, false
		}
		done := c&0x80 == 0
		if i >= 3 || (i == 2 && !done) {
			return 0, 0, false
		}
		v |= (c & 0x7f) << (7 * i)
		if v > 0xffff {
			return 0, 0, false
		}
		if done {
			return int(v), i + 1, true
		}
	}
}

// TestCompactU16MatchesSolana compares reader.compactU16 with the port
// of Solana's decoder on every 1- and 2-byte input and on 3-byte inputs whose
// first two bytes continue (the only ones that reach a third byte), with
// trailing bytes after the value.
func TestCompactU16MatchesSolana(t *testing.T) {
	check := func(in []byte) {
		for _, tail := range [][]byte{nil, {0x00}, {0xff}} {
			b := append(append([]byte(nil), in...), tail...)
			r := &reader{b: b}
			got, err := r.compactU16("n")
			want, n, ok := solanaShortU16(b)
			if ok != (err == nil) || ok && (got != want || r.off != n) {
				require.Failf(t, "compact-u16 differs from Solana", "% x: got %d, %v (used %d); Solana %d, ok %v (used %d)",
					b, got, err, r.off, want, ok, n)
			}
		}
	}
	for x := range 1 << 8 {
		check([]byte{byte(x)})
	}
	for x := range 1 << 16 {
		check([]byte{byte(x), byte(x >> 8)})
	}
	for _, b0 := range []byte{0x80, 0x81, 0xc0, 0xff} {
		for _, b1 := range []byte{0x80, 0x81, 0xc0, 0xff} {
			for b2 := range 256 {
				check([]byte{b0, b1, byte(b2)})
			}
		}
	}
}
