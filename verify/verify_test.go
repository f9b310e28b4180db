package verify_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/verify"
)

// realDoc describes one real AWS document in testdata/.
type realDoc struct {
	file      string
	ts        int64 // document timestamp, unix ms
	windowEnd int64 // last second all certificates are valid, unix s
	debug     bool
}

var (
	blocky      = realDoc{"att_blocky_2024-09-07.cbor", 1725719859545, 1725730659, false}
	blockyDebug = realDoc{"att_blocky_debug_2024-09-07.cbor", 1725719886508, 1725730686, true}
	hfDebug     = realDoc{"att_hf_nitrite_pr2_debug_2021-10-28.cbor", 1635440522077, 1635443053, true}
)

const (
	blockyPCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
	blockyPCR4 = "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44"
	hfNonce    = "54caa7fdd9c1de6f1206e4900d57b61eb759d628"
	blockyID   = "i-0a22e5c5f24d22174-enc0191cceb4289903f"
)

func (d realDoc) read(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", d.file))
	require.NoError(t, err)
	return b
}

func (d realDoc) at(offset time.Duration) func() time.Time {
	return func() time.Time { return time.UnixMilli(d.ts).Add(offset) }
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// flip returns a copy of b with byte i inverted.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0xff
	return c
}

// flipBit returns a copy of b with the low bit of byte i inverted, which
// keeps ASCII text valid UTF-8.
func flipBit(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

func TestVerifyRealDocuments(t *testing.T) {
	doc := blocky.read(t)
	ones := bytes.Repeat([]byte{1}, 1024)
	otherRoot, err := x509.ParseCertificate(verify.AWSRoot().Raw)
	require.NoError(t, err)
	otherRoot.Raw = flip(otherRoot.Raw, 200) // same shape, different bytes

	tests := []struct {
		name    string
		doc     []byte
		opts    verify.Options
		wantErr error
	}{
		{"at its timestamp", doc, verify.Options{Now: blocky.at(0)}, nil},
		{"all checks", doc, verify.Options{Now: blocky.at(time.Minute), Nonce: ones, PCRs: map[int][]byte{0: mustHex(t, blockyPCR0), 4: mustHex(t, blockyPCR4)}}, nil},
		{"explicit aws root", doc, verify.Options{Now: blocky.at(0), Roots: []*x509.Certificate{verify.AWSRoot()}}, nil},
		{"window end without freshness check", doc, verify.Options{Now: func() time.Time { return time.Unix(blocky.windowEnd, 0) }, MaxAge: -1}, nil},
		{"stale by default", doc, verify.Options{Now: blocky.at(verify.DefaultMaxAge + time.Second)}, verify.ErrStale},
		{"stale by option", doc, verify.Options{Now: blocky.at(2 * time.Minute), MaxAge: time.Minute}, verify.ErrStale},
		{"leaf expired", doc, verify.Options{Now: func() time.Time { return time.Unix(blocky.windowEnd+1, 0) }, MaxAge: -1}, verify.ErrUntrusted},
		{"verified today", doc, verify.Options{}, verify.ErrUntrusted},
		{"other root", doc, verify.Options{Now: blocky.at(0), Roots: []*x509.Certificate{otherRoot}}, verify.ErrUntrusted},
		{"no roots", doc, verify.Options{Now: blocky.at(0), Roots: []*x509.Certificate{}}, verify.ErrUntrusted},
		{"wrong nonce", doc, verify.Options{Now: blocky.at(0), Nonce: ones[1:]}, verify.ErrNonceMismatch},
		{"wrong pcr0", doc, verify.Options{Now: blocky.at(0), PCRs: map[int][]byte{0: mustHex(t, blockyPCR4)}}, verify.ErrPCRMismatch},
		{"pcr absent", doc, verify.Options{Now: blocky.at(0), PCRs: map[int][]byte{16: make([]byte, 48)}}, verify.ErrPCRMismatch},
		{"tampered signature", flip(doc, len(doc)-1), verify.Options{Now: blocky.at(0)}, verify.ErrBadSignature},
		{"tampered module id", flipBit(doc, bytes.Index(doc, []byte(blockyID))+5), verify.Options{Now: blocky.at(0)}, verify.ErrBadSignature},
		{"truncated", doc[:len(doc)-1], verify.Options{Now: blocky.at(0)}, verify.ErrMalformed},
		{"debug refused", blockyDebug.read(t), verify.Options{Now: blockyDebug.at(0)}, verify.ErrDebugMode},
		{"debug allowed", blockyDebug.read(t), verify.Options{Now: blockyDebug.at(0), AllowDebug: true}, nil},
		{"hf nonce", hfDebug.read(t), verify.Options{Now: hfDebug.at(0), AllowDebug: true, Nonce: mustHex(t, hfNonce)}, nil},
		{"hf wrong nonce", hfDebug.read(t), verify.Options{Now: hfDebug.at(0), AllowDebug: true, Nonce: mustHex(t, hfNonce)[1:]}, verify.ErrNonceMismatch},
		{"hf debug refused", hfDebug.read(t), verify.Options{Now: hfDebug.at(0)}, verify.ErrDebugMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := verify.Verify(tt.doc, tt.opts)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, res)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, verify.AWSRootSHA256, res.RootSHA256)
			assert.Equal(t, tt.doc, res.Document)
			assert.Equal(t, "SHA384", res.Digest)
			assert.Len(t, res.PCRs, 16)
			assert.Nil(t, res.Identity)
			assert.NotNil(t, res.Certificate)
			assert.Len(t, res.CABundle, 4)
		})
	}

	res, err := verify.Verify(doc, verify.Options{Now: blocky.at(0)})
	require.NoError(t, err)
	assert.Equal(t, blockyID, res.ModuleID)
	assert.True(t, time.UnixMilli(blocky.ts).Equal(res.Timestamp))
	assert.Equal(t, mustHex(t, blockyPCR0), res.PCRs[0])
	assert.False(t, res.Debug)
	assert.Equal(t, ones, res.Nonce)
	assert.Equal(t, ones, res.UserData)
	assert.Equal(t, ones, res.PublicKey)

	res, err = verify.Verify(hfDebug.read(t), verify.Options{Now: hfDebug.at(0), AllowDebug: true})
	require.NoError(t, err)
	assert.True(t, res.Debug)
	assert.Equal(t, []byte{}, res.PublicKey, "present but empty")
	assert.Equal(t, make([]byte, 48), res.PCRs[0])
}

