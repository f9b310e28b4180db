//go:build !nosim

package nsmsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha512"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"
)

// protectedES384 is the COSE protected header every real document carries:
// the CBOR map {1: -35} (alg: ES384), wrapped in a bstr by the envelope.
var protectedES384 = []byte{0xa1, 0x01, 0x38, 0x22}

// maxAuxSize bounds each of user_data, nonce and public_key. AWS's CDDL and
// its on-hardware test nsm-check use 1024 for all three (nitro-reference
// §1.2); the 512-byte figures in the prose of the same document are not what
// the device enforces.
const maxAuxSize = 1024

// payload holds the fields of an attestation document.
type payload struct {
	moduleID    string
	timestamp   time.Time
	pcrs        map[int][]byte
	certificate []byte
	cabundle    [][]byte
	publicKey   []byte // nil: omitted (CBOR null)
	userData    []byte // nil: omitted (CBOR null)
	nonce       []byte // nil: omitted (CBOR null)
}

// marshal encodes the payload map with its nine entries in AWS order. PCRs
// are written in ascending index order.
func (p *payload) marshal() []byte {
	b := make([]byte, 0, 8192)
	b = appendMapHead(b, 9)
	b = appendText(b, "module_id")
	b = appendText(b, p.moduleID)
	b = appendText(b, "digest")
	b = appendText(b, "SHA384")
	b = appendText(b, "timestamp")
	b = appendUint(b, uint64(p.timestamp.UnixMilli()))
	b = appendText(b, "pcrs")
	b = appendMapHead(b, len(p.pcrs))
	for i := range numPCRs {
		if v, ok := p.pcrs[i]; ok {
			b = appendUint(b, uint64(i))
			b = appendBytes(b, v)
		}
	}
	b = appendText(b, "certificate")
	b = appendBytes(b, p.certificate)
	b = appendText(b, "cabundle")
	b = appendArrayHead(b, len(p.cabundle))
	for _, c := range p.cabundle {
		b = appendBytes(b, c)
	}
	b = appendText(b, "public_key")
	b = appendOptBytes(b, p.publicKey)
	b = appendText(b, "user_data")
	b = appendOptBytes(b, p.userData)
	b = appendText(b, "nonce")
	b = appendOptBytes(b, p.nonce)
	return b
}

// sigStructure returns the COSE Sig_structure for a Signature1 with an empty
// external AAD: the array "Signature1", protected, an empty bstr, payload.
func sigStructure(protected, payload []byte) []byte {
	b := make([]byte, 0, len(payload)+32)
	b = appendArrayHead(b, 4)
	b = appendText(b, "Signature1")
	b = appendBytes(b, protected)
	b = appendBytes(b, nil)
	b = appendBytes(b, payload)
	return b
}

// signCOSE returns the untagged COSE_Sign1 array
// [protected, {}, payload, r||s] signed with the P-384 key.
func signCOSE(key *ecdsa.PrivateKey, payload []byte) ([]byte, error) {
	digest := sha512.Sum384(sigStructure(protectedES384, payload))
	der, err := key.Sign(rand.Reader, digest[:], crypto.SHA384)
	if err != nil {
		return nil, fmt.Errorf("sign document: %w", err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("decode ECDSA signature: %w", err)
	} else if len(rest) != 0 {
		return nil, fmt.Errorf("decode ECDSA signature: %d trailing bytes", len(rest))
	}
	size := (key.Curve.Params().BitSize + 7) / 8
	raw := make([]byte, 2*size)
	sig.R.FillBytes(raw[:size])
	sig.S.FillBytes(raw[size:])

	b := make([]byte, 0, len(payload)+len(raw)+16)
	b = appendArrayHead(b, 4)
	b = appendBytes(b, protectedES384)
	b = appendMapHead(b, 0)
	b = appendBytes(b, payload)
	b = appendBytes(b, raw)
	return b, nil
}
