package seal_test

import (
	"bytes"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func testKEK(t testing.TB) []byte {
	k := make([]byte, seal.KEKSize)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func header(t testing.TB) *sealedv1.SealedKeyHeader {
	id, err := seal.NewID(seal.KeyIDPrefix)
	require.NoError(t, err)
	kid, err := seal.NewID(seal.KEKIDPrefix)
	require.NoError(t, err)
	return &sealedv1.SealedKeyHeader{
		KeyId: id, Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1, PublicKey: bytes.Repeat([]byte{4}, 65),
		KekId: kid, Labels: map[string]string{"team": "ops"}, State: signerv1.KeyState_KEY_STATE_ENABLED,
		CreatedAtUnixMs: 1700000000000, SealedAtUnixMs: 1700000000001, Generation: 3,
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	aead, err := seal.AEAD(testKEK(t))
	require.NoError(t, err)
	h := header(t)
	priv := bytes.Repeat([]byte{7}, 32)
	blob, err := seal.SealKey(aead, h, priv)
	require.NoError(t, err)

	k, err := seal.ParseKey(blob)
	require.NoError(t, err)
	require.True(t, proto.Equal(h, k.Header))
	got, err := k.Open(aead, nil)
	require.NoError(t, err)
	require.Equal(t, priv, got)

	var f seal.Fast
	require.NoError(t, seal.ParseFast(blob, &f))
	require.Equal(t, h.KeyId, seal.FormatID(seal.KeyIDPrefix, f.KeyID))
	require.Equal(t, h.KekId, seal.FormatID(seal.KEKIDPrefix, f.KEKID))
	require.EqualValues(t, 3, f.Generation)
	require.Equal(t, h.PublicKey, f.PublicKey)
	got, _, err = f.Open(aead, nil, nil)
	require.NoError(t, err)
	require.Equal(t, priv, got)

	other, err := seal.AEAD(testKEK(t))
	require.NoError(t, err)
	_, err = k.Open(other, nil)
	require.ErrorIs(t, err, seal.ErrOpen)
}

func TestKEKBlobRules(t *testing.T) {
	id, err := seal.NewID(seal.KEKIDPrefix)
	require.NoError(t, err)
	good := &sealedv1.SealedKEK{
		KekId: id, KmsKeyArn: "arn:aws:kms:us-east-1:111122223333:key/k",
		EncryptionContext: seal.KEKContext(id, 5), KmsCiphertext: []byte{1, 2, 3}, CreatedAtUnixMs: 5,
	}
	blob, err := seal.MarshalKEK(good)
	require.NoError(t, err)
	_, err = seal.ParseKEK(blob)
	require.NoError(t, err)

	for name, edit := range map[string]func(k *sealedv1.SealedKEK){
		"context value":  func(k *sealedv1.SealedKEK) { k.EncryptionContext[seal.ContextPurpose] = "x" },
		"context extra":  func(k *sealedv1.SealedKEK) { k.EncryptionContext["extra"] = "x" },
		"created_at":     func(k *sealedv1.SealedKEK) { k.CreatedAtUnixMs = 6 },
		"kek id":         func(k *sealedv1.SealedKEK) { k.KekId = "kek_zz" },
		"arn":            func(k *sealedv1.SealedKEK) { k.KmsKeyArn = "alias/x" },
		"no ciphertext":  func(k *sealedv1.SealedKEK) { k.KmsCiphertext = nil },
		"version":        func(k *sealedv1.SealedKEK) { k.Version = 2 },
		"unknown fields": func(k *sealedv1.SealedKEK) { k.ProtoReflect().SetUnknown([]byte{0xf8, 0x01, 0x01}) },
	} {
		t.Run(name, func(t *testing.T) {
			k := proto.Clone(good).(*sealedv1.SealedKEK)
			edit(k)
			b, err := proto.Marshal(k)
			require.NoError(t, err)
			_, err = seal.ParseKEK(b)
			require.Error(t, err)
		})
	}
}

// FuzzParse checks that the parsers never panic on hostile bytes and that
// the bulk-load parser accepts exactly what the full parser accepts.
func FuzzParse(f *testing.F) {
	aead, err := seal.AEAD(testKEK(f))
	require.NoError(f, err)
	blob, err := seal.SealKey(aead, header(f), bytes.Repeat([]byte{7}, 32))
	require.NoError(f, err)
	f.Add(blob)
	f.Add(blob[:len(blob)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, errFull := seal.ParseKey(b)
		var fast seal.Fast
		errFast := seal.ParseFast(b, &fast)
		_, _ = seal.ParseKEK(b)
		if (errFull == nil) != (errFast == nil) {
			// ParseKey rejects duplicate-field encodings protobuf merges and
			// ParseFast takes the last; both must then agree on content.
			if errFull == nil {
				t.Fatalf("ParseFast refused what ParseKey accepted: %v", errFast)
			}
			return
		}
		if errFull == nil {
			if seal.FormatID(seal.KeyIDPrefix, fast.KeyID) != k.Header.KeyId || fast.Generation != k.Header.Generation {
				t.Fatalf("parsers disagree")
			}
			_, _ = k.Open(aead, nil)
		}
	})
}

func TestParseIDRejectsNonHex(t *testing.T) {
	good := seal.KeyIDPrefix + "0123456789abcdef0123456789abcdef"
	id, ok := seal.ParseID(seal.KeyIDPrefix, good)
	require.True(t, ok)
	require.Equal(t, good, seal.FormatID(seal.KeyIDPrefix, id))
	for _, bad := range []string{
		seal.KeyIDPrefix + "0123456789ABCDEF0123456789abcdef",
		seal.KeyIDPrefix + "0123456789abcdef0123456789abcdeg",
		seal.KeyIDPrefix + "0123456789abcdef0123456789abcde",
		seal.KEKIDPrefix + "0123456789abcdef0123456789abcdef",
		"key_0123456789abcdef0123456789abcd\\x00f",
	} {
		_, ok := seal.ParseID(seal.KeyIDPrefix, bad)
		require.False(t, ok, bad)
	}
}
