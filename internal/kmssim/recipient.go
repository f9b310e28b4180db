//go:build !nosim

package kmssim

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	"github.com/nitrosigner/nitrosigner/internal/cms"
)

// Recipient constants (nitro-reference §3.1).
const (
	keyEncryptionRSAOAEPSHA256 = "RSAES_OAEP_SHA_256"
	maxAttestationDocument     = 262144
	recipientKeyBits           = 2048

	// cmsChunkSize selects the constructed encryptedContent form with one
	// chunk for every answer up to 1 KiB, the form of three of the four
	// real KMS answers in shared/testdata/kms_cms. KMS's real chunk size is
	// unknown [I].
	cmsChunkSize = 1024
)

// recipientInfo is the Recipient request member.
type recipientInfo struct {
	AttestationDocument    []byte
	KeyEncryptionAlgorithm string
}

// recipient is a verified Recipient: the attestation document and the RSA
// key the answer is encrypted to.
type recipient struct {
	doc *attest.Document
	pub *rsa.PublicKey
}

// verifyRecipient checks a Recipient and returns nil for a request without
// one. In order: the key encryption algorithm must be RSAES_OAEP_SHA_256
// (the only valid value; the API marks the member optional, so an absent
// one is taken as that value [I]);
// the document must verify with internal/attest against [Config.NSMRoots]
// at [Config.Now], debug-mode documents only with [Config.AllowDebug]; its
// public_key must be an RSA-2048 SubjectPublicKeyInfo.
//
// Which error code KMS uses for a bad or untrusted document is
// undocumented; ValidationException is a guess [I].
func (s *Server) verifyRecipient(c *call, ri *recipientInfo) (*recipient, *apiError) {
	if ri == nil {
		return nil, nil
	}
	switch ri.KeyEncryptionAlgorithm {
	case keyEncryptionRSAOAEPSHA256, "":
	default:
		return nil, errEnum("recipient.keyEncryptionAlgorithm", ri.KeyEncryptionAlgorithm, keyEncryptionRSAOAEPSHA256)
	}
	if len(ri.AttestationDocument) == 0 || len(ri.AttestationDocument) > maxAttestationDocument {
		return nil, errLength("recipient.attestationDocument", 1, maxAttestationDocument)
	}
	roots := s.cfg.NSMRoots
	if roots == nil {
		roots = []*x509.Certificate{} // trust nothing, not attest's AWS default
	}
	doc, err := attest.Verify(ri.AttestationDocument, attest.Options{
		Roots:      roots,
		Now:        s.cfg.Now(),
		AllowDebug: s.cfg.AllowDebug,
	})
	if err != nil {
		s.log.Info("kmssim: recipient refused", "method", c.op, "principal", c.principal, "err", err)
		if errors.Is(err, attest.ErrDebugMode) {
			return nil, errValidation("The attestation document comes from an enclave in debug mode.")
		}
		return nil, errValidation("The attestation document in the Recipient is not valid.")
	}
	if len(doc.PublicKey) == 0 {
		return nil, errValidation("The attestation document in the Recipient has no public key.")
	}
	parsed, err := x509.ParsePKIXPublicKey(doc.PublicKey)
	pub, ok := parsed.(*rsa.PublicKey)
	if err != nil || !ok || pub.N.BitLen() != recipientKeyBits {
		return nil, errValidation("The public key in the attestation document must be an RSA-2048 key in DER SubjectPublicKeyInfo form.")
	}
	return &recipient{doc: doc, pub: pub}, nil
}

// document returns the verified attestation document, or nil.
func (r *recipient) document() *attest.Document {
	if r == nil {
		return nil
	}
	return r.doc
}

// seal encrypts plaintext to the recipient as CiphertextForRecipient.
func (s *Server) seal(r *recipient, plaintext []byte) ([]byte, *apiError) {
	out, err := cms.Encrypt(s.cfg.Rand, r.pub, plaintext, cms.EncryptOptions{ChunkSize: cmsChunkSize})
	if err != nil {
		s.log.Error("kmssim: build CiphertextForRecipient", "err", err)
		return nil, errInternal()
	}
	return out, nil
}
