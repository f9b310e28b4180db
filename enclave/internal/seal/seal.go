// Package seal implements the sealed formats of DESIGN.md section 3 and
// docs/sealing.md: wallet keys sealed with AES-256-GCM under a KEK, whose
// additional data is the blob's whole header, and KEK blobs that carry a KMS
// ciphertext bound to the KEK's identity by the KMS EncryptionContext.
//
// It runs inside the enclave on blobs the untrusted parent hands in, so every
// parser here treats its input as hostile. Nothing here talks to KMS or
// caches keys; see the keyring for that.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Format constants.
const (
	// Version is the format version written by this package, for both
	// SealedKey and SealedKEK.
	Version = 1
	// KEKSize is the length of a KEK: an AES-256 key.
	KEKSize = 32
	// NonceSize is the GCM nonce length.
	NonceSize = 12
	// MaxBlobSize bounds the blobs this package parses.
	MaxBlobSize = 64 << 10
	// KEKIDPrefix starts every KEK id; 32 lowercase hex digits follow.
	KEKIDPrefix = "kek_"
	// KeyIDPrefix starts every key id; 32 lowercase hex digits follow.
	KeyIDPrefix = "key_"
	// Purpose is the value of the KEK context's purpose entry.
	Purpose = "kek/v1"
	// ContextKEKID, ContextPurpose and ContextCreated are the KMS
	// EncryptionContext keys of a KEK.
	ContextKEKID   = "nitrosigner:kek-id"
	ContextPurpose = "nitrosigner:purpose"
	ContextCreated = "nitrosigner:created-at-ms"
)

// aadPrefix separates sealed-key additional data from anything else ever
// authenticated with a KEK.
const aadPrefix = "nitrosigner/sealed-key/v1\x00"

