package cms

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// MaxEnvelopeSize is the largest envelope [Parse] and [Decrypt] accept and
// [Encrypt] produces: 1 MiB. KMS answers carry at most a few kilobytes
// (GenerateRandom returns at most 1024 bytes, a data key pair's private key
// a few kilobytes).
const MaxEnvelopeSize = 1 << 20

// Sizes fixed by the KMS envelope.
const (
	keyIDSize = sha256.Size // rid: SHA-256 of the recipient's SPKI
	cekSize   = 32          // AES-256 content-encryption key
	ivSize    = 16          // AES block size
)

var (
	// ErrMalformed means the bytes are not a CiphertextForRecipient envelope
	// in the form KMS produces: bad BER, an unexpected element, object
	// identifier, version or algorithm parameter, or trailing data. The
	// wrapping error says what is wrong.
	ErrMalformed = errors.New("cms: malformed envelope")

	// ErrWrongRecipient means the envelope's recipient identifier is not
	// the SHA-256 of the given key's SubjectPublicKeyInfo: it was encrypted
	// to another key.
	ErrWrongRecipient = errors.New("cms: envelope is for another recipient key")

	// ErrDecrypt means the envelope is well formed and addressed to the key
	// but does not decrypt: the RSA-OAEP unwrap, the content length or the
	// PKCS#7 padding is wrong. Which one is deliberately not reported.
	ErrDecrypt = errors.New("cms: decryption failed")
)

// DER contents octets of the object identifiers in the envelope.
var (
	oidEnvelopedData = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03} // 1.2.840.113549.1.7.3
	oidData          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01} // 1.2.840.113549.1.7.1
	oidRSAESOAEP     = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07} // 1.2.840.113549.1.1.7
	oidMGF1          = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08} // 1.2.840.113549.1.1.8
	oidSHA256        = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01} // 2.16.840.1.101.3.4.2.1
	oidAES256CBC     = []byte{0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a} // 2.16.840.1.101.3.4.1.42
)

// Versions KMS writes: EnvelopedData v2 and KeyTransRecipientInfo v2 (the
// rid is a subjectKeyIdentifier).
const (
	envelopedDataVersion = 2
	ktriVersion          = 2
)

// SubjectKeyID returns SHA-256 of the DER SubjectPublicKeyInfo of pub: the
// recipient identifier KMS uses.
func SubjectKeyID(pub *rsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.N == nil {
		return nil, errors.New("cms: nil RSA public key")
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cms: marshal public key: %w", err)
	}
	id := sha256.Sum256(spki)
	return id[:], nil
}

// Envelope is a parsed CiphertextForRecipient. Its slices are fresh copies
// that do not alias the parsed bytes.
type Envelope struct {
	RecipientKeyID []byte // rid, 32 bytes
	EncryptedKey   []byte // RSA-OAEP(SHA-256) encrypted CEK
	IV             []byte // 16 bytes
	Ciphertext     []byte // AES-256-CBC content, chunks concatenated
}

// Parse decodes the BER structure and checks every OID, version and
// parameter; it does not decrypt.
//
// It accepts exactly the structure KMS emits (see the package
// documentation) and only these BER freedoms: definite or indefinite
// lengths on every constructed element, non-minimal length octets, SHA-256
// AlgorithmIdentifiers with NULL or absent parameters, and encryptedContent
// in primitive form or in constructed form holding any number of primitive
// OCTET STRING chunks (empty ones included). Anything else,
// including optional CMS fields KMS never writes, more than one recipient,
// trailing octets and input longer than [MaxEnvelopeSize], fails with an
// error wrapping [ErrMalformed]. Parse does not check the ciphertext length;
// [Decrypt] does.
func Parse(ber []byte) (*Envelope, error) {
	if len(ber) > MaxEnvelopeSize {
		return nil, malformed("%d octets exceed the %d-octet limit", len(ber), MaxEnvelopeSize)
	}
	top := &reader{b: ber}
	ci, err := top.expect(tagSequence, "ContentInfo")
	if err != nil {
		return nil, err
	}
	if err := top.end("after ContentInfo"); err != nil {
		return nil, err
	}

	r := ci.children()
	if err := r.expectOID(oidEnvelopedData, "id-envelopedData", "ContentInfo.contentType"); err != nil {
		return nil, err
	}
	explicit, err := r.expect(tagContext0C, "ContentInfo.content")
	if err != nil {
		return nil, err
	}
	if err := r.end("ContentInfo"); err != nil {
		return nil, err
	}

	r = explicit.children()
	ed, err := r.expect(tagSequence, "EnvelopedData")
	if err != nil {
		return nil, err
	}
	if err := r.end("ContentInfo.content"); err != nil {
		return nil, err
	}

	env := new(Envelope)
	r = ed.children()
	if err := r.expectInt(envelopedDataVersion, "EnvelopedData.version"); err != nil {
		return nil, err
	}
	ris, err := r.expect(tagSet, "EnvelopedData.recipientInfos")
	if err != nil {
		return nil, err
	}
	if err := parseRecipientInfos(ris, env); err != nil {
		return nil, err
	}
	eci, err := r.expect(tagSequence, "EncryptedContentInfo")
	if err != nil {
		return nil, err
	}
	if err := parseEncryptedContentInfo(eci, env); err != nil {
		return nil, err
	}
	if err := r.end("EnvelopedData"); err != nil {
		return nil, err
	}
	return env, nil
}

