package sol

// Message exposes the decoded message to the tests, which build messages
// field by field and check that decoding is canonical.
type (
	Message     = message
	Instruction = instruction
	Lookup      = lookup
)

// Decode exposes decode.
var Decode = decode

// Encode serializes m in the wire format decode reads.
func (m *message) Encode() []byte {
	var b []byte
	if m.Version == version0 {
		b = append(b, versionPrefix)
	}
	b = append(b, m.NumRequiredSignatures, m.NumReadonlySigned, m.NumReadonlyUnsigned)
	b = appendCompactU16(b, len(m.Keys))
	for _, k := range m.Keys {
		b = append(b, k...)
	}
	b = append(b, m.RecentBlockhash...)
	b = appendCompactU16(b, len(m.Instructions))
	for _, in := range m.Instructions {
		b = append(b, in.ProgramIndex)
		b = appendCompactU16(b, len(in.Accounts))
		b = append(b, in.Accounts...)
		b = appendCompactU16(b, len(in.Data))
		b = append(b, in.Data...)
	}
	if m.Version == version0 {
		b = appendCompactU16(b, len(m.AddressTableLookups))
		for _, l := range m.AddressTableLookups {
			b = append(b, l.Table...)
			b = appendCompactU16(b, len(l.Writable))
			b = append(b, l.Writable...)
			b = appendCompactU16(b, len(l.Readonly))
			b = append(b, l.Readonly...)
		}
	}
	return b
}

// Legacy and V0 are the values of Message.Version.
const (
	Legacy = versionLegacy
	V0     = version0
)