// Errors callers branch on. Messages never contain key material.
var (
	// ErrMalformed means a blob does not decode or breaks a format rule.
	ErrMalformed = errors.New("malformed sealed blob")
	// ErrOpen means authenticated decryption failed: the blob was altered,
	// moved to another identity, or sealed under another KEK.
	ErrOpen = errors.New("sealed key does not open under its KEK (altered, swapped or wrong KEK)")
	// ErrUnsupportedVersion means the blob has a format version this build
	// does not read.
	ErrUnsupportedVersion = errors.New("unsupported sealed format version")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// ValidID reports whether s is prefix followed by 32 lowercase hex digits.
func ValidID(prefix, s string) bool {
	if len(s) != len(prefix)+32 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for _, c := range s[len(prefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// NewID returns prefix followed by 16 random bytes in hex.
func NewID(prefix string) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("seal: random id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

// KEKContext returns the KMS EncryptionContext that binds a KEK to its id
// and creation time: every field of a SealedKEK is then either checked by
// the enclave or by KMS, so no byte of it can change unnoticed.
func KEKContext(kekID string, createdAtUnixMs int64) map[string]string {
	return map[string]string{
		ContextKEKID: kekID, ContextPurpose: Purpose, ContextCreated: strconv.FormatInt(createdAtUnixMs, 10),
	}
}

// AEAD returns the AES-256-GCM cipher for a KEK. The caller keeps it with
// the KEK (it holds the expanded key) and drops both together.
func AEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("seal: KEK must be %d bytes, got %d", KEKSize, len(kek))
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

// SealKey seals priv under aead (the KEK of hdr.KekId) and returns the
// encoded SealedKey. hdr.Version is set to [Version].
func SealKey(aead cipher.AEAD, hdr *sealedv1.SealedKeyHeader, priv []byte) ([]byte, error) {
	hdr.Version = Version
	if err := checkHeader(hdr); err != nil {
		return nil, err
	}
	hb, err := proto.MarshalOptions{Deterministic: true}.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("seal: encode header: %w", err)
	}
	nonce := make([]byte, NonceSize)
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	ct := aead.Seal(nil, nonce, priv, aad(hb))
	return proto.Marshal(&sealedv1.SealedKey{Version: Version, Header: hb, Nonce: nonce, Ciphertext: ct})
}

func aad(header []byte) []byte {
	return append([]byte(aadPrefix), header...)
}

// Key is a parsed SealedKey. Header fields are decoded but not yet
// authenticated: only [Key.Open] proves them.
type Key struct {
	Header      *sealedv1.SealedKeyHeader
	headerBytes []byte
	nonce       []byte
	ciphertext  []byte
}

// ParseKey decodes a SealedKey blob and its whole header and checks the
// format rules (those of [ParseFast], plus a well-formed label map). It
// does not decrypt.
func ParseKey(blob []byte) (*Key, error) {
	var f Fast
	if err := ParseFast(blob, &f); err != nil {
		return nil, err
	}
	var hdr sealedv1.SealedKeyHeader
	if err := proto.Unmarshal(f.header, &hdr); err != nil {
		return nil, malformed("header does not decode")
	}
	return &Key{Header: &hdr, headerBytes: f.header, nonce: f.nonce, ciphertext: f.ciphertext}, nil
}

func checkHeader(h *sealedv1.SealedKeyHeader) error {
	switch {
	case !ValidID(KeyIDPrefix, h.KeyId):
		return malformed("key_id is not a valid key id")
	case !ValidID(KEKIDPrefix, h.KekId):
		return malformed("kek_id is not a valid KEK id")
	case h.Algorithm == signerv1.Algorithm_ALGORITHM_UNSPECIFIED:
		return malformed("algorithm is unspecified")
	case len(h.PublicKey) == 0 || len(h.PublicKey) > 133:
		return malformed("public_key has %d bytes", len(h.PublicKey))
	case h.State != signerv1.KeyState_KEY_STATE_ENABLED && h.State != signerv1.KeyState_KEY_STATE_DISABLED:
		return malformed("state %d is not enabled or disabled", h.State)
	}
	return nil
}

// Open decrypts the private key with aead, which must be the KEK named by
// the header, and appends it to dst. The caller zeroizes the result.
func (k *Key) Open(aead cipher.AEAD, dst []byte) ([]byte, error) {
	out, err := aead.Open(dst, k.nonce, k.ciphertext, aad(k.headerBytes))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// KEK is a parsed SealedKEK.
type KEK = sealedv1.SealedKEK

// ParseKEK decodes a SealedKEK blob and checks that its stored
// EncryptionContext is exactly the one its id implies.
func ParseKEK(blob []byte) (*KEK, error) {
	if len(blob) > MaxBlobSize {
		return nil, malformed("sealed KEK is %d bytes, limit %d", len(blob), MaxBlobSize)
	}
	var k sealedv1.SealedKEK
	if err := proto.Unmarshal(blob, &k); err != nil {
		return nil, malformed("sealed KEK does not decode")
	}
	if k.Version != Version {
		return nil, fmt.Errorf("%w: sealed KEK version %d", ErrUnsupportedVersion, k.Version)
	}
	if len(k.ProtoReflect().GetUnknown()) != 0 {
		return nil, malformed("sealed KEK has unknown fields")
	}
	switch {
	case !ValidID(KEKIDPrefix, k.KekId):
		return nil, malformed("kek_id is not a valid KEK id")
	case !strings.HasPrefix(k.KmsKeyArn, "arn:"):
		return nil, malformed("kms_key_arn is not an ARN")
	case len(k.KmsCiphertext) == 0:
		return nil, malformed("kms_ciphertext is empty")
	case k.CreatedAtUnixMs <= 0:
		return nil, malformed("created_at_unix_ms must be positive")
	case !maps.Equal(k.EncryptionContext, KEKContext(k.KekId, k.CreatedAtUnixMs)):
		return nil, malformed("encryption_context does not match the KEK id")
	}
	return &k, nil
}

// MarshalKEK encodes a SealedKEK with [Version] set.
func MarshalKEK(k *KEK) ([]byte, error) {
	k.Version = Version
	return proto.MarshalOptions{Deterministic: true}.Marshal(k)
}

// Fast is the part of a sealed key the keyring needs to load it, decoded
// without allocation. Fields reference the blob.
type Fast struct {
	KeyID      [16]byte
	KEKID      [16]byte
	Algorithm  signerv1.Algorithm
	State      signerv1.KeyState
	Generation uint64
	PublicKey  []byte
	header     []byte
	nonce      []byte
	ciphertext []byte
}

// ParseFast decodes blob into f. It accepts exactly what [ParseKey] accepts
// for the fields it reads and rejects unknown fields; labels and times are
// skipped. It is the bulk-load path: no allocation.
func ParseFast(blob []byte, f *Fast) error {
	*f = Fast{}
	if len(blob) > MaxBlobSize {
		return malformed("sealed key is %d bytes, limit %d", len(blob), MaxBlobSize)
	}
	var version uint64
	var haveVersion bool
	for b := blob; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("sealed key does not decode")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return malformed("sealed key does not decode")
			}
			version, haveVersion, b = v, true, b[n:]
		case num >= 2 && num <= 4 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return malformed("sealed key does not decode")
			}
			switch num {
			case 2:
				f.header = v
			case 3:
				f.nonce = v
			case 4:
				f.ciphertext = v
			}
			b = b[n:]
		default:
			return malformed("sealed key has unknown or mistyped field %d", num)
		}
	}
	if !haveVersion || version != Version {
		return fmt.Errorf("%w: sealed key version %d", ErrUnsupportedVersion, version)
	}
	if len(f.nonce) != NonceSize {
		return malformed("nonce must be %d bytes, got %d", NonceSize, len(f.nonce))
	}
	if len(f.ciphertext) < 16 {
		return malformed("ciphertext too short")
	}
	var hv uint64
	var haveKeyID, haveKEKID bool
	for b := f.header; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("header does not decode")
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return malformed("header does not decode")
			}
			b = b[n:]
			switch num {
			case 1:
				hv = v
			case 3:
				f.Algorithm = signerv1.Algorithm(int32(v))
			case 7:
				f.State = signerv1.KeyState(int32(v))
			case 8, 9:
			case 10:
				f.Generation = v
			default:
				return malformed("header has unknown or mistyped field %d", num)
			}
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return malformed("header does not decode")
			}
			b = b[n:]
			switch num {
			case 2:
				if !decodeID(KeyIDPrefix, v, &f.KeyID) {
					return malformed("key_id is not a valid key id")
				}
				haveKeyID = true
			case 4:
				f.PublicKey = v
			case 5:
				if !decodeID(KEKIDPrefix, v, &f.KEKID) {
					return malformed("kek_id is not a valid KEK id")
				}
				haveKEKID = true
			case 6:
			default:
				return malformed("header has unknown or mistyped field %d", num)
			}
		default:
			return malformed("header has unknown or mistyped field %d", num)
		}
	}
	switch {
	case hv != version:
		return malformed("header version %d differs from blob version %d", hv, version)
	case !haveKeyID:
		return malformed("key_id is not a valid key id")
	case !haveKEKID:
		return malformed("kek_id is not a valid KEK id")
	case f.Algorithm == signerv1.Algorithm_ALGORITHM_UNSPECIFIED:
		return malformed("algorithm is unspecified")
	case len(f.PublicKey) == 0 || len(f.PublicKey) > 133:
		return malformed("public_key has %d bytes", len(f.PublicKey))
	case f.State != signerv1.KeyState_KEY_STATE_ENABLED && f.State != signerv1.KeyState_KEY_STATE_DISABLED:
		return malformed("state %d is not enabled or disabled", f.State)
	}
	return nil
}

