//go:build !nosim

package nsmsim_test

import (
	"crypto/ecdsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// levels names the certificates of a document: its cabundle, then the leaf.
var levels = [5]string{"root", "regional", "zonal", "instance", "leaf"}

// realCertDocs are the real AWS documents of testdata/README.md. The
// simulator follows the 2024 ones. The 2021 one shows older AWS behaviour:
// its leaf was not issued for the document but reused (valid for exactly 3
// hours from its serial time, 2h18m before the document), its zonal
// certificate lived 5 days 23 hours, and its instance certificate carried
// only basicConstraints and keyUsage, without the key identifiers that
// follow them in 2024. So it is compared for structure, not validity, and
// its instance certificate's extensions only as a prefix of the
// simulator's.
var realCertDocs = []struct {
	path   string
	legacy bool
}{
	{"testdata/att_blocky_2024-09-07.cbor", false},
	{"testdata/att_blocky_debug_2024-09-07.cbor", false},
	{"testdata/att_hf_nitrite_pr2_debug_2021-10-28.cbor", true},
}

// docCerts is what certificate tests need from a document.
type docCerts struct {
	moduleID  string
	timestamp time.Time
	der       [5][]byte // in the order of levels
	certs     [5]*x509.Certificate
}

func loadDocCerts(t *testing.T, doc []byte) docCerts {
	t.Helper()
	var p struct {
		ModuleID    string   `cbor:"module_id"`
		Timestamp   int64    `cbor:"timestamp"`
		Certificate []byte   `cbor:"certificate"`
		CABundle    [][]byte `cbor:"cabundle"`
	}
	require.NoError(t, cbor.Unmarshal(decodeCOSE(t, doc).Payload, &p))
	require.Len(t, p.CABundle, 4)
	d := docCerts{moduleID: p.ModuleID, timestamp: time.UnixMilli(p.Timestamp).UTC()}
	copy(d.der[:], p.CABundle)
	d.der[4] = p.Certificate
	for i, der := range d.der {
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err, levels[i])
		d.certs[i] = cert
	}
	return d
}

// certFields are the parts of a certificate compared with AWS's.
type certFields struct {
	// skeleton is the element tree of the TBSCertificate, one element per
	// line: tags, OIDs and BOOLEAN values, not other contents. It shows
	// the version, the signature algorithm, each name attribute's type and
	// string type in order, the key algorithm and each extension's OID and
	// criticality in order. UTCTime and GeneralizedTime both show as
	// "time": RFC 5280 picks between them by year.
	skeleton string
	serial   []byte // content octets of the serialNumber INTEGER
	exts     []certExtension
}

type certExtension struct {
	oid      string
	critical bool
	value    []byte
}

func parseCertFields(t *testing.T, der []byte) certFields {
	t.Helper()
	var f certFields
	in := cryptobyte.String(der)
	var cert, tbsElem, tbs cryptobyte.String
	require.True(t, in.ReadASN1(&cert, casn1.SEQUENCE) && in.Empty(), "certificate")
	require.True(t, cert.ReadASN1Element(&tbsElem, casn1.SEQUENCE), "tbsCertificate")
	var b strings.Builder
	require.True(t, writeSkeleton(&b, tbsElem, 0), "tbsCertificate skeleton")
	f.skeleton = b.String()

	require.True(t, tbsElem.ReadASN1(&tbs, casn1.SEQUENCE))
	var version, serial, extsWrap, exts cryptobyte.String
	require.True(t, tbs.ReadASN1(&version, casn1.Tag(0).Constructed().ContextSpecific()), "version")
	require.True(t, tbs.ReadASN1(&serial, casn1.INTEGER), "serial")
	f.serial = serial
	for _, what := range []string{"signature", "issuer", "validity", "subject", "subjectPublicKeyInfo"} {
		require.True(t, tbs.SkipASN1(casn1.SEQUENCE), what)
	}
	require.True(t, tbs.ReadASN1(&extsWrap, casn1.Tag(3).Constructed().ContextSpecific()), "extensions")
	require.True(t, tbs.Empty(), "fields after extensions")
	require.True(t, extsWrap.ReadASN1(&exts, casn1.SEQUENCE) && extsWrap.Empty())
	for !exts.Empty() {
		var ext, value cryptobyte.String
		var oid asn1.ObjectIdentifier
		var e certExtension
		require.True(t, exts.ReadASN1(&ext, casn1.SEQUENCE) && ext.ReadASN1ObjectIdentifier(&oid), "extension")
		if ext.PeekASN1Tag(casn1.BOOLEAN) {
			require.True(t, ext.ReadASN1Boolean(&e.critical), "extension critical")
		}
		require.True(t, ext.ReadASN1(&value, casn1.OCTET_STRING) && ext.Empty(), "extension value")
		e.oid, e.value = oid.String(), value
		f.exts = append(f.exts, e)
	}
	return f
}

