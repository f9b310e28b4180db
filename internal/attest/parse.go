package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Size limits enforced before any cryptography runs.
const (
	// MaxDocumentSize is the largest encoded attestation document Verify
	// accepts. Real documents are 4–8 KiB; the NSM driver's response buffer
	// is 12 KiB.
	MaxDocumentSize = 32 << 10

	// MaxPayloadSize is the largest COSE_Sign1 payload Verify accepts, the
	// bound in the AWS attestation document specification.
	MaxPayloadSize = 16 << 10

	maxCertSize     = 1024 // certificate and each cabundle entry, per the AWS spec
	maxAuxSize      = 1024 // public_key, user_data and nonce, see nitro-reference §1.2
	maxCABundle     = 16   // real documents carry 4
	numPCRs         = 32
	es384SigSize    = 96 // r||s, 48 bytes each
	cborNull        = 0xf6
	cborTagCOSESig1 = 0xd2 // tag 18 in its only minimal encoding
)

// protectedES384 is the only accepted protected header: bstr(4) wrapping the
// map {1: -35}, byte for byte as the NSM emits it.
var protectedES384 = []byte{0x44, 0xa1, 0x01, 0x38, 0x22}

// emptyMap is the only accepted unprotected header.
var emptyMap = []byte{0xa0}

// CBOR major types.
const (
	majorUint  = 0
	majorBytes = 2
	majorText  = 3
	majorArray = 4
	majorMap   = 5
)

// strict is the decoder used for every pre-check. It rejects what a real NSM
// never emits and what could make two CBOR parsers disagree: duplicate map
// keys, indefinite lengths, tags, invalid UTF-8 and deep nesting.
var strict = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		MaxNestedLevels:   8,
		MaxArrayElements:  64,
		MaxMapPairs:       64,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}.DecMode()
	if err != nil {
		panic(fmt.Sprintf("attest: build cbor decoder: %v", err))
	}
	return dm
}()

// payloadFields are the keys of the attestation document payload map.
var payloadFields = []string{
	"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle",
	"public_key", "user_data", "nonce",
}

// parsed is a document that passed the structural pre-checks. Nothing in it
// is authenticated yet.
type parsed struct {
	cose []byte // the untagged COSE_Sign1 array, as handed to nitrite
	doc  Document
}

// malformed returns an error wrapping ErrMalformed.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// parse runs every structural check that does not need a trust decision:
// sizes, the COSE_Sign1 envelope, the payload's fields and types, and the
// certificates' algorithms. Its errors wrap ErrMalformed.
func parse(data []byte) (*parsed, error) {
	if len(data) == 0 {
		return nil, malformed("empty document")
	}
	if len(data) > MaxDocumentSize {
		return nil, malformed("document is %d bytes, limit %d", len(data), MaxDocumentSize)
	}

	body := data
	if body[0] == cborTagCOSESig1 {
		body = body[1:]
	}
	if len(body) == 0 || body[0]>>5 != majorArray {
		return nil, malformed("not a cose_sign1 array")
	}
	var arr []cbor.RawMessage
	if err := strict.Unmarshal(body, &arr); err != nil {
		return nil, malformed("decode cose_sign1: %v", err)
	}
	if len(arr) != 4 {
		return nil, malformed("cose_sign1 has %d elements, want 4", len(arr))
	}
	if !bytes.Equal(arr[0], protectedES384) {
		return nil, malformed("protected header is not {1: -35} (es384)")
	}
	if !bytes.Equal(arr[1], emptyMap) {
		return nil, malformed("unprotected header is not an empty map")
	}
	payload, err := decodeBytes(arr[2], "payload")
	if err != nil {
		return nil, err
	}
	if len(payload) == 0 || len(payload) > MaxPayloadSize {
		return nil, malformed("payload is %d bytes, want 1..%d", len(payload), MaxPayloadSize)
	}
	sig, err := decodeBytes(arr[3], "signature")
	if err != nil {
		return nil, err
	}
	if len(sig) != es384SigSize {
		return nil, malformed("signature is %d bytes, want %d", len(sig), es384SigSize)
	}

	// Only the payload is signed. Requiring the one minimal encoding of the
	// envelope leaves nothing unsigned to vary but the optional tag (and
	// ECDSA's own s ↔ n−s malleability), so equal documents are equal bytes.
	if !bytes.Equal(body, encodeEnvelope(payload, sig)) {
		return nil, malformed("cose_sign1 is not minimally encoded")
	}

	doc, err := parsePayload(payload)
	if err != nil {
		return nil, err
	}
	return &parsed{cose: body, doc: *doc}, nil
}

