package eif

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/fxamacker/cbor/v2"
)

// Signature is the signature section of a signed image.
//
// On disk (src/defs/mod.rs EifSignature, serialised with serde_cbor) it is
// a CBOR array of PcrSignature maps, of which nitro-cli reads only the
// first:
//
//	[ {"signing_certificate": PEM bytes, "signature": COSE_Sign1 bytes}, ... ]
//
// serde_cbor writes both byte fields as arrays of small unsigned integers,
// not as byte strings; this package reads either and writes arrays. The
// COSE_Sign1 (aws-nitro-enclaves-cose src/sign.rs) has protected header
// {1: alg}, an empty unprotected map, and signs the CBOR map
// {"register_index": 0, "register_value": PCR0} with ECDSA over the
// certificate's key (P-256/ES256, P-384/ES384 or P-521/ES512), r||s.
type Signature struct {
	// CertificatePEM is the signing_certificate field as stored: the PEM
	// file given to nitro-cli --signing-certificate.
	CertificatePEM []byte
	// Certificate is the first CERTIFICATE block of CertificatePEM. PCR8 is
	// derived from its DER bytes.
	Certificate *x509.Certificate
	// COSESign1 is the signature field: a COSE_Sign1 (untagged or with tag
	// 18) over PCR0.
	COSESign1 []byte
	// Entries is the number of PcrSignature entries in the section;
	// nitro-cli (and this package) use only the first.
	Entries int
}

// ParseCertificatePEM returns the first CERTIFICATE block of data, the way
// nitro-cli reads --signing-certificate (openssl X509::from_pem).
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse certificate: %w", err)
			}
			return cert, nil
		}
	}
}

// decMode decodes the signature section: no tags, no duplicate map keys,
// sizes bounded by the section (itself bounded by maxSmallSection).
var decMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		TagsMd:           cbor.TagsForbidden,
		MaxNestedLevels:  16,
		MaxArrayElements: maxSmallSection,
		MaxMapPairs:      64,
	}.DecMode()
	if err != nil {
		panic(err) // constant options
	}
	return dm
}()

// byteList is a byte string that serde_cbor writes as an array of uints;
// it decodes from either form.
type byteList []byte

func (b *byteList) UnmarshalCBOR(data []byte) error {
	if len(data) == 0 {
		return errors.New("empty item")
	}
	switch data[0] >> 5 {
	case 2: // byte string
		var v []byte
		if err := decMode.Unmarshal(data, &v); err != nil {
			return err
		}
		*b = v
		return nil
	case 4: // array
		var v []uint64
		if err := decMode.Unmarshal(data, &v); err != nil {
			return err
		}
		out := make([]byte, len(v))
		for i, x := range v {
			if x > 0xff {
				return fmt.Errorf("array element %d is %d, not a byte", i, x)
			}
			out[i] = byte(x)
		}
		*b = out
		return nil
	default:
		return errors.New("want a byte string or an array of bytes")
	}
}

type pcrSignature struct {
	SigningCertificate *byteList `cbor:"signing_certificate"`
	Signature          *byteList `cbor:"signature"`
}

type pcrInfo struct {
	RegisterIndex *int64    `cbor:"register_index"`
	RegisterValue *byteList `cbor:"register_value"`
}

// parseSignature decodes a signature section.
func parseSignature(data []byte) (*Signature, error) {
	var entries []pcrSignature
	if err := decMode.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("%w: not a CBOR array of PCR signatures: %v", ErrSignature, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no PCR signature", ErrSignature)
	}
	e := entries[0]
	if e.SigningCertificate == nil || e.Signature == nil {
		return nil, fmt.Errorf("%w: PCR signature lacks signing_certificate or signature", ErrSignature)
	}
	cert, err := ParseCertificatePEM(*e.SigningCertificate)
	if err != nil {
		return nil, fmt.Errorf("%w: signing certificate: %v", ErrSignature, err)
	}
	return &Signature{
		CertificatePEM: *e.SigningCertificate,
		Certificate:    cert,
		COSESign1:      *e.Signature,
		Entries:        len(entries),
	}, nil
}

// coseParams returns the COSE algorithm, hash and coordinate size for an
// ECDSA curve (CoseSign1::curve_to_parameters in aws-nitro-enclaves-cose).
func coseParams(c elliptic.Curve) (alg int64, h crypto.Hash, size int, err error) {
	switch c {
	case elliptic.P256():
		return -7, crypto.SHA256, 32, nil
	case elliptic.P384():
		return -35, crypto.SHA384, 48, nil
	case elliptic.P521():
		return -36, crypto.SHA512, 66, nil
	default:
		return 0, 0, 0, errors.New("unsupported curve (want P-256, P-384 or P-521)")
	}
}

func digest(h crypto.Hash, msg []byte) []byte {
	switch h {
	case crypto.SHA256:
		s := sha256.Sum256(msg)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(msg)
		return s[:]
	default:
		s := sha512.Sum512(msg)
		return s[:]
	}
}

// sigStructure is the COSE Sig_structure for COSE_Sign1 with no external
// data: ["Signature1", protected, h”, payload].
func sigStructure(protected, payload []byte) []byte {
	b := appendHead(nil, 4, 4)
	b = appendText(b, "Signature1")
	b = appendBytes(b, protected)
	b = appendBytes(b, nil)
	return appendBytes(b, payload)
}

