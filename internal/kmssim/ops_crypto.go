//go:build !nosim

package kmssim

import (
	"io"
)

const (
	symmetricDefault = "SYMMETRIC_DEFAULT"
	// maxDataKey is KMS's limit on NumberOfBytes for data keys and random
	// bytes.
	maxDataKey = 1024
)

// checkAlgorithm accepts the one encryption algorithm of symmetric keys.
func checkAlgorithm(member, alg string) *apiError {
	switch alg {
	case "", symmetricDefault:
		return nil
	case "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE":
		return errInvalidKeyUsage("The encryption algorithm %s is not valid for a symmetric encryption KMS key.", alg)
	default:
		return errEnum(member, alg, symmetricDefault, "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")
	}
}

// checkCiphertext validates a CiphertextBlob member.
func checkCiphertext(member string, blob []byte) *apiError {
	if blob == nil {
		return errNull(member)
	}
	if len(blob) == 0 || len(blob) > maxCiphertext {
		return errLength(member, 1, maxCiphertext)
	}
	return nil
}

// useKey authorizes action on k (with the Recipient's attestation, if
// any) and checks that k is usable, then refuses dry runs.
func (s *Server) useKey(c *call, action string, k *key, r *recipient, dryRun bool) *apiError {
	if aerr := s.authorize(c, action, k, r.document()); aerr != nil {
		return aerr
	}
	if aerr := s.usable(k); aerr != nil {
		return aerr
	}
	if dryRun {
		return errDryRun()
	}
	return nil
}

// sealFor encrypts plaintext under k with ctx as a ciphertext blob.
func (s *Server) sealFor(k *key, ctx map[string]string, plaintext []byte) ([]byte, *apiError) {
	blob, err := sealBlob(s.cfg.Rand, k.material, k.id, ctx, plaintext)
	if err != nil {
		s.log.Error("kmssim: seal", "key_id", k.id, "err", err)
		return nil, errInternal()
	}
	return blob, nil
}

type encryptRequest struct {
	KeyId               *string
	Plaintext           []byte
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
	DryRun              bool
}

