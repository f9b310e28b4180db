package attest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hf/nitrite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/attest"
)

// realDoc describes one real AWS document in testdata/ (see testdata/README.md).
type realDoc struct {
	file        string
	timestampMS int64
	windowStart int64 // unix seconds, inclusive
	windowEnd   int64 // unix seconds, inclusive
	debug       bool
	moduleID    string
	pcrs        map[int]string // non-zero PCRs besides the debug zeros
}

var realDocs = []realDoc{
	{
		file:        "att_hf_nitrite_pr2_debug_2021-10-28.cbor",
		timestampMS: 1635440522077,
		windowStart: 1635432253,
		windowEnd:   1635443053,
		debug:       true,
		moduleID:    "i-0809849710bf1b61b-enc017cc45400406a27",
		pcrs: map[int]string{
			4: "d8a8e8eee96d81b77a251410b7a9b180787653f125d1dbca79685c93fb885b335e0b8d172c9821a862515a603cc33ab2",
		},
	},
	{
		file:        "att_blocky_2024-09-07.cbor",
		timestampMS: 1725719859545,
		windowStart: 1725719856,
		windowEnd:   1725730659,
		moduleID:    "i-0a22e5c5f24d22174-enc0191cceb4289903f",
		pcrs: map[int]string{
			0: "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a",
			1: "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa",
			2: "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c",
			4: "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44",
		},
	},
	{
		file:        "att_blocky_debug_2024-09-07.cbor",
		timestampMS: 1725719886508,
		windowStart: 1725719883,
		windowEnd:   1725730686,
		debug:       true,
		moduleID:    "i-0a22e5c5f24d22174-enc0191ccebaf8feaba",
		pcrs: map[int]string{
			4: "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44",
		},
	},
}

const (
	hfDocFile     = "att_hf_nitrite_pr2_debug_2021-10-28.cbor"
	hfDocNonceHex = "54caa7fdd9c1de6f1206e4900d57b61eb759d628"
	blockyDocFile = "att_blocky_2024-09-07.cbor"
)

func findDoc(t *testing.T, file string) realDoc {
	t.Helper()
	for _, d := range realDocs {
		if d.file == file {
			return d
		}
	}
	t.Fatalf("no test document %s", file)
	return realDoc{}
}

func readDoc(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	require.NoError(t, err)
	return b
}

func (d realDoc) at() time.Time { return time.UnixMilli(d.timestampMS) }

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

// selfSignedRoot returns a fresh self-signed P-384 CA valid around now.
func selfSignedRoot(t testing.TB, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "aws.nitro-enclaves"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert, key
}

func TestAWSRoot(t *testing.T) {
	root := attest.AWSRoot()
	sum := sha256.Sum256(root.Raw)
	assert.Equal(t, attest.AWSRootSHA256, hex.EncodeToString(sum[:]))
	assert.Equal(t, "aws.nitro-enclaves", root.Subject.CommonName)
	assert.True(t, root.IsCA)

	// The embedded root is the one hf/nitrite ships.
	block, _ := pem.Decode([]byte(nitrite.DefaultCARoots))
	require.NotNil(t, block)
	assert.Equal(t, block.Bytes, root.Raw)

	// Callers get independent copies.
	root.Raw[0] ^= 0xff
	assert.NotEqual(t, root.Raw, attest.AWSRoot().Raw)
}

func TestVerifyRealDocuments(t *testing.T) {
	for _, rd := range realDocs {
		doc := readDoc(t, rd.file)
		tests := []struct {
			name    string
			now     time.Time
			wantErr error
		}{
			{"at timestamp", rd.at(), nil},
			{"at window start", time.Unix(rd.windowStart, 0), nil},
			{"at window end", time.Unix(rd.windowEnd, 0), nil},
			{"before window start", time.Unix(rd.windowStart-1, 0), attest.ErrUntrusted},
			{"after window end", time.Unix(rd.windowEnd+1, 0), attest.ErrUntrusted},
			{"now", time.Time{}, attest.ErrUntrusted},
		}
		for _, tt := range tests {
			t.Run(rd.file+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				d, err := attest.Verify(doc, attest.Options{Now: tt.now, AllowDebug: true})
				if tt.wantErr != nil {
					require.ErrorIs(t, err, tt.wantErr)
					assert.NotErrorIs(t, err, attest.ErrUnknownRoot, "the AWS root is known; the chain is out of its window")
					var invalid x509.CertificateInvalidError
					assert.ErrorAs(t, err, &invalid)
					assert.Nil(t, d)
					return
				}
				require.NoError(t, err)
				require.NotNil(t, d)
				assert.Equal(t, rd.moduleID, d.ModuleID)
				assert.Equal(t, "SHA384", d.Digest)
				assert.True(t, rd.at().Equal(d.Timestamp), "timestamp %v", d.Timestamp)
				assert.Len(t, d.PCRs, 16)
				assert.Equal(t, rd.debug, d.Debug())
				require.Len(t, d.CABundle, 4)
				assert.Equal(t, attest.AWSRoot().Raw, d.CABundle[0].Raw)
				assert.Equal(t, x509.ECDSAWithSHA384, d.Certificate.SignatureAlgorithm)
				for i, v := range rd.pcrs {
					assert.Equal(t, mustHex(t, v), d.PCRs[i], "pcr%d", i)
				}
				for _, i := range []int{3, 8} {
					assert.Equal(t, make([]byte, 48), d.PCRs[i], "pcr%d", i)
				}
			})
		}
	}
}