// Open decrypts the private key of a fast-parsed blob into dst[:0]; see
// [Key.Open]. A scratch buffer for the additional data is taken from aadBuf
// to avoid allocation.
func (f *Fast) Open(aead cipher.AEAD, dst, aadBuf []byte) ([]byte, []byte, error) {
	aadBuf = append(append(aadBuf[:0], aadPrefix...), f.header...)
	out, err := aead.Open(dst[:0], f.nonce, f.ciphertext, aadBuf)
	if err != nil {
		return nil, aadBuf, ErrOpen
	}
	return out, aadBuf, nil
}

// decodeID decodes prefix followed by 32 lowercase hex digits, without
// allocating (it runs twice per key on the bulk-load path).
func decodeID(prefix string, v []byte, out *[16]byte) bool {
	if len(v) != len(prefix)+32 || string(v[:len(prefix)]) != prefix {
		return false
	}
	h := v[len(prefix):]
	var bad byte
	for i := range out {
		hi, lo := hexVal[h[2*i]], hexVal[h[2*i+1]]
		bad |= hi | lo
		out[i] = hi<<4 | lo&0x0f
	}
	return bad&0x10 == 0
}

// hexVal maps a lowercase hex digit to its value and anything else to
// 0x10, which decodeID detects.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0x10
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

// FormatID renders a binary id with its prefix.
func FormatID(prefix string, id [16]byte) string {
	return prefix + hex.EncodeToString(id[:])
}

// ParseID decodes "prefix + 32 hex" into its 16 bytes.
func ParseID(prefix, s string) ([16]byte, bool) {
	var out [16]byte
	ok := decodeID(prefix, []byte(s), &out)
	return out, ok
}
