//go:build !nosim

package nsmsim_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/response"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// awsKeyOrder is the payload key order of every real document.
var awsKeyOrder = []string{"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key", "user_data", "nonce"}

func TestAttestVerifies(t *testing.T) {
	tests := []struct {
		name                       string
		nonce, userData, publicKey []byte
	}{
		{name: "all omitted"},
		{name: "all empty", nonce: []byte{}, userData: []byte{}, publicKey: []byte{}},
		{name: "nonce only", nonce: []byte("fresh nonce")},
		{name: "all maximal", nonce: bytes.Repeat([]byte{1}, 1024), userData: bytes.Repeat([]byte{2}, 1024), publicKey: bytes.Repeat([]byte{3}, 1024)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, nsmsim.Config{})
			doc, err := s.Attest(t.Context(), tt.nonce, tt.userData, tt.publicKey)
			require.NoError(t, err)

			res, err := verify(t, doc, s.Root(), time.Now())
			require.NoError(t, err)
			assert.True(t, res.SignatureOK)
			d := res.Document
			assert.Equal(t, s.ModuleID(), d.ModuleID)
			assert.Equal(t, "SHA384", d.Digest)
			assert.Equal(t, tt.nonce, d.Nonce)
			assert.Equal(t, tt.userData, d.UserData)
			assert.Equal(t, tt.publicKey, d.PublicKey)
			for i, v := range s.PCRs() {
				assert.Equal(t, v, d.PCRs[uint(i)], "PCR%d", i)
			}

			// The AWS root (nitrite's default) must not accept it.
			_, err = verify(t, doc, nil, time.Now())
			var unknown x509.UnknownAuthorityError
			require.ErrorAs(t, err, &unknown)
		})
	}
}

func TestDocumentStructure(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 30, 15, 123e6, time.UTC)
	s := newSim(t, nsmsim.Config{Now: newClock(now).Now})
	doc, err := s.Attest(t.Context(), []byte("n"), nil, nil)
	require.NoError(t, err)

	// Envelope: untagged array(4), protected bstr {1: -35}, empty map.
	require.Greater(t, len(doc), 7)
	assert.Equal(t, []byte{0x84, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0}, doc[:7])
	c := decodeCOSE(t, doc)
	assert.Equal(t, []byte{0xa1, 0x01, 0x38, 0x22}, c.Protected)
	assert.Equal(t, cbor.RawMessage{0xa0}, c.Unprotected)
	assert.Len(t, c.Signature, 96)

	// Payload key order equals the real document's, and AWS's.
	real, err := os.ReadFile(realDocPath)
	require.NoError(t, err)
	realKeys := keys(orderedMap(t, decodeCOSE(t, real).Payload))
	require.Equal(t, awsKeyOrder, realKeys)
	es := orderedMap(t, c.Payload)
	assert.Equal(t, realKeys, keys(es))

	res, err := verify(t, doc, s.Root(), now)
	require.NoError(t, err)
	d := res.Document
	assert.Equal(t, uint64(now.UnixMilli()), d.Timestamp)

	// 16 locked PCRs of 48 bytes, keys ascending in the encoding.
	require.Len(t, d.PCRs, 16)
	for i := range uint(16) {
		assert.Len(t, d.PCRs[i], 48, "PCR%d", i)
	}
	pcrs := field(t, es, "pcrs")
	assert.Equal(t, byte(0xb0), pcrs[0], "map of 16")
	dec := cbor.NewDecoder(bytes.NewReader(pcrs[1:]))
	for want := range uint64(16) {
		var k uint64
		var v []byte
		require.NoError(t, dec.Decode(&k))
		require.NoError(t, dec.Decode(&v))
		assert.Equal(t, want, k)
	}

	// Chain: [root, regional, zonal, instance] + leaf, shaped like AWS's.
	require.Len(t, d.CABundle, 4)
	assert.Equal(t, s.Root().Raw, d.CABundle[0])
	chain := make([]*x509.Certificate, 0, 5)
	for _, der := range append(append([][]byte{}, d.CABundle...), d.Certificate) {
		assert.LessOrEqual(t, len(der), 1024, "certificate larger than the spec allows")
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		assert.Equal(t, x509.ECDSAWithSHA384, cert.SignatureAlgorithm)
		pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
		require.True(t, ok)
		assert.Equal(t, elliptic.P384(), pub.Curve)
		chain = append(chain, cert)
	}
	root, regional, zonal, instance, leaf := chain[0], chain[1], chain[2], chain[3], chain[4]
	assert.Equal(t, "nitrosigner-sim.aws.nitro-enclaves", root.Subject.CommonName)
	assert.Equal(t, root.Subject.String(), root.Issuer.String())
	for _, tc := range []struct {
		name    string
		cert    *x509.Certificate
		pathLen int
		life    time.Duration
	}{
		{"regional", regional, 2, 20*24*time.Hour + time.Hour},
		{"zonal", zonal, 1, 5*24*time.Hour + 19*time.Hour},
		{"instance", instance, 0, 24 * time.Hour},
	} {
		assert.True(t, tc.cert.IsCA, tc.name)
		assert.Equal(t, tc.pathLen, tc.cert.MaxPathLen, tc.name)
		assert.Equal(t, tc.life, tc.cert.NotAfter.Sub(tc.cert.NotBefore), tc.name)
		assert.NotZero(t, tc.cert.KeyUsage&x509.KeyUsageCertSign, tc.name)
	}
	assert.Equal(t, s.ModuleID()+".us-east-1.nitrosigner-sim.aws", leaf.Subject.CommonName)
	assert.False(t, leaf.IsCA)
	assert.NotZero(t, leaf.KeyUsage&x509.KeyUsageDigitalSignature)
	assert.Zero(t, leaf.KeyUsage&x509.KeyUsageCertSign)
	// Valid from 3 s before the document's second to 3 h after it.
	assert.Equal(t, time.Date(2026, 11, 21, 10, 30, 12, 0, time.UTC), leaf.NotBefore, "leaf notBefore")
	assert.Equal(t, time.Date(2026, 11, 21, 13, 30, 15, 0, time.UTC), leaf.NotAfter, "leaf notAfter")
}