func TestVerifyOptionalFields(t *testing.T) {
	hf := findDoc(t, hfDocFile)
	d, err := attest.Verify(readDoc(t, hf.file), attest.Options{Now: hf.at(), AllowDebug: true})
	require.NoError(t, err)
	assert.Equal(t, mustHex(t, hfDocNonceHex), d.Nonce)
	assert.NotNil(t, d.PublicKey, "public_key is present but empty")
	assert.Empty(t, d.PublicKey)
	assert.Len(t, d.UserData, 64)

	bl := findDoc(t, blockyDocFile)
	d, err = attest.Verify(readDoc(t, bl.file), attest.Options{Now: bl.at()})
	require.NoError(t, err)
	ones := make([]byte, 1024)
	for i := range ones {
		ones[i] = 0x01
	}
	assert.Equal(t, ones, d.PublicKey)
	assert.Equal(t, ones, d.UserData)
	assert.Equal(t, ones, d.Nonce)
}

func TestVerifyDebugMode(t *testing.T) {
	for _, rd := range realDocs {
		doc := readDoc(t, rd.file)
		t.Run(rd.file, func(t *testing.T) {
			t.Parallel()
			d, err := attest.Verify(doc, attest.Options{Now: rd.at()})
			if !rd.debug {
				require.NoError(t, err)
				assert.False(t, d.Debug())
				return
			}
			require.ErrorIs(t, err, attest.ErrDebugMode)
			assert.Nil(t, d)

			d, err = attest.Verify(doc, attest.Options{Now: rd.at(), AllowDebug: true})
			require.NoError(t, err)
			assert.True(t, d.Debug())
		})
	}
}

func TestVerifyPCRs(t *testing.T) {
	rd := findDoc(t, blockyDocFile)
	doc := readDoc(t, rd.file)
	want, err := attest.ParsePCRs(rd.pcrs)
	require.NoError(t, err)

	wrong := func(i int) map[int][]byte {
		m := map[int][]byte{}
		for k, v := range want {
			m[k] = append([]byte(nil), v...)
		}
		m[i][47] ^= 0x01
		return m
	}

	tests := []struct {
		name    string
		pcrs    map[int][]byte
		wantErr error
	}{
		{"none", nil, nil},
		{"all listed", want, nil},
		{"pcr0 only", map[int][]byte{0: want[0]}, nil},
		{"zero pcr3", map[int][]byte{3: make([]byte, 48)}, nil},
		{"wrong pcr0", wrong(0), attest.ErrPCRMismatch},
		{"wrong pcr2", wrong(2), attest.ErrPCRMismatch},
		{"wrong pcr4", wrong(4), attest.ErrPCRMismatch},
		{"truncated pcr0", map[int][]byte{0: want[0][:32]}, attest.ErrPCRMismatch},
		{"empty pcr0", map[int][]byte{0: {}}, attest.ErrPCRMismatch},
		{"absent pcr16", map[int][]byte{16: make([]byte, 48)}, attest.ErrPCRMismatch},
		{"out of range index", map[int][]byte{-1: make([]byte, 48)}, attest.ErrPCRMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := attest.Verify(doc, attest.Options{Now: rd.at(), PCRs: tt.pcrs})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, d)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, d)
		})
	}

	// A debug document fails PCR pinning of a production image even when
	// debug documents are allowed.
	dbg := findDoc(t, "att_blocky_debug_2024-09-07.cbor")
	_, err = attest.Verify(readDoc(t, dbg.file), attest.Options{Now: dbg.at(), AllowDebug: true, PCRs: want})
	require.ErrorIs(t, err, attest.ErrPCRMismatch)
}

