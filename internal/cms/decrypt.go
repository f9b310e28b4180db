package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Decrypt parses ber, checks that the recipient identifier matches priv's
// public key, unwraps the CEK with RSA-OAEP-SHA256 and returns the
// AES-256-CBC-decrypted, unpadded plaintext. Padding and OAEP failures give
// one generic error (no oracle). The CEK is zeroized.
//
// Errors: [ErrMalformed] (wrapped, with detail) when [Parse] rejects ber;
// [ErrWrongRecipient] when the envelope is addressed to another key;
// [ErrDecrypt], never wrapped with detail, when the encrypted key does not
// match the modulus size, the OAEP unwrap fails, the unwrapped key is not 32
// bytes, the ciphertext is not a positive multiple of 16 bytes or the PKCS#7
// padding is invalid.
//
// The envelope is not authenticated: CMS EnvelopedData with AES-CBC has no
// MAC, and anyone holding the public key can build a valid envelope. Trust
// the plaintext only as far as you trust the channel that delivered ber.
// The returned slice is owned by the caller, who should clear it when done.
func Decrypt(priv *rsa.PrivateKey, ber []byte) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("cms: nil RSA private key")
	}
	env, err := Parse(ber)
	if err != nil {
		return nil, err
	}
	id, err := SubjectKeyID(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(env.RecipientKeyID, id) {
		return nil, fmt.Errorf("%w: rid %x, key %x", ErrWrongRecipient, env.RecipientKeyID, id)
	}
	if len(env.EncryptedKey) != priv.Size() ||
		len(env.Ciphertext) == 0 || len(env.Ciphertext)%aes.BlockSize != 0 {
		return nil, ErrDecrypt
	}

	cek, err := rsa.DecryptOAEP(sha256.New(), nil, priv, env.EncryptedKey, nil)
	if err != nil {
		return nil, ErrDecrypt
	}
	defer clear(cek)
	if len(cek) != cekSize {
		return nil, ErrDecrypt
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, ErrDecrypt
	}
	pt := env.Ciphertext // a fresh copy made by Parse; decrypted in place
	cipher.NewCBCDecrypter(block, env.IV).CryptBlocks(pt, pt)
	n, ok := unpad(pt)
	if !ok {
		clear(pt)
		return nil, ErrDecrypt
	}
	clear(pt[n:])
	return pt[:n:n], nil
}

// unpad checks PKCS#7 padding in constant time for a given length and
// returns the plaintext length. len(b) must be a positive multiple of the
// AES block size.
func unpad(b []byte) (int, bool) {
	pad := int(b[len(b)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		same := subtle.ConstantTimeByteEq(b[len(b)-i], byte(pad))
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	return len(b) - pad, good == 1
}