// writeSkeleton writes the element tree of the DER elements in s (see
// certFields.skeleton). It reports false for malformed DER.
func writeSkeleton(b *strings.Builder, s cryptobyte.String, depth int) bool {
	for !s.Empty() {
		var elem, content cryptobyte.String
		var tag casn1.Tag
		if !s.ReadAnyASN1Element(&elem, &tag) {
			return false
		}
		b.WriteString(strings.Repeat("  ", depth))
		switch tag {
		case casn1.OBJECT_IDENTIFIER:
			var oid asn1.ObjectIdentifier
			if !elem.ReadASN1ObjectIdentifier(&oid) {
				return false
			}
			fmt.Fprintf(b, "OID %s\n", oid)
			continue
		case casn1.BOOLEAN:
			var v bool
			if !elem.ReadASN1Boolean(&v) {
				return false
			}
			fmt.Fprintf(b, "BOOLEAN %t\n", v)
			continue
		case casn1.UTCTime, casn1.GeneralizedTime:
			b.WriteString("time\n")
			continue
		}
		if !elem.ReadAnyASN1(&content, &tag) {
			return false
		}
		fmt.Fprintf(b, "tag %#02x\n", uint8(tag))
		if tag&0x20 != 0 && !writeSkeleton(b, content, depth+1) {
			return false
		}
	}
	return true
}

// serialMagnitude checks that serial is a positive, minimally encoded DER
// INTEGER and returns it without its zero pad.
func serialMagnitude(t *testing.T, serial []byte, what string) []byte {
	t.Helper()
	require.NotEmpty(t, serial, what)
	require.Zero(t, serial[0]&0x80, "%s: serial is negative", what)
	if serial[0] == 0 {
		require.Greater(t, len(serial), 1, what)
		require.NotZero(t, serial[1]&0x80, "%s: serial has a needless zero pad", what)
		return serial[1:]
	}
	return serial
}

// Extension OIDs whose values carry no per-certificate data, so that they
// must equal AWS's byte for byte.
const (
	oidBasicConstraints = "2.5.29.19"
	oidKeyUsage         = "2.5.29.15"
	oidSubjectKeyID     = "2.5.29.14"
	oidAuthorityKeyID   = "2.5.29.35"
)

// TestCertificatesMatchAWS compares every certificate of a simulated
// document with the certificate at the same level of each real AWS
// document: same TBSCertificate structure (signature algorithm, name
// attribute order and string types, extension order and criticality),
// same extension encodings, same serial length and, for the 2024 documents,
// the same validity rule. Only names, keys, dates and URLs may differ.
func TestCertificatesMatchAWS(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 30, 15, 123e6, time.UTC)
	s := newSim(t, nsmsim.Config{Now: newClock(now).Now})
	doc, err := s.Attest(t.Context(), nil, nil, nil)
	require.NoError(t, err)
	sim := loadDocCerts(t, doc)

	for _, rd := range realCertDocs {
		b, err := os.ReadFile(rd.path)
		require.NoError(t, err)
		real := loadDocCerts(t, b)
		for i, level := range levels {
			t.Run(strings.TrimPrefix(rd.path, "testdata/")+"/"+level, func(t *testing.T) {
				simCert, realCert := sim.certs[i], real.certs[i]
				simF, realF := parseCertFields(t, sim.der[i]), parseCertFields(t, real.der[i])

				assert.LessOrEqual(t, len(sim.der[i]), 1024)
				assert.Equal(t, realCert.SignatureAlgorithm, simCert.SignatureAlgorithm)
				assert.Equal(t, x509.ECDSAWithSHA384, simCert.SignatureAlgorithm)
				if rd.legacy && level == "instance" {
					assert.True(t, strings.HasPrefix(simF.skeleton, realF.skeleton), "TBSCertificate structure:\n%s\nis not a prefix of\n%s", realF.skeleton, simF.skeleton)
					require.Greater(t, len(simF.exts), len(realF.exts))
				} else {
					assert.Equal(t, realF.skeleton, simF.skeleton, "TBSCertificate structure")
					require.Len(t, simF.exts, len(realF.exts))
				}
				for j, re := range realF.exts {
					se := simF.exts[j]
					assert.Equal(t, re.oid, se.oid, "extension %d", j)
					assert.Equal(t, re.critical, se.critical, "extension %s critical", re.oid)
					switch re.oid {
					case oidBasicConstraints, oidKeyUsage:
						assert.Equal(t, hex.EncodeToString(re.value), hex.EncodeToString(se.value), "extension %s", re.oid)
					case oidSubjectKeyID, oidAuthorityKeyID:
						assert.Len(t, se.value, len(re.value), "extension %s", re.oid)
					}
					var rb, sb strings.Builder
					require.True(t, writeSkeleton(&rb, re.value, 0))
					require.True(t, writeSkeleton(&sb, se.value, 0), "extension %s value is not DER", re.oid)
					assert.Equal(t, rb.String(), sb.String(), "extension %s structure", re.oid)
				}

				// Key identifiers: SHA-1 of the key (RFC 5280 method 1), and
				// each authority key id names the issuer's key.
				for _, d := range []docCerts{real, sim} {
					c := d.certs[i]
					if len(c.SubjectKeyId) > 0 {
						pub, err := c.PublicKey.(*ecdsa.PublicKey).Bytes()
						require.NoError(t, err)
						sum := sha1.Sum(pub)
						assert.Equal(t, sum[:], c.SubjectKeyId, "subject key id")
					}
					if i > 0 && len(c.AuthorityKeyId) > 0 {
						assert.Equal(t, d.certs[i-1].SubjectKeyId, c.AuthorityKeyId, "authority key id")
					}
				}

				realSerial := serialMagnitude(t, realF.serial, "real")
				simSerial := serialMagnitude(t, simF.serial, "simulated")
				assert.Len(t, simSerial, len(realSerial), "serial length")
				if level == "leaf" {
					for _, d := range []struct {
						name   string
						d      docCerts
						serial []byte
					}{{"real", real, realSerial}, {"simulated", sim, simSerial}} {
						checkLeafSerial(t, d.name, d.d, d.serial)
					}
				}

				if rd.legacy {
					return
				}
				if level == "root" {
					for _, c := range []*x509.Certificate{realCert, simCert} {
						assert.Equal(t, c.NotBefore.Add(time.Hour).AddDate(30, 0, 0), c.NotAfter, "root lives 30 years and an hour")
					}
					return
				}
				realLife := realCert.NotAfter.Sub(realCert.NotBefore)
				assert.Equal(t, realLife, simCert.NotAfter.Sub(simCert.NotBefore), "validity length")
				if level == "leaf" {
					for _, d := range []docCerts{real, sim} {
						second := d.timestamp.Truncate(time.Second)
						assert.Equal(t, second.Add(-3*time.Second), d.certs[4].NotBefore, "leaf notBefore")
						assert.Equal(t, second.Add(3*time.Hour), d.certs[4].NotAfter, "leaf notAfter")
					}
				}
			})
		}
	}
}