func TestVerifyNonce(t *testing.T) {
	hf := findDoc(t, hfDocFile)
	bl := findDoc(t, blockyDocFile)
	nonce := mustHex(t, hfDocNonceHex)
	ones := make([]byte, 1024)
	for i := range ones {
		ones[i] = 0x01
	}

	tests := []struct {
		name    string
		rd      realDoc
		nonce   []byte
		wantErr error
	}{
		{"hf match", hf, nonce, nil},
		{"hf not checked", hf, nil, nil},
		{"hf last byte differs", hf, append(append([]byte(nil), nonce[:19]...), nonce[19]^1), attest.ErrNonceMismatch},
		{"hf prefix", hf, nonce[:19], attest.ErrNonceMismatch},
		{"hf longer", hf, append(append([]byte(nil), nonce...), 0), attest.ErrNonceMismatch},
		{"hf empty", hf, []byte{}, attest.ErrNonceMismatch},
		{"blocky match", bl, ones, nil},
		{"blocky other", bl, nonce, attest.ErrNonceMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := attest.Verify(readDoc(t, tt.rd.file), attest.Options{Now: tt.rd.at(), AllowDebug: true, Nonce: tt.nonce})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, d)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, d)
		})
	}
}

func TestVerifyMaxAge(t *testing.T) {
	rd := findDoc(t, blockyDocFile)
	doc := readDoc(t, rd.file)
	ts := rd.at()

	tests := []struct {
		name    string
		now     time.Time
		maxAge  time.Duration
		wantErr error
	}{
		{"disabled", time.Unix(rd.windowEnd, 0), 0, nil},
		{"negative disables", time.Unix(rd.windowEnd, 0), -time.Second, nil},
		{"at timestamp", ts, time.Minute, nil},
		{"exactly max age", ts.Add(time.Minute), time.Minute, nil},
		{"older than max age", ts.Add(time.Minute + time.Millisecond), time.Minute, attest.ErrStale},
		{"two hours old", ts.Add(2 * time.Hour), 5 * time.Minute, attest.ErrStale},
		// The window starts 3.545 s before the timestamp, so a verifier whose
		// clock is behind sees a document from the future.
		{"slightly in the future", time.Unix(rd.windowStart, 0), time.Minute, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := attest.Verify(doc, attest.Options{Now: tt.now, MaxAge: tt.maxAge})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, d)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, d)
		})
	}
}

func TestVerifyRoots(t *testing.T) {
	rd := findDoc(t, blockyDocFile)
	doc := readDoc(t, rd.file)
	other, _ := selfSignedRoot(t, rd.at())

	tests := []struct {
		name    string
		roots   []*x509.Certificate
		wantErr error
	}{
		{"default", nil, nil},
		{"explicit aws root", []*x509.Certificate{attest.AWSRoot()}, nil},
		{"aws root among others", []*x509.Certificate{other, nil, attest.AWSRoot()}, nil},
		{"other root", []*x509.Certificate{other}, attest.ErrUntrusted},
		{"no roots", []*x509.Certificate{}, attest.ErrUntrusted},
		{"nil root", []*x509.Certificate{nil}, attest.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := attest.Verify(doc, attest.Options{Now: rd.at(), Roots: tt.roots})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, d)
				return
			}
			require.NoError(t, err)
			assert.NotNil(t, d)
		})
	}
}

