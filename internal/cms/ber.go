package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// maxDepth bounds how deeply elements may nest. KMS's deepest element (the
// MGF1 hash OID) sits at depth 10, counting ContentInfo as 0.
const maxDepth = 16

// Identifier octets (single-byte, low-tag-number form) used by the envelope.
const (
	tagEOC         = 0x00
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagNull        = 0x05
	tagOID         = 0x06
	tagSequence    = 0x30
	tagSet         = 0x31
	tagContext0    = 0x80 // [0] IMPLICIT, primitive
	tagContext0C   = 0xa0 // [0], constructed
	tagContext1C   = 0xa1 // [1], constructed

	classAndNumberMask = 0x1f
	constructedBit     = 0x20
)

// element is one decoded BER element. body holds the contents octets; for an
// indefinite-length element it excludes the end-of-contents octets.
type element struct {
	tag   byte
	body  []byte
	depth int
}

// children returns a reader over the contents of a constructed element.
func (e element) children() *reader {
	return &reader{b: e.body, depth: e.depth + 1}
}

// reader walks a sequence of sibling BER elements.
type reader struct {
	b     []byte
	depth int
}

// readElement decodes the element at the start of b and returns it with its
// total encoded size (header, contents and any end-of-contents octets).
// Indefinite lengths are resolved by walking the children, which is bounded
// by maxDepth.
func readElement(b []byte, depth int) (element, int, error) {
	if depth > maxDepth {
		return element{}, 0, fmt.Errorf("elements nested deeper than %d levels", maxDepth)
	}
	if len(b) < 2 {
		return element{}, 0, errors.New("truncated element header")
	}
	tag := b[0]
	switch {
	case tag&classAndNumberMask == classAndNumberMask:
		return element{}, 0, fmt.Errorf("multi-byte tag 0x%02x is not supported", tag)
	case tag == tagEOC:
		return element{}, 0, errors.New("unexpected end-of-contents octets")
	}

	l := b[1]
	switch {
	case l < 0x80:
		return definite(b, tag, 2, uint64(l), depth)
	case l == 0x80:
		if tag&constructedBit == 0 {
			return element{}, 0, fmt.Errorf("indefinite length on primitive tag 0x%02x", tag)
		}
		off := 2
		for {
			if len(b)-off >= 2 && b[off] == 0 && b[off+1] == 0 {
				return element{tag: tag, body: b[2:off], depth: depth}, off + 2, nil
			}
			if len(b)-off < 2 {
				return element{}, 0, fmt.Errorf("missing end-of-contents octets for tag 0x%02x", tag)
			}
			_, n, err := readElement(b[off:], depth+1)
			if err != nil {
				return element{}, 0, err
			}
			off += n
		}
	case l == 0xff:
		return element{}, 0, errors.New("reserved length octet 0xff")
	default:
		k := int(l & 0x7f)
		if k > 4 {
			return element{}, 0, fmt.Errorf("length field of %d octets is too long", k)
		}
		if len(b) < 2+k {
			return element{}, 0, errors.New("truncated length field")
		}
		var n uint64
		for _, c := range b[2 : 2+k] {
			n = n<<8 | uint64(c)
		}
		return definite(b, tag, 2+k, n, depth)
	}
}

// definite returns the definite-length element whose header of hdr octets
// starts b and whose contents are n octets long.
func definite(b []byte, tag byte, hdr int, n uint64, depth int) (element, int, error) {
	if n > uint64(len(b)-hdr) {
		return element{}, 0, fmt.Errorf("length %d of tag 0x%02x exceeds the %d remaining octets", n, tag, len(b)-hdr)
	}
	end := hdr + int(n)
	return element{tag: tag, body: b[hdr:end], depth: depth}, end, nil
}

// next reads the next sibling element.
func (r *reader) next(what string) (element, error) {
	if len(r.b) == 0 {
		return element{}, malformed("%s: missing", what)
	}
	e, n, err := readElement(r.b, r.depth)
	if err != nil {
		return element{}, malformed("%s: %v", what, err)
	}
	r.b = r.b[n:]
	return e, nil
}

// expect reads the next sibling element and checks its identifier octet.
func (r *reader) expect(tag byte, what string) (element, error) {
	e, err := r.next(what)
	if err != nil {
		return element{}, err
	}
	if e.tag != tag {
		return element{}, malformed("%s: tag 0x%02x, want 0x%02x", what, e.tag, tag)
	}
	return e, nil
}

// end checks that every sibling has been consumed.
func (r *reader) end(what string) error {
	if len(r.b) != 0 {
		return malformed("%s: %d unexpected trailing octets", what, len(r.b))
	}
	return nil
}

// expectOID reads an OBJECT IDENTIFIER and checks that its contents equal
// want (the DER contents octets).
func (r *reader) expectOID(want []byte, name, what string) error {
	e, err := r.expect(tagOID, what)
	if err != nil {
		return err
	}
	if !bytes.Equal(e.body, want) {
		return malformed("%s: object identifier %s, want %s (%s)", what, oidString(e.body), name, oidString(want))
	}
	return nil
}

// expectInt reads an INTEGER and checks that it is the small value want.
func (r *reader) expectInt(want byte, what string) error {
	e, err := r.expect(tagInteger, what)
	if err != nil {
		return err
	}
	if len(e.body) != 1 || e.body[0] != want {
		return malformed("%s: value 0x%x, want %d", what, e.body, want)
	}
	return nil
}

// oidString formats OBJECT IDENTIFIER contents for error messages.
func oidString(body []byte) string {
	if len(body) > 32 {
		return fmt.Sprintf("(%d-octet identifier)", len(body))
	}
	var oid x509.OID
	if err := oid.UnmarshalBinary(body); err != nil {
		return "0x" + hex.EncodeToString(body)
	}
	return oid.String()
}

// malformed returns an error wrapping [ErrMalformed].
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}