// checkLeafSerial checks AWS's leaf serial layout: the 8-byte enclave id
// of the module id, 4 zero bytes, and the issue time in Unix seconds, which
// is notAfter minus 3 hours (and, for a fresh leaf, the document's second).
func checkLeafSerial(t *testing.T, name string, d docCerts, serial []byte) {
	t.Helper()
	require.Len(t, serial, 16, name)
	_, enc, ok := strings.Cut(d.moduleID, "-enc")
	require.True(t, ok, "%s: module id %q", name, d.moduleID)
	assert.Equal(t, enc, hex.EncodeToString(serial[:8]), "%s: serial starts with the enclave id", name)
	assert.Equal(t, make([]byte, 4), serial[8:12], name)
	issued := time.Unix(int64(binary.BigEndian.Uint32(serial[12:])), 0).UTC()
	assert.Equal(t, d.certs[4].NotAfter.Add(-3*time.Hour), issued, "%s: serial time", name)
}

// TestEnclaveID checks the enclave id in the module id: the start time in
// Unix milliseconds and 16 random bits, like AWS's, unique even for
// simulators started in the same millisecond.
// enclaveIDRuns gives each run of TestEnclaveID (go test -count) a time of
// its own: the ids already taken are remembered for the whole process.
var enclaveIDRuns atomic.Int64

func TestEnclaveID(t *testing.T) {
	now := time.Date(2026, 11, 21, 10, 30, 15, 123e6, time.UTC).Add(time.Duration(enclaveIDRuns.Add(1)) * time.Hour)
	msOf := func(id uint64) int64 { return int64(id >> 16) }
	for range 3 {
		s := newSim(t, nsmsim.Config{Now: newClock(now).Now, Debug: true})
		_, enc, ok := strings.Cut(s.ModuleID(), "-enc")
		require.True(t, ok)
		require.Len(t, enc, 16)
		id, err := hex.DecodeString(enc)
		require.NoError(t, err)
		// A collision moves to the next free id, which may carry into the
		// time bits.
		assert.InDelta(t, now.UnixMilli(), msOf(binary.BigEndian.Uint64(id)), 1, "enclave id %s", enc)
	}

	// 1000 ids in one millisecond: the 16 random bits collide (about 8
	// times on average), the ids must not.
	seen := make(map[uint64]bool)
	for range 1000 {
		id := nsmsim.NewEnclaveID(now)
		require.False(t, seen[id], "enclave id %016x repeated", id)
		seen[id] = true
		assert.InDelta(t, now.UnixMilli(), msOf(id), 1, "enclave id %016x", id)
	}
}