type coseSign1 struct {
	_           struct{} `cbor:",toarray"`
	Protected   []byte
	Unprotected cbor.RawMessage
	Payload     []byte
	Signature   []byte
}

// Verify checks that the signature is valid: the COSE_Sign1 verifies under
// the certificate's ECDSA key and signs {register_index: 0, register_value:
// pcr0}. It does not look at the certificate's validity period, which
// nitro-cli run-enclave also enforces (an expired certificate makes it fail
// with E36/E39/E11). Errors wrap [ErrSignature].
func (s *Signature) Verify(pcr0 []byte) error {
	if err := s.verify(pcr0); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}

func (s *Signature) verify(pcr0 []byte) error {
	pub, ok := s.Certificate.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("signing certificate key is not ECDSA")
	}
	wantAlg, h, size, err := coseParams(pub.Curve)
	if err != nil {
		return fmt.Errorf("signing certificate: %v", err)
	}
	raw := s.COSESign1
	if len(raw) > 0 && raw[0] == 0xd2 { // tag 18, COSE_Sign1
		raw = raw[1:]
	}
	var msg coseSign1
	if err := decMode.Unmarshal(raw, &msg); err != nil {
		return fmt.Errorf("not a COSE_Sign1: %v", err)
	}
	var prot map[int64]cbor.RawMessage
	if err := decMode.Unmarshal(msg.Protected, &prot); err != nil {
		return fmt.Errorf("COSE protected header: %v", err)
	}
	var alg int64
	if a, ok := prot[1]; !ok || decMode.Unmarshal(a, &alg) != nil || alg != wantAlg {
		return fmt.Errorf("COSE algorithm is not %d, the one for the certificate's curve", wantAlg)
	}
	if len(msg.Signature) != 2*size {
		return fmt.Errorf("COSE signature is %d bytes, want %d", len(msg.Signature), 2*size)
	}
	r := new(big.Int).SetBytes(msg.Signature[:size])
	sv := new(big.Int).SetBytes(msg.Signature[size:])
	if !ecdsa.Verify(pub, digest(h, sigStructure(msg.Protected, msg.Payload)), r, sv) {
		return errors.New("COSE signature does not verify with the signing certificate")
	}
	var info pcrInfo
	if err := decMode.Unmarshal(msg.Payload, &info); err != nil || info.RegisterIndex == nil || info.RegisterValue == nil {
		return errors.New("signed payload is not {register_index, register_value}")
	}
	if *info.RegisterIndex != 0 || !bytes.Equal(*info.RegisterValue, pcr0) {
		return errors.New("signed payload is not this image's PCR0")
	}
	return nil
}

// signatureSection signs pcr0 with key and returns the signature section
// for the certificate certPEM, in serde_cbor's encoding.
func signatureSection(key crypto.Signer, certPEM, pcr0 []byte) ([]byte, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("signing key is not ECDSA")
	}
	alg, h, size, err := coseParams(pub.Curve)
	if err != nil {
		return nil, fmt.Errorf("signing key: %v", err)
	}
	protected := appendInt(appendHead(nil, 5, 1), 1)
	protected = appendInt(protected, alg)

	// PcrInfo {register_index: i32, register_value: Vec<u8>}.
	payload := appendHead(nil, 5, 2)
	payload = appendText(payload, "register_index")
	payload = appendInt(payload, 0)
	payload = appendText(payload, "register_value")
	payload = appendByteList(payload, pcr0)

	der, err := key.Sign(rand.Reader, digest(h, sigStructure(protected, payload)), h)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
		return nil, errors.New("sign: signer returned a malformed ECDSA signature")
	}
	sig := make([]byte, 2*size)
	rs.R.FillBytes(sig[:size])
	rs.S.FillBytes(sig[size:])

	cose := appendHead(nil, 4, 4)
	cose = appendBytes(cose, protected)
	cose = appendHead(cose, 5, 0)
	cose = appendBytes(cose, payload)
	cose = appendBytes(cose, sig)

	b := appendHead(nil, 4, 1)
	b = appendHead(b, 5, 2)
	b = appendText(b, "signing_certificate")
	b = appendByteList(b, certPEM)
	b = appendText(b, "signature")
	return appendByteList(b, cose), nil
}

// Minimal CBOR encoding, shortest form, as serde_cbor writes it.

func appendHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return append(b, m|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, m|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	default:
		b = append(b, m|27)
		for i := 56; i >= 0; i -= 8 {
			b = append(b, byte(n>>i))
		}
		return b
	}
}

func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(b, 0, uint64(v))
	}
	return appendHead(b, 1, uint64(-1-v))
}

func appendBytes(b, p []byte) []byte { return append(appendHead(b, 2, uint64(len(p))), p...) }

func appendText(b []byte, s string) []byte { return append(appendHead(b, 3, uint64(len(s))), s...) }

// appendByteList writes p as an array of uints (serde_cbor's Vec<u8>).
func appendByteList(b, p []byte) []byte {
	b = appendHead(b, 4, uint64(len(p)))
	for _, x := range p {
		b = appendHead(b, 0, uint64(x))
	}
	return b
}
