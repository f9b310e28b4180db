package eth

import (
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"golang.org/x/crypto/sha3"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Input limits. They are far above what real payloads need and keep the work
// per request bounded.
const (
	// MaxTxSize bounds an encoded transaction (unsigned RLP, or the encoding
	// of a fields-form transaction). It equals go-ethereum's 128 KiB pool limit.
	MaxTxSize = 128 << 10
	// MaxMessageSize bounds an EIP-191 personal message.
	MaxMessageSize = 64 << 10
	// MaxTypedDataSize bounds EIP-712 JSON.
	MaxTypedDataSize = 128 << 10
)

// payloadError is an error in the caller's payload. It wraps
// sign.ErrInvalidPayload without adding that sentinel's text, so that the
// message reads "field: problem".
type payloadError struct{ msg string }

func (e *payloadError) Error() string { return e.msg }
func (e *payloadError) Unwrap() error { return sign.ErrInvalidPayload }

// invalid makes a payload error for field.
func invalid(field, format string, args ...any) error {
	return &payloadError{msg: field + ": " + fmt.Sprintf(format, args...)}
}

// quote quotes untrusted text for an error message, cut to a readable length.
func quote(s string) string {
	const max = 48
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return fmt.Sprintf("%q...", s[:cut])
	}
	return fmt.Sprintf("%q", s)
}

func keccak256(parts ...[]byte) []byte {
	h := sha3.NewLegacyKeccak256()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// Address returns the EIP-55 checksummed address of a SEC1 uncompressed
// (65-byte) secp256k1 public key. The key comes from the keyring, so a bad key
// is a plain error (not [sign.ErrInvalidPayload]).
func Address(pub []byte) (string, error) {
	if len(pub) != 65 || pub[0] != 0x04 {
		return "", fmt.Errorf("eth: public key must be 65-byte SEC1 uncompressed, got %d bytes", len(pub))
	}
	if _, err := secp256k1.ParsePubKey(pub); err != nil {
		return "", fmt.Errorf("eth: public key: %w", err)
	}
	return checksumAddress(keccak256(pub[1:])[12:]), nil
}

// checksumAddress formats a 20-byte address with the EIP-55 mixed-case
// checksum.
func checksumAddress(addr []byte) string {
	lower := hex.EncodeToString(addr)
	h := keccak256([]byte(lower))
	out := []byte("0x" + lower)
	for i := range 40 {
		c := out[2+i]
		nibble := h[i/2] >> 4
		if i%2 == 1 {
			nibble = h[i/2] & 0x0f
		}
		if c >= 'a' && nibble >= 8 {
			out[2+i] = c - 'a' + 'A'
		}
	}
	return string(out)
}

// parseAddress decodes a 0x-prefixed 20-byte hex address. All-lowercase and
// all-uppercase hex are accepted as is; mixed case must carry a correct EIP-55
// checksum, since a wrong one means the address was mistyped.
func parseAddress(s string) ([]byte, error) {
	if len(s) != 42 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return nil, fmt.Errorf("must be a 0x-prefixed 20-byte hex address, got %s", quote(s))
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, fmt.Errorf("must be a 0x-prefixed 20-byte hex address, got %s", quote(s))
	}
	var upper, lower bool
	for _, c := range s[2:] {
		upper = upper || (c >= 'A' && c <= 'F')
		lower = lower || (c >= 'a' && c <= 'f')
	}
	if upper && lower {
		if want := checksumAddress(b); want[2:] != s[2:] {
			return nil, fmt.Errorf("bad EIP-55 checksum in %s (want %s)", s, want)
		}
	}
	return b, nil
}

// parseHexBytes decodes 0x-prefixed hex with an even number of digits.
func parseHexBytes(s string, max int) ([]byte, error) {
	if len(s) < 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') {
		return nil, fmt.Errorf("must be 0x-prefixed hex, got %s", quote(s))
	}
	if (len(s)-2)/2 > max {
		return nil, fmt.Errorf("is %d bytes, limit %d", (len(s)-2)/2, max)
	}
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("hex has an odd number of digits: %s", quote(s))
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, fmt.Errorf("must be 0x-prefixed hex, got %s", quote(s))
	}
	return b, nil
}

// signDigest signs a 32-byte digest with ds, a secp256k1 signer, and
// returns r || s || recovery id (low-S).
func signDigest(ds sign.DigestSigner, priv, digest []byte) ([]byte, error) {
	if ds == nil {
		return nil, errors.New("eth: no secp256k1 signer")
	}
	sig, err := ds.SignDigest(priv, digest)
	if err != nil {
		return nil, fmt.Errorf("eth: sign: %w", err)
	}
	if len(sig) != 65 || sig[64] > 1 {
		return nil, fmt.Errorf("eth: unexpected signature shape from secp256k1 scheme")
	}
	return sig, nil
}

// signEIP191 signs a message-style digest and answers with v = 27 + id.
func signEIP191(ds sign.DigestSigner, priv, pub, digest []byte, summary *signerv1.EthSummary) (*signerv1.SignResponse, error) {
	from, err := Address(pub)
	if err != nil {
		return nil, err
	}
	sig, err := signDigest(ds, priv, digest)
	if err != nil {
		return nil, err
	}
	sig[64] += 27
	summary.From = from
	summary.Digest = digest
	return &signerv1.SignResponse{
		Signature:    sig,
		EthSignature: &signerv1.EthSignature{V: uint64(sig[64]), R: sig[:32:32], S: sig[32:64:64]},
		Summary:      &signerv1.PayloadSummary{Chain: &signerv1.PayloadSummary_Ethereum{Ethereum: summary}},
	}, nil
}

// SignPersonalMessage signs an EIP-191 version 0x45 message (personal_sign):
// the digest is keccak256("\x19Ethereum Signed Message:\n" || decimal length
// || msg). Signature is r || s || v with v = 27 + recovery id; Summary has
// kind "personal_message", the message length and the digest. An empty
// message or one over [MaxMessageSize] bytes is refused with an error that
// wraps [sign.ErrInvalidPayload]; key errors do not wrap it.
func SignPersonalMessage(ds sign.DigestSigner, priv, pub, msg []byte) (*signerv1.SignResponse, error) {
	const field = "eth_personal_message"
	switch {
	case len(msg) == 0:
		return nil, invalid(field, "empty message")
	case len(msg) > MaxMessageSize:
		return nil, invalid(field, "is %d bytes, limit %d", len(msg), MaxMessageSize)
	}
	prefix := fmt.Sprintf("\x19Ethereum Signed Message:\n%d", len(msg))
	digest := keccak256([]byte(prefix), msg)
	return signEIP191(ds, priv, pub, digest, &signerv1.EthSummary{
		Kind:          "personal_message",
		MessageLength: uint32(len(msg)),
	})
}
