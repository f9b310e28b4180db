package attest

import (
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"
)

// Document is a verified attestation document. [Verify] returns one only when
// every check passed; its fields are the signed payload.
//
// A Document shares no memory with the input bytes. Callers must treat it as
// read-only if they share it between goroutines.
type Document struct {
	// ModuleID identifies the enclave, e.g.
	// "i-0a22e5c5f24d22174-enc0191cceb4289903f".
	ModuleID string

	// Timestamp is when the NSM produced the document (UTC, millisecond
	// precision).
	Timestamp time.Time

	// Digest is the PCR hash algorithm; always "SHA384".
	Digest string

	// PCRs maps PCR index (0..31) to value. Real documents carry PCR0–PCR15
	// with 48-byte values; PCR0, PCR1 and PCR2 are always present.
	PCRs map[int][]byte

	// Certificate is the leaf certificate whose ECDSA P-384 key signed the
	// document.
	Certificate *x509.Certificate

	// CABundle is the chain from the root (CABundle[0], byte-identical to the
	// trusted root it was verified against) down to the leaf's issuer, each
	// entry issued and signed by the one before it.
	CABundle []*x509.Certificate

	// PublicKey, UserData and Nonce are the optional fields the enclave
	// supplied (at most 1024 bytes each). Each is nil when the document has
	// no such field (or CBOR null) and a non-nil empty slice when the field
	// is present but empty.
	PublicKey []byte
	UserData  []byte
	Nonce     []byte
}

// Debug reports whether the document comes from an enclave started in debug
// mode, which the NSM signals by reporting PCR0, PCR1 and PCR2 as all zeros.
// (PCR4, the parent instance, stays populated in debug mode.)
func (d *Document) Debug() bool {
	for i := range 3 {
		v, ok := d.PCRs[i]
		if !ok || !allZero(v) {
			return false
		}
	}
	return true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ParsePCRs converts expected PCR values given as hex strings (upper or lower
// case, no prefix, as printed by nitro-cli) into the form [Options.PCRs]
// takes. Indexes must be 0..31 and each value must decode to 48 bytes
// (SHA-384).
func ParsePCRs(hexPCRs map[int]string) (map[int][]byte, error) {
	pcrs := make(map[int][]byte, len(hexPCRs))
	for i, s := range hexPCRs {
		if i < 0 || i >= numPCRs {
			return nil, fmt.Errorf("attest: pcr index %d out of range 0..%d", i, numPCRs-1)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("attest: pcr%d: %w", i, err)
		}
		if len(b) != 48 {
			return nil, fmt.Errorf("attest: pcr%d is %d bytes, want 48", i, len(b))
		}
		pcrs[i] = b
	}
	return pcrs, nil
}
