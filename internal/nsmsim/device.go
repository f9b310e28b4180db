//go:build !nosim

package nsmsim

import (
	"io"
	"slices"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/response"
)

const (
	// maxRequestSize is the largest request the NSM driver accepts.
	maxRequestSize = 0x1000
	// maxResponseSize is the size of the driver's response buffer.
	maxResponseSize = 0x3000
	// randomChunk is the number of bytes one GetRandom returns (as QEMU's
	// virtio-nsm; the hardware's chunk size is undocumented).
	randomChunk = 256
)

// CodeInvalidIndex is the error code for a PCR index out of range. The Rust
// NSM API defines it, but github.com/hf/nsm/response has no constant for it.
const CodeInvalidIndex response.ErrorCode = "InvalidIndex"

// Version reported by DescribeNSM.
const (
	versionMajor = 1
	versionMinor = 0
	versionPatch = 0
)

// decMode decodes requests like serde_cbor: one well-formed item, no
// trailing bytes, no duplicate map keys.
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// Request names (serde variant names of aws-nitro-enclaves-nsm-api Request).
const (
	reqDescribePCR = "DescribePCR"
	reqExtendPCR   = "ExtendPCR"
	reqLockPCR     = "LockPCR"
	reqLockPCRs    = "LockPCRs"
	reqDescribeNSM = "DescribeNSM"
	reqAttestation = "Attestation"
	reqGetRandom   = "GetRandom"
)

// envelope is a decoded externally tagged request: the variant name and, for
// the map form, its body.
type envelope struct {
	name string
	body cbor.RawMessage // nil for the bare-string (unit) form
}

// parseEnvelope decodes the outer serde enum. It reports false when req is
// not a single well-formed CBOR item that is either a text string or a map
// with exactly one text key.
func parseEnvelope(req []byte) (envelope, bool) {
	if len(req) == 0 || decMode.Wellformed(req) != nil {
		return envelope{}, false
	}
	switch req[0] >> 5 {
	case majorText >> 5:
		var name string
		if decMode.Unmarshal(req, &name) != nil {
			return envelope{}, false
		}
		return envelope{name: name}, true
	case majorMap >> 5:
		var m map[string]cbor.RawMessage
		if decMode.Unmarshal(req, &m) != nil || len(m) != 1 {
			return envelope{}, false
		}
		for name, body := range m {
			return envelope{name: name, body: body}, true
		}
	}
	return envelope{}, false
}

// fields is the body of a struct variant: a map from field name to raw value.
// Unknown fields are ignored, as serde does by default.
type fields map[string]cbor.RawMessage

// parseFields decodes a struct-variant body; it reports false when the body
// is not a map with text keys.
func parseFields(body cbor.RawMessage) (fields, bool) {
	if len(body) == 0 || body[0]>>5 != majorMap>>5 {
		return nil, false
	}
	var f fields
	if decMode.Unmarshal(body, &f) != nil {
		return nil, false
	}
	return f, true
}

// u16 returns a required unsigned 16-bit field.
func (f fields) u16(name string) (uint16, bool) {
	raw, ok := f[name]
	if !ok || len(raw) == 0 || raw[0]>>5 != majorUint>>5 {
		return 0, false
	}
	var v uint64
	if decMode.Unmarshal(raw, &v) != nil || v > 0xffff {
		return 0, false
	}
	return uint16(v), true
}

// bytes returns a required byte-string field. An empty bstr yields a
// non-nil empty slice.
func (f fields) bytes(name string) ([]byte, bool) {
	raw, ok := f[name]
	if !ok {
		return nil, false
	}
	return decodeBytes(raw)
}

// optBytes returns an Option<ByteBuf> field: nil when absent or null.
func (f fields) optBytes(name string) ([]byte, bool) {
	raw, ok := f[name]
	if !ok || (len(raw) == 1 && raw[0] == cborNull) {
		return nil, true
	}
	return decodeBytes(raw)
}

func decodeBytes(raw cbor.RawMessage) ([]byte, bool) {
	if len(raw) == 0 || raw[0]>>5 != majorBytes>>5 {
		return nil, false
	}
	var b []byte
	if decMode.Unmarshal(raw, &b) != nil {
		return nil, false
	}
	if b == nil {
		b = []byte{}
	}
	return b, true
}

// handle processes one raw request like the device and returns the raw
// response. It never fails: every problem becomes an Error response. The
// caller holds s.mu.
func (s *Simulator) handle(req []byte) []byte {
	res := s.dispatch(req)
	if len(res) > maxResponseSize {
		return errorResponse(response.ECBufferTooSmall)
	}
	return res
}