// parsePayload decodes and checks the payload map (nitro-reference §1.2).
func parsePayload(payload []byte) (*Document, error) {
	if payload[0]>>5 != majorMap {
		return nil, malformed("payload is not a map")
	}
	var fields map[string]cbor.RawMessage
	if err := strict.Unmarshal(payload, &fields); err != nil {
		return nil, malformed("decode payload: %v", err)
	}
	// Unknown keys are ignored, but a key that differs from a known one only
	// in case is refused: nitrite matches struct fields case-insensitively,
	// so such a key could make it see a different document than this parser.
	for key := range fields {
		for _, known := range payloadFields {
			if key != known && strings.EqualFold(key, known) {
				return nil, malformed("payload key %q", key)
			}
		}
	}

	var d Document
	var err error
	if d.ModuleID, err = decodeText(fields, "module_id"); err != nil {
		return nil, err
	}
	if d.ModuleID == "" {
		return nil, malformed("module_id is empty")
	}
	if d.Digest, err = decodeText(fields, "digest"); err != nil {
		return nil, err
	}
	if d.Digest != "SHA384" {
		return nil, malformed("digest is not SHA384")
	}
	if d.Timestamp, err = decodeTimestamp(fields); err != nil {
		return nil, err
	}
	if d.PCRs, err = decodePCRs(fields); err != nil {
		return nil, err
	}

	leafDER, err := decodeField(fields, "certificate", true)
	if err != nil {
		return nil, err
	}
	if d.Certificate, err = parseLeaf(leafDER); err != nil {
		return nil, err
	}
	if d.CABundle, err = decodeCABundle(fields); err != nil {
		return nil, err
	}

	if d.PublicKey, err = decodeField(fields, "public_key", false); err != nil {
		return nil, err
	}
	if d.UserData, err = decodeField(fields, "user_data", false); err != nil {
		return nil, err
	}
	if d.Nonce, err = decodeField(fields, "nonce", false); err != nil {
		return nil, err
	}
	return &d, nil
}

