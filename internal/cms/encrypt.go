package cms

import (
	"crypto/aes"
	"crypto/cipher"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// EncryptOptions selects the encryptedContent form. Zero value: primitive form.
type EncryptOptions struct {
	// ChunkSize > 0 selects the constructed form: an indefinite-length [0]
	// holding OCTET STRING chunks of at most ChunkSize bytes. Zero selects
	// the primitive form [0] IMPLICIT OCTET STRING. KMS has been seen to
	// emit both; its chunk size is unknown.
	ChunkSize int
}

// Encrypt builds a CiphertextForRecipient for pub in exactly the byte layout
// KMS emits (indefinite outer containers, definite SET/KTRI), with a fresh
// random CEK and IV from rand.
//
// rand supplies, in this order, the 32-byte CEK, the 16-byte IV and the
// OAEP seed, so a deterministic reader gives deterministic output; nil means
// crypto/rand.Reader. Lengths use the shortest (DER) form. Encrypt fails if
// pub is nil or too small for RSA-OAEP-SHA256 of 32 bytes, if
// opts.ChunkSize is negative, if rand fails, or if the envelope would exceed
// [MaxEnvelopeSize]. The CEK is zeroized before Encrypt returns.
func Encrypt(rand io.Reader, pub *rsa.PublicKey, plaintext []byte, opts EncryptOptions) ([]byte, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	if opts.ChunkSize < 0 {
		return nil, fmt.Errorf("cms: negative chunk size %d", opts.ChunkSize)
	}
	if len(plaintext) >= MaxEnvelopeSize {
		return nil, fmt.Errorf("cms: %d-byte plaintext does not fit the %d-byte envelope limit", len(plaintext), MaxEnvelopeSize)
	}
	id, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}

	secret := make([]byte, cekSize+ivSize)
	defer clear(secret)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return nil, fmt.Errorf("cms: read key and iv: %w", err)
	}
	cek, iv := secret[:cekSize], secret[cekSize:]
	ek, err := rsa.EncryptOAEP(sha256.New(), rand, pub, cek, nil)
	if err != nil {
		return nil, fmt.Errorf("cms: wrap content key: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: content cipher: %w", err)
	}

	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	ct := make([]byte, len(plaintext)+pad)
	copy(ct, plaintext)
	for i := len(plaintext); i < len(ct); i++ {
		ct[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)

	out := encode(&Envelope{RecipientKeyID: id, EncryptedKey: ek, IV: clone(iv), Ciphertext: ct}, opts.ChunkSize)
	if len(out) > MaxEnvelopeSize {
		return nil, errors.New("cms: envelope exceeds the size limit")
	}
	return out, nil
}

// encode writes env in KMS's layout; chunkSize > 0 selects the constructed
// encryptedContent form.
func encode(env *Envelope, chunkSize int) []byte {
	var content []byte
	if chunkSize <= 0 {
		content = tlv(tagContext0, env.Ciphertext)
	} else {
		var chunks [][]byte
		for ct := env.Ciphertext; len(ct) > 0; {
			n := min(chunkSize, len(ct))
			chunks = append(chunks, tlv(tagOctetString, ct[:n]))
			ct = ct[n:]
		}
		content = indefinite(tagContext0C, chunks...)
	}

	sha256Alg := tlv(tagSequence, tlv(tagOID, oidSHA256), tlv(tagNull))
	oaepAlg := tlv(tagSequence,
		tlv(tagOID, oidRSAESOAEP),
		tlv(tagSequence,
			tlv(tagContext0C, sha256Alg),
			tlv(tagContext1C, tlv(tagSequence, tlv(tagOID, oidMGF1), sha256Alg))))
	ktri := tlv(tagSequence,
		tlv(tagInteger, []byte{ktriVersion}),
		tlv(tagContext0, env.RecipientKeyID),
		oaepAlg,
		tlv(tagOctetString, env.EncryptedKey))
	eci := indefinite(tagSequence,
		tlv(tagOID, oidData),
		tlv(tagSequence, tlv(tagOID, oidAES256CBC), tlv(tagOctetString, env.IV)),
		content)
	return indefinite(tagSequence,
		tlv(tagOID, oidEnvelopedData),
		indefinite(tagContext0C,
			indefinite(tagSequence,
				tlv(tagInteger, []byte{envelopedDataVersion}),
				tlv(tagSet, ktri),
				eci)))
}

// tlv encodes a definite-length element with the shortest length form.
func tlv(tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n <= 0xff:
		out = append(out, 0x81, byte(n))
	case n <= 0xffff:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// indefinite encodes a constructed indefinite-length element.
func indefinite(tag byte, parts ...[]byte) []byte {
	out := []byte{tag, 0x80}
	for _, p := range parts {
		out = append(out, p...)
	}
	return append(out, 0x00, 0x00)
}