func TestAuxFieldEncoding(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want cbor.RawMessage
	}{
		{"nil is null", nil, cbor.RawMessage{0xf6}},
		{"empty is empty bstr", []byte{}, cbor.RawMessage{0x40}},
		{"bytes", []byte{0xab}, cbor.RawMessage{0x41, 0xab}},
	}
	fields := []string{"nonce", "user_data", "public_key"}
	attest := func(s *nsmsim.Simulator, t *testing.T, key string, v []byte) ([]byte, error) {
		switch key {
		case "nonce":
			return s.Attest(t.Context(), v, nil, nil)
		case "user_data":
			return s.Attest(t.Context(), nil, v, nil)
		default:
			return s.Attest(t.Context(), nil, nil, v)
		}
	}
	s := newSim(t, nsmsim.Config{})
	for _, key := range fields {
		for _, tt := range tests {
			t.Run(key+"/"+tt.name, func(t *testing.T) {
				doc, err := attest(s, t, key, tt.in)
				require.NoError(t, err)
				es := orderedMap(t, decodeCOSE(t, doc).Payload)
				assert.Equal(t, tt.want, field(t, es, key))
				for _, other := range fields {
					if other != key {
						assert.Equal(t, cbor.RawMessage{0xf6}, field(t, es, other), other)
					}
				}
			})
		}
	}
}

func TestAuxFieldLimits(t *testing.T) {
	ok := make([]byte, nsmsim.MaxAuxSize)
	big := make([]byte, nsmsim.MaxAuxSize+1)
	tests := []struct {
		name                       string
		nonce, userData, publicKey []byte
		wantCode                   response.ErrorCode
	}{
		{name: "1024-byte nonce", nonce: ok},
		{name: "1025-byte nonce", nonce: big, wantCode: response.ECInvalidArgument},
		{name: "1025-byte user data", userData: big, wantCode: response.ECInvalidArgument},
		{name: "1025-byte public key", publicKey: big, wantCode: response.ECInvalidArgument},
		{name: "all 1024 bytes", nonce: ok, userData: ok, publicKey: ok},
	}
	s := newSim(t, nsmsim.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := s.Attest(t.Context(), tt.nonce, tt.userData, tt.publicKey)
			if tt.wantCode == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, doc)
				return
			}
			var de *nsmsim.DeviceError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tt.wantCode, de.Code)
		})
	}
}