// parseRecipientInfos reads the SET holding the single KeyTransRecipientInfo.
func parseRecipientInfos(set element, env *Envelope) error {
	r := set.children()
	ktri, err := r.expect(tagSequence, "KeyTransRecipientInfo")
	if err != nil {
		return err
	}
	if err := r.end("recipientInfos (only one recipient is supported)"); err != nil {
		return err
	}

	r = ktri.children()
	if err := r.expectInt(ktriVersion, "KeyTransRecipientInfo.version"); err != nil {
		return err
	}
	rid, err := r.expect(tagContext0, "KeyTransRecipientInfo.rid subjectKeyIdentifier")
	if err != nil {
		return err
	}
	if len(rid.body) != keyIDSize {
		return malformed("KeyTransRecipientInfo.rid: %d octets, want %d", len(rid.body), keyIDSize)
	}
	alg, err := r.expect(tagSequence, "KeyTransRecipientInfo.keyEncryptionAlgorithm")
	if err != nil {
		return err
	}
	if err := parseOAEPAlgorithm(alg); err != nil {
		return err
	}
	ek, err := r.expect(tagOctetString, "KeyTransRecipientInfo.encryptedKey")
	if err != nil {
		return err
	}
	if len(ek.body) == 0 {
		return malformed("KeyTransRecipientInfo.encryptedKey: empty")
	}
	if err := r.end("KeyTransRecipientInfo"); err != nil {
		return err
	}
	env.RecipientKeyID = clone(rid.body)
	env.EncryptedKey = clone(ek.body)
	return nil
}

// parseOAEPAlgorithm checks the AlgorithmIdentifier for RSAES-OAEP with
// hashFunc SHA-256, maskGenFunc MGF1-SHA-256 and the default (empty) label.
func parseOAEPAlgorithm(alg element) error {
	const what = "keyEncryptionAlgorithm"
	r := alg.children()
	if err := r.expectOID(oidRSAESOAEP, "id-RSAES-OAEP", what); err != nil {
		return err
	}
	params, err := r.expect(tagSequence, what+" RSAES-OAEP-params")
	if err != nil {
		return err
	}
	if err := r.end(what); err != nil {
		return err
	}

	r = params.children()
	hashFunc, err := r.expect(tagContext0C, "RSAES-OAEP-params.hashFunc (absent means SHA-1)")
	if err != nil {
		return err
	}
	if err := expectSHA256(hashFunc.children(), "RSAES-OAEP-params.hashFunc"); err != nil {
		return err
	}
	mgf, err := r.expect(tagContext1C, "RSAES-OAEP-params.maskGenFunc (absent means MGF1-SHA-1)")
	if err != nil {
		return err
	}
	if err := r.end("RSAES-OAEP-params (a pSourceFunc label is not supported)"); err != nil {
		return err
	}

	r = mgf.children()
	mgfAlg, err := r.expect(tagSequence, "RSAES-OAEP-params.maskGenFunc")
	if err != nil {
		return err
	}
	if err := r.end("RSAES-OAEP-params.maskGenFunc"); err != nil {
		return err
	}
	r = mgfAlg.children()
	if err := r.expectOID(oidMGF1, "id-mgf1", "maskGenFunc.algorithm"); err != nil {
		return err
	}
	return expectSHA256(r, "maskGenFunc.parameters")
}

// expectSHA256 reads an AlgorithmIdentifier for SHA-256 (parameters NULL or
// absent, as RFC 5754 allows) and checks that nothing follows it.
func expectSHA256(r *reader, what string) error {
	alg, err := r.expect(tagSequence, what)
	if err != nil {
		return err
	}
	if err := r.end(what); err != nil {
		return err
	}
	r = alg.children()
	if err := r.expectOID(oidSHA256, "sha256", what); err != nil {
		return err
	}
	if len(r.b) > 0 {
		null, err := r.expect(tagNull, what+" parameters")
		if err != nil {
			return err
		}
		if len(null.body) != 0 {
			return malformed("%s: NULL parameters with %d content octets", what, len(null.body))
		}
	}
	return r.end(what)
}

// parseEncryptedContentInfo reads the content type, the AES-256-CBC
// algorithm with its IV and the encrypted content.
func parseEncryptedContentInfo(eci element, env *Envelope) error {
	r := eci.children()
	if err := r.expectOID(oidData, "id-data", "EncryptedContentInfo.contentType"); err != nil {
		return err
	}
	alg, err := r.expect(tagSequence, "contentEncryptionAlgorithm")
	if err != nil {
		return err
	}
	ar := alg.children()
	if err := ar.expectOID(oidAES256CBC, "aes256-CBC", "contentEncryptionAlgorithm"); err != nil {
		return err
	}
	iv, err := ar.expect(tagOctetString, "contentEncryptionAlgorithm IV")
	if err != nil {
		return err
	}
	if len(iv.body) != ivSize {
		return malformed("contentEncryptionAlgorithm IV: %d octets, want %d", len(iv.body), ivSize)
	}
	if err := ar.end("contentEncryptionAlgorithm"); err != nil {
		return err
	}

	content, err := r.next("EncryptedContentInfo.encryptedContent")
	if err != nil {
		return err
	}
	var ct []byte
	switch content.tag {
	case tagContext0:
		ct = clone(content.body)
	case tagContext0C:
		cr := content.children()
		ct = []byte{}
		for i := 0; len(cr.b) > 0; i++ {
			chunk, err := cr.expect(tagOctetString, fmt.Sprintf("encryptedContent chunk %d (primitive OCTET STRING)", i))
			if err != nil {
				return err
			}
			ct = append(ct, chunk.body...)
		}
	default:
		return malformed("EncryptedContentInfo.encryptedContent: tag 0x%02x, want 0x%02x or 0x%02x", content.tag, tagContext0, tagContext0C)
	}
	if err := r.end("EncryptedContentInfo"); err != nil {
		return err
	}
	env.IV = clone(iv.body)
	env.Ciphertext = ct
	return nil
}

// clone returns a copy of b that is never nil.
func clone(b []byte) []byte {
	return append([]byte{}, b...)
}