func TestVerifyEncodings(t *testing.T) {
	rd := findDoc(t, hfDocFile)
	doc := readDoc(t, rd.file)
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}

	tests := []struct {
		name    string
		doc     []byte
		wantErr error
	}{
		{"untagged", doc, nil},
		{"tag 18", cat([]byte{0xd2}, doc), nil},
		{"tag 18 twice", cat([]byte{0xd2, 0xd2}, doc), attest.ErrMalformed},
		{"tag 18 non-minimal", cat([]byte{0xd8, 0x12}, doc), attest.ErrMalformed},
		{"tag 98 (cose_sign)", cat([]byte{0xd8, 0x62}, doc), attest.ErrMalformed},
		{"tag 18 alone", []byte{0xd2}, attest.ErrMalformed},
		{"nil", nil, attest.ErrMalformed},
		{"empty", []byte{}, attest.ErrMalformed},
		{"garbage", []byte("not an attestation document"), attest.ErrMalformed},
		{"zeros", make([]byte, 512), attest.ErrMalformed},
		{"empty array", []byte{0x80}, attest.ErrMalformed},
		{"array of 4 nulls", []byte{0x84, 0xf6, 0xf6, 0xf6, 0xf6}, attest.ErrMalformed},
		{"truncated by one", doc[:len(doc)-1], attest.ErrMalformed},
		{"truncated to half", doc[:len(doc)/2], attest.ErrMalformed},
		{"first byte only", doc[:1], attest.ErrMalformed},
		{"trailing byte", cat(doc, []byte{0x00}), attest.ErrMalformed},
		{"document twice", cat(doc, doc), attest.ErrMalformed},
		{"oversized", make([]byte, attest.MaxDocumentSize+1), attest.ErrMalformed},
		// Re-encodings of the unsigned envelope, each still decoding to the
		// same COSE_Sign1 and verifying under a lenient parser.
		{"array length non-minimal", cat([]byte{0x98, 0x04}, doc[1:]), attest.ErrMalformed},
		{"protected length non-minimal", cat([]byte{0x84, 0x58, 0x04}, doc[2:]), attest.ErrMalformed},
		{"payload length non-minimal", cat(doc[:7], []byte{0x5a, 0x00, 0x00}, doc[8:]), attest.ErrMalformed},
		{"signature length non-minimal", cat(doc[:len(doc)-98], []byte{0x59, 0x00, 0x60}, doc[len(doc)-96:]), attest.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := attest.Verify(tt.doc, attest.Options{Now: rd.at(), AllowDebug: true})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.NotErrorIs(t, err, attest.ErrPanic)
				assert.Nil(t, d)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, rd.moduleID, d.ModuleID)
		})
	}
}

// TestVerifyTruncations cuts a real document at every length.
func TestVerifyTruncations(t *testing.T) {
	rd := findDoc(t, hfDocFile)
	doc := readDoc(t, rd.file)
	for n := range len(doc) {
		d, err := attest.Verify(doc[:n], attest.Options{Now: rd.at(), AllowDebug: true})
		require.ErrorIs(t, err, attest.ErrMalformed, "length %d", n)
		require.NotErrorIs(t, err, attest.ErrPanic, "length %d", n)
		require.Nil(t, d)
	}
}

func TestParsePCRs(t *testing.T) {
	h48 := "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
	upper := "E72A46CA80A260FB044A125442F0C7E331813BCBAF9724D9F3857758992766F2D65710A27AA94AE3949DD54E7C9FE86A"
	want := mustHex(t, h48)

	tests := []struct {
		name    string
		in      map[int]string
		want    map[int][]byte
		wantErr bool
	}{
		{"nil", nil, map[int][]byte{}, false},
		{"lowercase", map[int]string{0: h48}, map[int][]byte{0: want}, false},
		{"uppercase", map[int]string{31: upper}, map[int][]byte{31: want}, false},
		{"several", map[int]string{0: h48, 8: upper}, map[int][]byte{0: want, 8: want}, false},
		{"32 bytes", map[int]string{0: h48[:64]}, nil, true},
		{"64 bytes", map[int]string{0: h48 + h48[:32]}, nil, true},
		{"odd length", map[int]string{0: h48[:95]}, nil, true},
		{"0x prefix", map[int]string{0: "0x" + h48[2:]}, nil, true},
		{"not hex", map[int]string{0: "zz" + h48[2:]}, nil, true},
		{"space", map[int]string{0: " " + h48[1:]}, nil, true},
		{"empty", map[int]string{0: ""}, nil, true},
		{"index 32", map[int]string{32: h48}, nil, true},
		{"index -1", map[int]string{-1: h48}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := attest.ParsePCRs(tt.in)
			if tt.wantErr {
				require.Error(t, err)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestDocumentDebug(t *testing.T) {
	zero := make([]byte, 48)
	one := make([]byte, 48)
	one[47] = 1

	tests := []struct {
		name string
		pcrs map[int][]byte
		want bool
	}{
		{"all zero", map[int][]byte{0: zero, 1: zero, 2: zero, 4: one}, true},
		{"pcr0 set", map[int][]byte{0: one, 1: zero, 2: zero}, false},
		{"pcr1 set", map[int][]byte{0: zero, 1: one, 2: zero}, false},
		{"pcr2 set", map[int][]byte{0: zero, 1: zero, 2: one}, false},
		{"pcr2 absent", map[int][]byte{0: zero, 1: zero}, false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &attest.Document{PCRs: tt.pcrs}
			assert.Equal(t, tt.want, d.Debug())
		})
	}
}