func (s *Server) opEncrypt(c *call, body []byte) ([]byte, *apiError) {
	var req encryptRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	defer clear(req.Plaintext)
	switch {
	case req.Plaintext == nil:
		return nil, errNull("plaintext")
	case len(req.Plaintext) == 0 || len(req.Plaintext) > maxPlaintext:
		return nil, errLength("plaintext", 1, maxPlaintext)
	}
	if aerr := checkAlgorithm("encryptionAlgorithm", req.EncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.callKey(c, req.KeyId, "keyId", true)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.useKey(c, "kms:Encrypt", &k, nil, req.DryRun); aerr != nil {
		return nil, aerr
	}
	blob, aerr := s.sealFor(&k, req.EncryptionContext, req.Plaintext)
	if aerr != nil {
		return nil, aerr
	}
	return answer(struct {
		CiphertextBlob      []byte
		EncryptionAlgorithm string
		KeyId               string
	}{blob, symmetricDefault, s.keyARN(k.id)})
}

type decryptRequest struct {
	CiphertextBlob      []byte
	EncryptionContext   map[string]string
	KeyId               *string
	EncryptionAlgorithm string
	Recipient           *recipientInfo
	DryRun              bool
}

// blobKey finds the key a ciphertext blob was made with. If ref (the
// request's KeyId) is set it must name the same key.
func (s *Server) blobKey(blob []byte, ref *string, member string) (key, *apiError) {
	id, err := blobKeyID(blob)
	if err != nil {
		return key{}, errInvalidCiphertext()
	}
	if ref != nil {
		named, aerr := s.resolve(*ref, member, true)
		if aerr != nil {
			return key{}, aerr
		}
		if named.id != id {
			return key{}, errIncorrectKey()
		}
		return named, nil
	}
	return s.resolve(id, member, false)
}

func (s *Server) opDecrypt(c *call, body []byte) ([]byte, *apiError) {
	var req decryptRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := checkCiphertext("ciphertextBlob", req.CiphertextBlob); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm("encryptionAlgorithm", req.EncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	k, aerr := s.blobKey(req.CiphertextBlob, req.KeyId, "keyId")
	if aerr != nil {
		return nil, aerr
	}
	c.keyID = k.id
	r, aerr := s.verifyRecipient(c, req.Recipient)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.useKey(c, "kms:Decrypt", &k, r, req.DryRun); aerr != nil {
		return nil, aerr
	}
	pt, err := openBlob(k.material, req.EncryptionContext, req.CiphertextBlob)
	if err != nil {
		return nil, errInvalidCiphertext()
	}
	defer clear(pt)
	out := struct {
		CiphertextForRecipient []byte `json:",omitempty"`
		EncryptionAlgorithm    string
		KeyId                  string
		KeyMaterialId          string
		Plaintext              []byte `json:",omitempty"`
	}{EncryptionAlgorithm: symmetricDefault, KeyId: s.keyARN(k.id), KeyMaterialId: k.materialID}
	if r != nil {
		if out.CiphertextForRecipient, aerr = s.seal(r, pt); aerr != nil {
			return nil, aerr
		}
	} else {
		out.Plaintext = pt
	}
	return answer(out)
}

type reEncryptRequest struct {
	CiphertextBlob                 []byte
	SourceEncryptionContext        map[string]string
	SourceKeyId                    *string
	DestinationKeyId               *string
	DestinationEncryptionContext   map[string]string
	SourceEncryptionAlgorithm      string
	DestinationEncryptionAlgorithm string
	DryRun                         bool
}

func (s *Server) opReEncrypt(c *call, body []byte) ([]byte, *apiError) {
	var req reEncryptRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if aerr := checkCiphertext("ciphertextBlob", req.CiphertextBlob); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm("sourceEncryptionAlgorithm", req.SourceEncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	if aerr := checkAlgorithm("destinationEncryptionAlgorithm", req.DestinationEncryptionAlgorithm); aerr != nil {
		return nil, aerr
	}
	destRef, aerr := needKeyID(req.DestinationKeyId, "destinationKeyId")
	if aerr != nil {
		return nil, aerr
	}
	src, aerr := s.blobKey(req.CiphertextBlob, req.SourceKeyId, "sourceKeyId")
	if aerr != nil {
		return nil, aerr
	}
	dst, aerr := s.resolve(destRef, "destinationKeyId", true)
	if aerr != nil {
		return nil, aerr
	}
	c.keyID = src.id
	if aerr := s.useKey(c, "kms:ReEncryptFrom", &src, nil, false); aerr != nil {
		return nil, aerr
	}
	if aerr := s.useKey(c, "kms:ReEncryptTo", &dst, nil, req.DryRun); aerr != nil {
		return nil, aerr
	}
	pt, err := openBlob(src.material, req.SourceEncryptionContext, req.CiphertextBlob)
	if err != nil {
		return nil, errInvalidCiphertext()
	}
	defer clear(pt)
	blob, aerr := s.sealFor(&dst, req.DestinationEncryptionContext, pt)
	if aerr != nil {
		return nil, aerr
	}
	return answer(struct {
		CiphertextBlob                 []byte
		DestinationEncryptionAlgorithm string
		DestinationKeyMaterialId       string
		KeyId                          string
		SourceEncryptionAlgorithm      string
		SourceKeyId                    string
		SourceKeyMaterialId            string
	}{blob, symmetricDefault, dst.materialID, s.keyARN(dst.id), symmetricDefault, s.keyARN(src.id), src.materialID})
}

type generateDataKeyRequest struct {
	KeyId             *string
	KeySpec           string
	NumberOfBytes     *int32
	EncryptionContext map[string]string
	Recipient         *recipientInfo
	DryRun            bool
}

// dataKeySize returns the data key length that KeySpec or NumberOfBytes
// asks for; exactly one must be given.
func dataKeySize(req *generateDataKeyRequest) (int, *apiError) {
	switch {
	case (req.KeySpec == "") == (req.NumberOfBytes == nil):
		return 0, errValidation("Please specify either number of bytes or key spec.")
	case req.NumberOfBytes != nil:
		n := *req.NumberOfBytes
		if n < 1 || n > maxDataKey {
			return 0, errRange("numberOfBytes", int64(n), 1, maxDataKey)
		}
		return int(n), nil
	case req.KeySpec == "AES_256":
		return 32, nil
	case req.KeySpec == "AES_128":
		return 16, nil
	default:
		return 0, errEnum("keySpec", req.KeySpec, "AES_256", "AES_128")
	}
}

// generateDataKey is GenerateDataKey and, with plaintext false,
// GenerateDataKeyWithoutPlaintext (which takes no Recipient).
func (s *Server) generateDataKey(c *call, body []byte, action string, plaintext bool) ([]byte, *apiError) {
	var req generateDataKeyRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	n, aerr := dataKeySize(&req)
	if aerr != nil {
		return nil, aerr
	}
	k, aerr := s.callKey(c, req.KeyId, "keyId", true)
	if aerr != nil {
		return nil, aerr
	}
	var r *recipient
	if plaintext {
		if r, aerr = s.verifyRecipient(c, req.Recipient); aerr != nil {
			return nil, aerr
		}
	}
	if aerr := s.useKey(c, action, &k, r, req.DryRun); aerr != nil {
		return nil, aerr
	}
	dataKey := make([]byte, n)
	defer clear(dataKey)
	if _, err := io.ReadFull(s.cfg.Rand, dataKey); err != nil {
		s.log.Error("kmssim: generate data key", "err", err)
		return nil, errInternal()
	}
	blob, aerr := s.sealFor(&k, req.EncryptionContext, dataKey)
	if aerr != nil {
		return nil, aerr
	}
	out := struct {
		CiphertextBlob         []byte
		CiphertextForRecipient []byte `json:",omitempty"`
		KeyId                  string
		KeyMaterialId          string
		Plaintext              []byte `json:",omitempty"`
	}{CiphertextBlob: blob, KeyId: s.keyARN(k.id), KeyMaterialId: k.materialID}
	switch {
	case r != nil:
		if out.CiphertextForRecipient, aerr = s.seal(r, dataKey); aerr != nil {
			return nil, aerr
		}
	case plaintext:
		out.Plaintext = dataKey
	}
	return answer(out)
}

func (s *Server) opGenerateDataKey(c *call, body []byte) ([]byte, *apiError) {
	return s.generateDataKey(c, body, "kms:GenerateDataKey", true)
}

func (s *Server) opGenerateDataKeyWithoutPlaintext(c *call, body []byte) ([]byte, *apiError) {
	return s.generateDataKey(c, body, "kms:GenerateDataKeyWithoutPlaintext", false)
}

type generateRandomRequest struct {
	NumberOfBytes    *int32
	CustomKeyStoreId string
	Recipient        *recipientInfo
}

func (s *Server) opGenerateRandom(c *call, body []byte) ([]byte, *apiError) {
	var req generateRandomRequest
	if aerr := decode(body, &req); aerr != nil {
		return nil, aerr
	}
	if req.NumberOfBytes == nil {
		return nil, errNull("numberOfBytes")
	}
	if n := *req.NumberOfBytes; n < 1 || n > maxDataKey {
		return nil, errRange("numberOfBytes", int64(n), 1, maxDataKey)
	}
	if req.CustomKeyStoreId != "" {
		return nil, errUnsupported("kmssim does not support custom key stores.")
	}
	r, aerr := s.verifyRecipient(c, req.Recipient)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.authorizeAccount(c, "kms:GenerateRandom", r.document()); aerr != nil {
		return nil, aerr
	}
	random := make([]byte, *req.NumberOfBytes)
	defer clear(random)
	if _, err := io.ReadFull(s.cfg.Rand, random); err != nil {
		s.log.Error("kmssim: generate random", "err", err)
		return nil, errInternal()
	}
	var out struct {
		CiphertextForRecipient []byte `json:",omitempty"`
		Plaintext              []byte `json:",omitempty"`
	}
	if r != nil {
		if out.CiphertextForRecipient, aerr = s.seal(r, random); aerr != nil {
			return nil, aerr
		}
	} else {
		out.Plaintext = random
	}
	return answer(out)
}