func (s *Simulator) dispatch(req []byte) []byte {
	if len(req) > maxRequestSize {
		return errorResponse(response.ECInputTooLarge)
	}
	env, ok := parseEnvelope(req)
	if !ok {
		return errorResponse(response.ECInvalidOperation)
	}
	if s.cfg.Fault != nil {
		if code := s.cfg.Fault(env.name); code != "" {
			return errorResponse(code)
		}
	}

	switch env.name {
	case reqGetRandom, reqDescribeNSM:
		// Unit variants: a bare string, or (as serde also accepts) a
		// one-entry map whose value is null.
		if env.body != nil && !(len(env.body) == 1 && env.body[0] == cborNull) {
			return errorResponse(response.ECInvalidOperation)
		}
		if env.name == reqGetRandom {
			return s.getRandom()
		}
		return s.describeNSM()
	case reqDescribePCR, reqExtendPCR, reqLockPCR, reqLockPCRs, reqAttestation:
	default:
		return errorResponse(response.ECInvalidOperation)
	}

	f, ok := parseFields(env.body)
	if !ok {
		return errorResponse(response.ECInvalidOperation)
	}
	switch env.name {
	case reqDescribePCR:
		index, ok := f.u16("index")
		if !ok {
			return errorResponse(response.ECInvalidArgument)
		}
		return s.describePCR(index)
	case reqExtendPCR:
		index, ok1 := f.u16("index")
		data, ok2 := f.bytes("data")
		if !ok1 || !ok2 {
			return errorResponse(response.ECInvalidArgument)
		}
		return s.extendPCR(index, data)
	case reqLockPCR:
		index, ok := f.u16("index")
		if !ok {
			return errorResponse(response.ECInvalidArgument)
		}
		return s.lockPCR(index)
	case reqLockPCRs:
		n, ok := f.u16("range")
		if !ok {
			return errorResponse(response.ECInvalidArgument)
		}
		return s.lockPCRs(n)
	default: // reqAttestation
		userData, ok1 := f.optBytes("user_data")
		nonce, ok2 := f.optBytes("nonce")
		publicKey, ok3 := f.optBytes("public_key")
		if !ok1 || !ok2 || !ok3 || len(userData) > maxAuxSize || len(nonce) > maxAuxSize || len(publicKey) > maxAuxSize {
			return errorResponse(response.ECInvalidArgument)
		}
		return s.attestation(userData, nonce, publicKey)
	}
}

func (s *Simulator) getRandom() []byte {
	buf := make([]byte, randomChunk)
	if _, err := io.ReadFull(s.cfg.Rand, buf); err != nil {
		return errorResponse(response.ECInternalError)
	}
	b := appendMapHead(nil, 1)
	b = appendText(b, reqGetRandom)
	b = appendMapHead(b, 1)
	b = appendText(b, "random")
	return appendBytes(b, buf)
}

func (s *Simulator) describeNSM() []byte {
	locked := s.pcrs.lockedIndexes()
	b := appendMapHead(nil, 1)
	b = appendText(b, reqDescribeNSM)
	b = appendMapHead(b, 7)
	b = appendText(b, "version_major")
	b = appendUint(b, versionMajor)
	b = appendText(b, "version_minor")
	b = appendUint(b, versionMinor)
	b = appendText(b, "version_patch")
	b = appendUint(b, versionPatch)
	b = appendText(b, "module_id")
	b = appendText(b, s.moduleID)
	b = appendText(b, "max_pcrs")
	b = appendUint(b, numPCRs)
	b = appendText(b, "locked_pcrs")
	b = appendArrayHead(b, len(locked))
	for _, i := range locked {
		b = appendUint(b, uint64(i))
	}
	b = appendText(b, "digest")
	return appendText(b, string(response.DigestSHA384))
}

func (s *Simulator) describePCR(index uint16) []byte {
	if index >= numPCRs {
		return errorResponse(CodeInvalidIndex)
	}
	b := appendMapHead(nil, 1)
	b = appendText(b, reqDescribePCR)
	b = appendMapHead(b, 2)
	b = appendText(b, "lock")
	b = appendBool(b, s.pcrs.locked[index])
	b = appendText(b, "data")
	return appendBytes(b, s.pcrs.val[index][:])
}

func (s *Simulator) extendPCR(index uint16, data []byte) []byte {
	if index >= numPCRs {
		return errorResponse(CodeInvalidIndex)
	}
	if s.pcrs.locked[index] {
		return errorResponse(response.ECReadOnlyIndex)
	}
	v := extend(s.pcrs.val[index][:], data)
	copy(s.pcrs.val[index][:], v)
	b := appendMapHead(nil, 1)
	b = appendText(b, reqExtendPCR)
	b = appendMapHead(b, 1)
	b = appendText(b, "data")
	return appendBytes(b, v)
}

func (s *Simulator) lockPCR(index uint16) []byte {
	if index >= numPCRs {
		return errorResponse(CodeInvalidIndex)
	}
	if s.pcrs.locked[index] {
		return errorResponse(response.ECReadOnlyIndex)
	}
	s.pcrs.locked[index] = true
	return appendText(nil, reqLockPCR)
}

func (s *Simulator) lockPCRs(n uint16) []byte {
	if n > numPCRs {
		return errorResponse(CodeInvalidIndex)
	}
	for i := range n {
		s.pcrs.locked[i] = true
	}
	return appendText(nil, reqLockPCRs)
}

func (s *Simulator) attestation(userData, nonce, publicKey []byte) []byte {
	now := s.cfg.Now()
	leaf, key, cabundle, err := s.ca.issueLeaf(now)
	if err != nil {
		return errorResponse(response.ECInternalError)
	}
	p := payload{
		moduleID:    s.moduleID,
		timestamp:   now,
		pcrs:        s.pcrs.lockedValues(),
		certificate: leaf,
		cabundle:    cabundle,
		publicKey:   slices.Clone(publicKey),
		userData:    slices.Clone(userData),
		nonce:       slices.Clone(nonce),
	}
	doc, err := signCOSE(key, p.marshal())
	if err != nil {
		return errorResponse(response.ECInternalError)
	}
	b := appendMapHead(nil, 1)
	b = appendText(b, reqAttestation)
	b = appendMapHead(b, 1)
	b = appendText(b, "document")
	return appendBytes(b, doc)
}

// errorResponse encodes {"Error": code}.
func errorResponse(code response.ErrorCode) []byte {
	b := appendMapHead(nil, 1)
	b = appendText(b, "Error")
	return appendText(b, string(code))
}