// TestVerifyKeepsNoReference checks that the Result does not alias the
// caller's buffer.
func TestVerifyKeepsNoReference(t *testing.T) {
	doc := blocky.read(t)
	res, err := verify.Verify(doc, verify.Options{Now: blocky.at(0)})
	require.NoError(t, err)
	clear(doc)
	assert.Equal(t, blocky.read(t), res.Document)
	assert.Equal(t, mustHex(t, blockyPCR0), res.PCRs[0])
}

// TestBindIdentityRealDocuments checks that documents from other software
// never pass identity binding: their user_data is not an EnclaveIdentity.
func TestBindIdentityRealDocuments(t *testing.T) {
	for _, d := range []realDoc{blocky, blockyDebug, hfDebug} {
		t.Run(d.file, func(t *testing.T) {
			res, err := verify.Verify(d.read(t), verify.Options{Now: d.at(0), AllowDebug: true})
			require.NoError(t, err)
			id, err := res.BindIdentity()
			require.ErrorIs(t, err, verify.ErrIdentity)
			assert.Nil(t, id)
			assert.Nil(t, res.Identity)
		})
	}
}

func TestNewNonce(t *testing.T) {
	a, err := verify.NewNonce(nil)
	require.NoError(t, err)
	b, err := verify.NewNonce(nil)
	require.NoError(t, err)
	assert.Len(t, a, verify.NonceSize)
	assert.NotEqual(t, a, b)

	c, err := verify.NewNonce(bytes.NewReader(bytes.Repeat([]byte{7}, 40)))
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{7}, verify.NonceSize), c)

	_, err = verify.NewNonce(bytes.NewReader(make([]byte, 31)))
	require.Error(t, err)
}
