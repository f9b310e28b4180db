package eif_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/eif"
)

func signedImage(t *testing.T, s signer) ([]byte, eif.Measurements) {
	t.Helper()
	return build(t, eif.BuildConfig{
		Kernel: kernel, Cmdline: string(cmdline), Ramdisks: [][]byte{bootstrap, app},
		Metadata: testMetadata, Signer: s.key, Certificate: s.certPEM,
	})
}

// signatureSection returns the payload of the last section of file.
func signatureSection(t *testing.T, file []byte) []byte {
	t.Helper()
	img, err := eif.Parse(file)
	require.NoError(t, err)
	last := img.Sections[len(img.Sections)-1]
	require.Equal(t, eif.SectionSignature, last.Type)
	return file[last.Offset+12:]
}

func TestSigned(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P384(), elliptic.P256(), elliptic.P521()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			s := newSigner(t, curve, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			file, m := signedImage(t, s)

			// PCR8 = extend(SHA-384(DER)), and PCR0-2 are those of the
			// unsigned image: the signature is not measured.
			certHash := sha512.Sum384(s.cert.Raw)
			assert.Equal(t, extend(certHash[:]), m.PCR8)
			want0, want1, want2 := pcrs(kernel, cmdline, bootstrap, app)
			assert.Equal(t, eif.Measurements{PCR0: want0, PCR1: want1, PCR2: want2, PCR8: m.PCR8}, m)
			assert.Equal(t, m.PCR8, eif.PCR8(s.cert))

			img, err := eif.Parse(file)
			require.NoError(t, err)
			assert.Equal(t, m, img.Measurements)
			require.NotNil(t, img.Signature)
			assert.Equal(t, s.certPEM, img.Signature.CertificatePEM)
			assert.Equal(t, s.cert.Raw, img.Signature.Certificate.Raw)
			assert.Equal(t, 1, img.Signature.Entries)
			require.NoError(t, img.Signature.Verify(img.Measurements.PCR0))

			err = img.Signature.Verify(want1)
			require.ErrorIs(t, err, eif.ErrSignature)
			assert.Contains(t, err.Error(), "signed payload is not this image's PCR0")
		})
	}
}

// TestSignatureEncoding decodes the signature section generically and
// checks it is what serde_cbor writes for nitro-cli: [ {signing_certificate:
// [uint...], signature: [uint...]} ], with a COSE_Sign1 whose protected
// header is {1: -35}, an empty unprotected map, a payload
// {register_index: 0, register_value: [uint...]} and a 96-byte r||s that
// verifies with the certificate key over Sig_structure.
func TestSignatureEncoding(t *testing.T) {
	s := newSigner(t, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	file, m := signedImage(t, s)
	section := signatureSection(t, file)

	var entries []map[string][]uint64
	require.NoError(t, cbor.Unmarshal(section, &entries), "arrays of uints, not byte strings")
	require.Len(t, entries, 1)
	require.Len(t, entries[0], 2)
	toBytes := func(v []uint64) []byte {
		out := make([]byte, len(v))
		for i, x := range v {
			require.LessOrEqual(t, x, uint64(255))
			out[i] = byte(x)
		}
		return out
	}
	assert.Equal(t, s.certPEM, toBytes(entries[0]["signing_certificate"]))
	cose := toBytes(entries[0]["signature"])

	var msg []cbor.RawMessage
	require.NoError(t, cbor.Unmarshal(cose, &msg))
	require.Len(t, msg, 4)
	var protected, payload, sig []byte
	require.NoError(t, cbor.Unmarshal(msg[0], &protected))
	assert.Equal(t, []byte{0xa1, 0x01, 0x38, 0x22}, protected, "{1: -35}")
	assert.Equal(t, cbor.RawMessage{0xa0}, msg[1])
	require.NoError(t, cbor.Unmarshal(msg[2], &payload))
	require.NoError(t, cbor.Unmarshal(msg[3], &sig))
	require.Len(t, sig, 96)

	var info map[string]any
	require.NoError(t, cbor.Unmarshal(payload, &info))
	assert.Equal(t, uint64(0), info["register_index"])
	values, ok := info["register_value"].([]any)
	require.True(t, ok, "register_value is an array")
	pcr0 := make([]byte, len(values))
	for i, v := range values {
		pcr0[i] = byte(v.(uint64))
	}
	assert.Equal(t, m.PCR0, pcr0)

	toSign, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	require.NoError(t, err)
	digest := sha512.Sum384(toSign)
	r, sv := new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])
	assert.True(t, ecdsa.Verify(&s.key.PublicKey, digest[:], r, sv))
}