// TestTimeTravel checks that documents are verifiable exactly during their
// leaf's window: from 3 seconds before the document's whole second to 3
// hours after it, both inclusive, as in AWS's 2024 documents.
func TestTimeTravel(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 500e6, time.UTC)
	clk := newClock(t0)
	s := newSim(t, nsmsim.Config{Now: clk.Now})
	doc, err := s.Attest(t.Context(), nil, nil, nil)
	require.NoError(t, err)

	first := time.Date(2026, 11, 21, 11, 59, 57, 0, time.UTC)
	last := time.Date(2026, 11, 21, 15, 0, 0, 0, time.UTC)
	require.Equal(t, first, t0.Truncate(time.Second).Add(-nsmsim.LeafBackdate))
	require.Equal(t, last, t0.Truncate(time.Second).Add(nsmsim.LeafLifetime))
	tests := []struct {
		name    string
		at      time.Time
		wantErr bool
	}{
		{"at issue", t0, false},
		{"first second of the leaf", first, false},
		{"one second before the leaf", first.Add(-time.Second), true},
		{"last second of the leaf", last, false},
		{"one second after the leaf", last.Add(time.Second), true},
		{"a day later", t0.Add(24 * time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := verify(t, doc, s.Root(), tt.at)
			if !tt.wantErr {
				require.NoError(t, err)
				return
			}
			var invalid x509.CertificateInvalidError
			require.ErrorAs(t, err, &invalid)
			assert.Equal(t, x509.Expired, invalid.Reason)
		})
	}

	// A document issued later is verifiable then.
	clk.Add(3*time.Hour + time.Second)
	doc2, err := s.Attest(t.Context(), nil, nil, nil)
	require.NoError(t, err)
	_, err = verify(t, doc2, s.Root(), clk.Now())
	require.NoError(t, err)
}

// TestIntermediateRotation checks that intermediates are reissued before
// they would expire, while the root stays.
func TestIntermediateRotation(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC))
	s := newSim(t, nsmsim.Config{Now: clk.Now})
	bundle := func() [][]byte {
		t.Helper()
		doc, err := s.Attest(t.Context(), nil, nil, nil)
		require.NoError(t, err)
		res, err := verify(t, doc, s.Root(), clk.Now())
		require.NoError(t, err)
		return res.Document.CABundle
	}
	b0 := bundle()

	clk.Add(time.Hour)
	b1 := bundle()
	assert.Equal(t, b0, b1, "chain reused while valid")

	clk.Add(22 * time.Hour) // instance certificate would expire within 3h
	b2 := bundle()
	assert.Equal(t, b0[:3], b2[:3])
	assert.NotEqual(t, b0[3], b2[3], "instance certificate reissued")

	clk.Add(5 * 24 * time.Hour) // zonal expired
	b3 := bundle()
	assert.Equal(t, b0[:2], b3[:2])
	assert.NotEqual(t, b2[2], b3[2], "zonal certificate reissued")
	assert.NotEqual(t, b2[3], b3[3], "instance certificate reissued under the new zonal")

	clk.Add(20 * 24 * time.Hour) // regional expired
	b4 := bundle()
	assert.Equal(t, b0[0], b4[0], "root kept")
	assert.NotEqual(t, b3[1], b4[1], "regional certificate reissued")

	// The clock goes back before the current chain (but not before the
	// root): the whole chain below the root is reissued.
	clk.Add(-(25*24*time.Hour + 11*time.Hour))
	b5 := bundle()
	assert.Equal(t, b0[0], b5[0], "root kept")
	assert.NotEqual(t, b4[1], b5[1], "regional certificate reissued")
}

func TestFreshLeafPerDocument(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	var leaves [][]byte
	for range 3 {
		doc, err := s.Attest(t.Context(), nil, nil, nil)
		require.NoError(t, err)
		res, err := verify(t, doc, s.Root(), time.Now())
		require.NoError(t, err)
		leaves = append(leaves, res.Certificates[0].RawSubjectPublicKeyInfo)
	}
	assert.NotEqual(t, leaves[0], leaves[1])
	assert.NotEqual(t, leaves[1], leaves[2])
}

func TestAttestContextCanceled(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Attest(ctx, nil, nil, nil)
	require.ErrorIs(t, err, context.Canceled)
}
