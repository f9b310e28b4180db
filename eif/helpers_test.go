package eif_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"hash/crc32"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The helpers in this file build EIFs and compute PCRs from the format
// description alone (nitro-reference.md §5), without the package, so that
// the tests compare the package against an independent encoding.

// sec is one section of a reference image.
type sec struct {
	typ  uint16
	data []byte
}

const (
	tKernel    = 1
	tCmdline   = 2
	tRamdisk   = 3
	tSignature = 4
	tMetadata  = 5
)

// refEIF lays out an image: the 548-byte header (magic, version, flags,
// 1 GiB, 2 CPUs, reserved 0, count, offsets of the section headers, payload
// sizes, unused 0, CRC), then each section as type|flags 0|size|payload.
// The CRC-32 is that of the whole file without bytes 544..547, which is the
// same as header-minus-CRC followed by every section in order.
func refEIF(version, flags uint16, secs []sec) []byte {
	b := make([]byte, 548)
	copy(b, ".eif")
	binary.BigEndian.PutUint16(b[4:], version)
	binary.BigEndian.PutUint16(b[6:], flags)
	binary.BigEndian.PutUint64(b[8:], 1<<30)
	binary.BigEndian.PutUint64(b[16:], 2)
	binary.BigEndian.PutUint16(b[26:], uint16(len(secs)))
	off := uint64(548)
	for i, s := range secs {
		binary.BigEndian.PutUint64(b[28+8*i:], off)
		binary.BigEndian.PutUint64(b[28+256+8*i:], uint64(len(s.data)))
		off += 12 + uint64(len(s.data))
	}
	for _, s := range secs {
		b = binary.BigEndian.AppendUint16(b, s.typ)
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(len(s.data)))
		b = append(b, s.data...)
	}
	return fixCRC(b)
}

// fixCRC recomputes the CRC field of b in place and returns b.
func fixCRC(b []byte) []byte {
	rest := append(append([]byte{}, b[:544]...), b[548:]...)
	binary.BigEndian.PutUint32(b[544:], crc32.ChecksumIEEE(rest))
	return b
}

// sha384 hashes the concatenation of parts.
func sha384(parts ...[]byte) []byte {
	h := sha512.New384()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// extend is SHA-384(48 zero bytes || d).
func extend(d []byte) []byte { return sha384(make([]byte, 48), d) }

// pcrs computes PCR0, PCR1, PCR2 of kernel, cmdline and ramdisks.
func pcrs(kernel, cmdline []byte, ramdisks ...[]byte) (pcr0, pcr1, pcr2 []byte) {
	all := append([][]byte{kernel, cmdline}, ramdisks...)
	return extend(sha384(all...)), extend(sha384(kernel, cmdline, ramdisks[0])), extend(sha384(ramdisks[1:]...))
}

// payload returns n deterministic bytes derived from seed.
func payload(seed string, n int) []byte {
	out := make([]byte, 0, n+64)
	block := sha512.Sum512([]byte(seed))
	for len(out) < n {
		out = append(out, block[:]...)
		block = sha512.Sum512(block[:])
	}
	return out[:n]
}

// signer is a test-only ECDSA key with a self-signed certificate.
type signer struct {
	key     *ecdsa.PrivateKey
	cert    *x509.Certificate
	certPEM []byte
}

func newSigner(t testing.TB, curve elliptic.Curve, notAfter time.Time) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "eif test signer", Organization: []string{"nitrosigner tests"}},
		NotBefore:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return signer{key: key, cert: cert, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}