// decodeBytes decodes raw, which must be a definite byte string.
func decodeBytes(raw cbor.RawMessage, name string) ([]byte, error) {
	if raw[0]>>5 != majorBytes {
		return nil, malformed("%s is not a byte string", name)
	}
	var b []byte
	if err := strict.Unmarshal(raw, &b); err != nil {
		return nil, malformed("decode %s: %v", name, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// decodeText decodes the mandatory text field name.
func decodeText(fields map[string]cbor.RawMessage, name string) (string, error) {
	raw, ok := fields[name]
	if !ok {
		return "", malformed("%s is missing", name)
	}
	if raw[0]>>5 != majorText {
		return "", malformed("%s is not a text string", name)
	}
	var s string
	if err := strict.Unmarshal(raw, &s); err != nil {
		return "", malformed("decode %s: %v", name, err)
	}
	return s, nil
}

// decodeField decodes a byte-string field limited to 1024 bytes. A mandatory
// field must be present and non-empty; an optional one may be absent or null,
// which yields nil, or an empty byte string, which yields a non-nil empty
// slice.
func decodeField(fields map[string]cbor.RawMessage, name string, mandatory bool) ([]byte, error) {
	raw, ok := fields[name]
	if !ok || (len(raw) == 1 && raw[0] == cborNull) {
		if mandatory {
			return nil, malformed("%s is missing", name)
		}
		return nil, nil
	}
	b, err := decodeBytes(raw, name)
	if err != nil {
		return nil, err
	}
	if len(b) > maxAuxSize || (mandatory && len(b) == 0) {
		return nil, malformed("%s is %d bytes", name, len(b))
	}
	return b, nil
}

// decodeTimestamp decodes the mandatory timestamp (milliseconds since the Unix
// epoch).
func decodeTimestamp(fields map[string]cbor.RawMessage) (time.Time, error) {
	raw, ok := fields["timestamp"]
	if !ok {
		return time.Time{}, malformed("timestamp is missing")
	}
	if raw[0]>>5 != majorUint {
		return time.Time{}, malformed("timestamp is not an unsigned integer")
	}
	var ms uint64
	if err := strict.Unmarshal(raw, &ms); err != nil {
		return time.Time{}, malformed("decode timestamp: %v", err)
	}
	if ms == 0 || ms > math.MaxInt64 {
		return time.Time{}, malformed("timestamp %d out of range", ms)
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}

// decodePCRs decodes the mandatory pcrs map: 1..32 entries, indexes 0..31,
// values of 32, 48 or 64 bytes, and PCR0–PCR2 present (a real NSM always
// reports PCR0–PCR15, and debug detection depends on PCR0–PCR2).
func decodePCRs(fields map[string]cbor.RawMessage) (map[int][]byte, error) {
	raw, ok := fields["pcrs"]
	if !ok {
		return nil, malformed("pcrs is missing")
	}
	if raw[0]>>5 != majorMap {
		return nil, malformed("pcrs is not a map")
	}
	var m map[uint64]cbor.RawMessage
	if err := strict.Unmarshal(raw, &m); err != nil {
		return nil, malformed("decode pcrs: %v", err)
	}
	if len(m) < 1 || len(m) > numPCRs {
		return nil, malformed("pcrs has %d entries, want 1..%d", len(m), numPCRs)
	}
	pcrs := make(map[int][]byte, len(m))
	for idx, v := range m {
		if idx >= numPCRs {
			return nil, malformed("pcr index %d out of range", idx)
		}
		b, err := decodeBytes(v, fmt.Sprintf("pcr%d", idx))
		if err != nil {
			return nil, err
		}
		if n := len(b); n != 32 && n != 48 && n != 64 {
			return nil, malformed("pcr%d is %d bytes", idx, n)
		}
		pcrs[int(idx)] = b
	}
	for i := range 3 {
		if _, ok := pcrs[i]; !ok {
			return nil, malformed("pcr%d is missing", i)
		}
	}
	return pcrs, nil
}

// decodeCABundle decodes and parses the mandatory cabundle, root first.
func decodeCABundle(fields map[string]cbor.RawMessage) ([]*x509.Certificate, error) {
	raw, ok := fields["cabundle"]
	if !ok {
		return nil, malformed("cabundle is missing")
	}
	if raw[0]>>5 != majorArray {
		return nil, malformed("cabundle is not an array")
	}
	var items []cbor.RawMessage
	if err := strict.Unmarshal(raw, &items); err != nil {
		return nil, malformed("decode cabundle: %v", err)
	}
	if len(items) < 1 || len(items) > maxCABundle {
		return nil, malformed("cabundle has %d entries, want 1..%d", len(items), maxCABundle)
	}
	certs := make([]*x509.Certificate, len(items))
	for i, item := range items {
		der, err := decodeBytes(item, fmt.Sprintf("cabundle[%d]", i))
		if err != nil {
			return nil, err
		}
		if len(der) == 0 || len(der) > maxCertSize {
			return nil, malformed("cabundle[%d] is %d bytes", i, len(der))
		}
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, malformed("parse cabundle[%d]: %v", i, err)
		}
	}
	return certs, nil
}

// parseLeaf parses the signing certificate and requires an ECDSA P-384 key
// signed with ecdsa-with-SHA384. nitrite panics on leaf keys on curves other
// than P-224, P-256 and P-384, so this check must run before it.
func parseLeaf(der []byte) (*x509.Certificate, error) {
	if len(der) > maxCertSize {
		return nil, malformed("certificate is %d bytes", len(der))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, malformed("parse certificate: %v", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || cert.PublicKeyAlgorithm != x509.ECDSA || pub.Curve != elliptic.P384() {
		return nil, malformed("certificate key is not ecdsa p-384")
	}
	if cert.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		return nil, malformed("certificate signature algorithm is %v, want ecdsa-with-sha384", cert.SignatureAlgorithm)
	}
	return cert, nil
}

// encodeEnvelope returns the minimal encoding of an untagged COSE_Sign1 with
// the ES384 protected header and an empty unprotected header.
func encodeEnvelope(payload, sig []byte) []byte {
	out := make([]byte, 0, 16+len(payload)+len(sig))
	out = append(out, 0x84)
	out = append(out, protectedES384...)
	out = append(out, emptyMap...)
	out = appendBytes(out, payload)
	return appendBytes(out, sig)
}

// appendBytes appends b as a minimally encoded CBOR byte string. len(b) is
// bounded by MaxDocumentSize.
func appendBytes(out, b []byte) []byte {
	n := len(b)
	switch {
	case n < 24:
		out = append(out, majorBytes<<5|byte(n))
	case n < 1<<8:
		out = append(out, majorBytes<<5|24, byte(n))
	case n < 1<<16:
		out = append(out, majorBytes<<5|25, byte(n>>8), byte(n))
	default:
		out = append(out, majorBytes<<5|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, b...)
}