// TestSignatureByteStrings checks that a signature section written with
// CBOR byte strings instead of arrays (and a tagged COSE_Sign1) is read too.
func TestSignatureByteStrings(t *testing.T) {
	s := newSigner(t, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	file, m := signedImage(t, s)
	var entries []map[string][]uint64
	require.NoError(t, cbor.Unmarshal(signatureSection(t, file), &entries))
	cose := make([]byte, 0, len(entries[0]["signature"])+1)
	cose = append(cose, 0xd2) // tag 18
	for _, x := range entries[0]["signature"] {
		cose = append(cose, byte(x))
	}
	section, err := cbor.Marshal([]map[string][]byte{{"signing_certificate": s.certPEM, "signature": cose}})
	require.NoError(t, err)

	ref := refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tRamdisk, bootstrap}, {tRamdisk, app}, {tSignature, section}})
	img, err := eif.Parse(ref)
	require.NoError(t, err)
	assert.Equal(t, m.PCR8, img.Measurements.PCR8)
	assert.Equal(t, m.PCR0, img.Measurements.PCR0)
	require.NoError(t, img.Signature.Verify(img.Measurements.PCR0))
}

func TestSignatureTampered(t *testing.T) {
	s := newSigner(t, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	file, _ := signedImage(t, s)
	section := signatureSection(t, file)
	var entries []map[string][]uint64
	require.NoError(t, cbor.Unmarshal(section, &entries))

	reencode := func(certPEM []byte, cose []byte) []byte {
		b, err := cbor.Marshal([]map[string][]byte{{"signing_certificate": certPEM, "signature": cose}})
		require.NoError(t, err)
		return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tRamdisk, bootstrap}, {tRamdisk, app}, {tSignature, b}})
	}
	cose := make([]byte, len(entries[0]["signature"]))
	for i, x := range entries[0]["signature"] {
		cose[i] = byte(x)
	}
	other := newSigner(t, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	p256 := newSigner(t, elliptic.P256(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	flipped := bytes.Clone(cose)
	flipped[len(flipped)-1] ^= 1

	tests := []struct {
		name    string
		file    []byte
		wantMsg string
	}{
		{"signature bit flipped", reencode(s.certPEM, flipped), "does not verify"},
		{"certificate swapped", reencode(other.certPEM, cose), "does not verify"},
		{"certificate on another curve", reencode(p256.certPEM, cose), "COSE algorithm is not -7"},
		{"not a COSE_Sign1", reencode(s.certPEM, []byte{0x80}), "not a COSE_Sign1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := eif.Parse(tt.file)
			require.NoError(t, err, "the section decodes; only verification fails")
			err = img.Signature.Verify(img.Measurements.PCR0)
			require.ErrorIs(t, err, eif.ErrSignature)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}

	// A certificate that is not a certificate fails when reading.
	notCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})
	_, err := eif.Parse(reencode(notCert, cose))
	require.ErrorIs(t, err, eif.ErrSignature)
	assert.Contains(t, err.Error(), "signing certificate")
}

func TestParseCertificatePEM(t *testing.T) {
	s := newSigner(t, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	// Leading blocks of other types are skipped, the first certificate wins.
	keyDER, err := x509.MarshalECPrivateKey(s.key)
	require.NoError(t, err)
	other := newSigner(t, elliptic.P384(), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), s.certPEM...)
	data = append(data, other.certPEM...)
	cert, err := eif.ParseCertificatePEM(data)
	require.NoError(t, err)
	assert.Equal(t, s.cert.Raw, cert.Raw)

	_, err = eif.ParseCertificatePEM([]byte("no pem here"))
	require.Error(t, err)
}
