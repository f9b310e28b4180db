//go:build !nosim

package nsmsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Validity of the simulated chain, read off the real documents
// (nitro-reference §1.3, §1.6). Measured from notBefore to notAfter, AWS's
// root is valid for 30 calendar years and an hour, a regional certificate
// for 20 days and an hour, a zonal one for 5 days 19 hours in the 2024
// documents (a second under 5 days 23 hours in the 2021 one) and an instance
// certificate for exactly 24 hours. The round figures plus an hour suggest
// that a CA certificate starts an hour before it is issued; the simulator
// does that for all of them. The leaf rule is at [leafWindow].
const (
	caBackdate       = time.Hour
	rootYears        = 30
	regionalValidity = 20*24*time.Hour + time.Hour
	zonalValidity    = 5*24*time.Hour + 19*time.Hour
	instanceValidity = 24 * time.Hour
	leafBackdate     = 3 * time.Second
	leafLifetime     = 3 * time.Hour
)

// Subject attribute values. They follow AWS's layout but say "simulated"
// so a simulated chain can never be mistaken for an AWS one.
const (
	subjectOrg  = "nitrosigner (simulated)"
	subjectUnit = "NSM simulator"
	rootCN      = "nitrosigner-sim.aws.nitro-enclaves"
	domainCA    = "nitrosigner-sim.aws.nitro-enclaves"
	domainLeaf  = "nitrosigner-sim.aws"
	crlBaseURL  = "http://crl.nitrosigner-sim.invalid/crl/"
)

// Attribute type OIDs (RFC 5280) used to lay out subjects in AWS's order,
// which crypto/x509's pkix.Name would reorder.
var (
	oidCountry  = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidState    = asn1.ObjectIdentifier{2, 5, 4, 8}
	oidLocality = asn1.ObjectIdentifier{2, 5, 4, 7}
	oidOrg      = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidUnit     = asn1.ObjectIdentifier{2, 5, 4, 11}
	oidCN       = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// Certificate extension OIDs (RFC 5280 §4.2.1).
var (
	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtCRLDistribution  = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidExtAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// Key usage values as AWS encodes them: DER bit strings whose first bit is
// digitalSignature, with trailing zero bits dropped.
var (
	// usageCA is digitalSignature, keyCertSign and cRLSign (03 02 01 86):
	// the root, regional and zonal certificates.
	usageCA = asn1.BitString{Bytes: []byte{0x86}, BitLength: 7}
	// usageInstance is keyCertSign alone (03 02 02 04).
	usageInstance = asn1.BitString{Bytes: []byte{0x04}, BitLength: 6}
	// usageLeaf is digitalSignature and nonRepudiation (03 02 06 c0).
	usageLeaf = asn1.BitString{Bytes: []byte{0xc0}, BitLength: 2}
)

// attr is one subject attribute.
type attr struct {
	oid asn1.ObjectIdentifier
	val string
}

// rawName DER-encodes a distinguished name with one attribute per RDN, in
// the given order. As in every AWS certificate, the country is a
// PrintableString and all other attributes are UTF8Strings.
func rawName(attrs ...attr) ([]byte, error) {
	seq := make(pkix.RDNSequence, 0, len(attrs))
	for _, a := range attrs {
		tag := asn1.TagUTF8String
		if a.oid.Equal(oidCountry) {
			tag = asn1.TagPrintableString
		}
		val := asn1.RawValue{Tag: tag, Bytes: []byte(a.val)}
		seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: a.oid, Value: val}})
	}
	return asn1.Marshal(seq)
}

// Extension values. They are encoded here rather than by crypto/x509, which
// has its own extension order and criticality and cannot omit pathLen for a
// CA.
type (
	// rootConstraints is BasicConstraints with cA TRUE and no pathLen.
	rootConstraints struct{ IsCA bool }
	// caConstraints is BasicConstraints with cA TRUE and a pathLen.
	caConstraints struct {
		IsCA    bool
		PathLen int
	}
	// leafConstraints is BasicConstraints with the default cA FALSE
	// omitted, as DER requires: an empty SEQUENCE.
	leafConstraints struct{}
	// authorityKeyID carries only the keyIdentifier.
	authorityKeyID struct {
		ID []byte `asn1:"optional,tag:0"`
	}
	// distributionPoint carries only a distributionPoint fullName.
	distributionPoint struct {
		Name distributionPointName `asn1:"optional,tag:0"`
	}
	distributionPointName struct {
		FullName []asn1.RawValue `asn1:"optional,tag:0"`
	}
)

// extension is one certificate extension before encoding.
type extension struct {
	oid      asn1.ObjectIdentifier
	critical bool
	value    any // DER-encoded with encoding/asn1
}

// encodeExtensions encodes exts in the given order.
func encodeExtensions(exts ...extension) ([]pkix.Extension, error) {
	out := make([]pkix.Extension, 0, len(exts))
	for _, e := range exts {
		v, err := asn1.Marshal(e.value)
		if err != nil {
			return nil, fmt.Errorf("encode extension %v: %w", e.oid, err)
		}
		out = append(out, pkix.Extension{Id: e.oid, Critical: e.critical, Value: v})
	}
	return out, nil
}

// subjectKeyID returns the key identifier AWS uses: the SHA-1 hash of the
// subjectPublicKey bit string (RFC 5280 §4.2.1.2 method 1).
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	point, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha1.Sum(point)
	return sum[:], nil
}

// crlDistributionPoints is a CRLDistributionPoints value with one URI.
func crlDistributionPoints(uri string) []distributionPoint {
	name := asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}
	return []distributionPoint{{Name: distributionPointName{FullName: []asn1.RawValue{name}}}}
}

// issuer is a certificate with its private key.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// covers reports whether the issuer's certificate is valid during all of
// [notBefore, notAfter].
func (i *issuer) covers(notBefore, notAfter time.Time) bool {
	return i != nil && !notBefore.Before(i.cert.NotBefore) && !notAfter.After(i.cert.NotAfter)
}

// authority is the simulated AWS attestation PKI for one simulated instance.
// It is not safe for concurrent use; the Simulator serialises access.
type authority struct {
	region     string
	instanceID string
	moduleID   string
	enclaveID  uint64 // the 16 hex digits after "-enc" in moduleID

	root     *issuer
	regional *issuer
	zonal    *issuer
	instance *issuer
}

// newP384Key generates a fresh ECDSA P-384 key from the system CSPRNG.
func newP384Key() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
}

// randomSerial returns a positive serial number of exactly n random bytes
// (its first byte is not zero). Like AWS's, it is encoded with a leading
// zero byte when its top bit is set. AWS uses 16 bytes for the root,
// regional and zonal certificates and 20 for instance certificates.
func randomSerial(n int) *big.Int {
	b := make([]byte, n)
	rand.Read(b)
	if b[0] == 0 {
		b[0] = 1
	}
	return new(big.Int).SetBytes(b)
}

// leafSerial returns the serial number AWS gives a leaf: the 8-byte enclave
// id, 4 zero bytes and the issue time in Unix seconds as a big-endian
// uint32, e.g. 0191cceb4289903f 00000000 66dc6533 for enclave
// 0191cceb4289903f at 2024-09-07T14:37:39Z.
func leafSerial(enclaveID uint64, issued time.Time) *big.Int {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, enclaveID)
	binary.BigEndian.PutUint32(b[12:], uint32(issued.Unix()))
	return new(big.Int).SetBytes(b)
}

// enclaveIDs records the ids [newEnclaveID] has returned in this process.
var enclaveIDs struct {
	sync.Mutex
	used map[uint64]bool
}

// newEnclaveID returns an enclave id shaped like AWS's: the enclave's start
// time in Unix milliseconds (48 bits) followed by 16 random bits. All three
// real ids decode so (0191cceb4289903f started 2024-09-07T14:37:35.753Z,
// four seconds before its document). Ids are unique within the process: if
// the random bits collide with an earlier id, the next free id is taken.
func newEnclaveID(now time.Time) uint64 {
	var r [2]byte
	rand.Read(r[:])
	enclaveIDs.Lock()
	defer enclaveIDs.Unlock()
	if enclaveIDs.used == nil {
		enclaveIDs.used = make(map[uint64]bool)
	}
	id := uint64(now.UnixMilli())<<16 | uint64(binary.BigEndian.Uint16(r[:]))
	for enclaveIDs.used[id] {
		id++
	}
	enclaveIDs.used[id] = true
	return id
}

// randomHex returns n lowercase hex digits from the system CSPRNG.
func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// randomUUID returns a random (version 4) UUID string.
func randomUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newRoot creates a self-signed root shaped like AWS Nitro Enclaves
// Root-G1: valid from an hour before now until 30 years after now, with the
// extensions basicConstraints (critical, cA, no pathLen), subjectKeyIdentifier
// and keyUsage (critical) in that order.
func newRoot(now time.Time) (*issuer, error) {
	key, err := newP384Key()
	if err != nil {
		return nil, fmt.Errorf("generate root key: %w", err)
	}
	subject, err := rawName(
		attr{oidCountry, "US"},
		attr{oidOrg, subjectOrg},
		attr{oidUnit, subjectUnit},
		attr{oidCN, rootCN},
	)
	if err != nil {
		return nil, fmt.Errorf("encode root subject: %w", err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	exts, err := encodeExtensions(
		extension{oidExtBasicConstraints, true, rootConstraints{IsCA: true}},
		extension{oidExtSubjectKeyID, false, ski},
		extension{oidExtKeyUsage, true, usageCA},
	)
	if err != nil {
		return nil, err
	}
	now = now.UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:       randomSerial(16),
		RawSubject:         subject,
		NotBefore:          now.Add(-caBackdate),
		NotAfter:           now.AddDate(rootYears, 0, 0),
		ExtraExtensions:    exts,
		SignatureAlgorithm: x509.ECDSAWithSHA384,
	}
	return sign(tmpl, nil, key)
}

// sign issues tmpl for key, signed by parent, or self-signed when parent is
// nil. tmpl carries all its extensions in ExtraExtensions and sets none of
// the fields from which crypto/x509 would add its own.
func sign(tmpl *x509.Certificate, parent *issuer, key *ecdsa.PrivateKey) (*issuer, error) {
	parentCert, parentKey := tmpl, key
	if parent != nil {
		// Without the parent's key id crypto/x509 adds no
		// authorityKeyIdentifier of its own: tmpl has it where wanted.
		cp := *parent.cert
		cp.SubjectKeyId = nil
		parentCert, parentKey = &cp, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse created certificate: %w", err)
	}
	return &issuer{cert: cert, key: key}, nil
}

// keyIDOf returns the key identifier of an issuer's certificate, computing
// it when the certificate has none.
func keyIDOf(i *issuer) ([]byte, error) {
	if len(i.cert.SubjectKeyId) > 0 {
		return i.cert.SubjectKeyId, nil
	}
	return subjectKeyID(&i.key.PublicKey)
}

// newCA issues an intermediate CA certificate under parent, valid from an
// hour before now for validity. The extensions follow AWS: regional and
// zonal certificates (crl set) carry basicConstraints, authorityKeyIdentifier,
// subjectKeyIdentifier, keyUsage and cRLDistributionPoints; instance
// certificates (crl unset) carry basicConstraints, keyUsage,
// subjectKeyIdentifier and authorityKeyIdentifier. basicConstraints and
// keyUsage are critical, the others not.
func newCA(parent *issuer, subject []byte, now time.Time, validity time.Duration, serialLen, pathLen int, usage asn1.BitString, crl bool) (*issuer, error) {
	key, err := newP384Key()
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	aki, err := keyIDOf(parent)
	if err != nil {
		return nil, err
	}
	bc := extension{oidExtBasicConstraints, true, caConstraints{IsCA: true, PathLen: pathLen}}
	ku := extension{oidExtKeyUsage, true, usage}
	skiExt := extension{oidExtSubjectKeyID, false, ski}
	akiExt := extension{oidExtAuthorityKeyID, false, authorityKeyID{ID: aki}}
	var exts []pkix.Extension
	if crl {
		cdp := extension{oidExtCRLDistribution, false, crlDistributionPoints(crlBaseURL + randomUUID() + ".crl")}
		exts, err = encodeExtensions(bc, akiExt, skiExt, ku, cdp)
	} else {
		exts, err = encodeExtensions(bc, ku, skiExt, akiExt)
	}
	if err != nil {
		return nil, err
	}
	notBefore := now.UTC().Truncate(time.Second).Add(-caBackdate)
	tmpl := &x509.Certificate{
		SerialNumber:       randomSerial(serialLen),
		RawSubject:         subject,
		NotBefore:          notBefore,
		NotAfter:           notBefore.Add(validity),
		ExtraExtensions:    exts,
		SignatureAlgorithm: x509.ECDSAWithSHA384,
	}
	return sign(tmpl, parent, key)
}

// ensureChain (re)issues every intermediate that would not cover a leaf
// valid during [notBefore, notAfter]. Reissuing a certificate reissues the
// ones below it, since they must be signed by the new key. The root is never
// replaced: if it does not cover the window, documents simply fail to verify,
// as they would with an expired real root.
func (a *authority) ensureChain(now, notBefore, notAfter time.Time) error {
	var err error
	reissue := false
	if reissue = !a.regional.covers(notBefore, notAfter); reissue {
		subject, nerr := rawName(
			attr{oidCountry, "US"},
			attr{oidOrg, subjectOrg},
			attr{oidUnit, subjectUnit},
			attr{oidCN, randomHex(16) + "." + a.region + "." + domainCA},
		)
		if nerr != nil {
			return fmt.Errorf("encode regional subject: %w", nerr)
		}
		if a.regional, err = newCA(a.root, subject, now, regionalValidity, 16, 2, usageCA, true); err != nil {
			return fmt.Errorf("issue regional certificate: %w", err)
		}
	}
	if reissue = reissue || !a.zonal.covers(notBefore, notAfter); reissue {
		subject, nerr := rawName(
			attr{oidCN, randomHex(16) + ".zonal." + a.region + "." + domainCA},
			attr{oidUnit, subjectUnit},
			attr{oidOrg, subjectOrg},
			attr{oidCountry, "US"},
			attr{oidState, "WA"},
			attr{oidLocality, "Seattle"},
		)
		if nerr != nil {
			return fmt.Errorf("encode zonal subject: %w", nerr)
		}
		if a.zonal, err = newCA(a.regional, subject, now, zonalValidity, 16, 1, usageCA, true); err != nil {
			return fmt.Errorf("issue zonal certificate: %w", err)
		}
	}
	if reissue || !a.instance.covers(notBefore, notAfter) {
		subject, nerr := rawName(
			attr{oidCountry, "US"},
			attr{oidState, "Washington"},
			attr{oidLocality, "Seattle"},
			attr{oidOrg, subjectOrg},
			attr{oidUnit, subjectUnit},
			attr{oidCN, a.instanceID + "." + a.region + "." + domainCA},
		)
		if nerr != nil {
			return fmt.Errorf("encode instance subject: %w", nerr)
		}
		if a.instance, err = newCA(a.zonal, subject, now, instanceValidity, 20, 0, usageInstance, false); err != nil {
			return fmt.Errorf("issue instance certificate: %w", err)
		}
	}
	return nil
}

// leafWindow returns the validity period of a leaf issued for a document
// timestamped now. With T the timestamp truncated to whole seconds, the leaf
// is valid from T-3s to T+3h, both inclusive. This fits every real document
// whose leaf was issued for it (nitro-reference §1.6: the two of 2024 and
// tkhq/qos's of 2022); in the 2024 ones T is also the time in the leaf's
// serial (blocky: timestamp 14:37:39.545, leaf 14:37:36 to 17:37:39, serial
// time 14:37:39). The 2021 document shows older behaviour: a leaf valid for
// exactly 3 hours from its serial time, reused for a document 2h18m later.
func leafWindow(now time.Time) (notBefore, notAfter time.Time) {
	issued := now.UTC().Truncate(time.Second)
	return issued.Add(-leafBackdate), issued.Add(leafLifetime)
}

// issueLeaf issues a fresh document-signing certificate for a new P-384 key,
// valid as [leafWindow] says, and returns it with the cabundle [root,
// regional, zonal, instance]. Like AWS's leaves it has a structured serial
// ([leafSerial]) and only two extensions: basicConstraints (critical, not a
// CA) and keyUsage (not critical); no key identifiers.
func (a *authority) issueLeaf(now time.Time) (leafDER []byte, key *ecdsa.PrivateKey, cabundle [][]byte, err error) {
	notBefore, notAfter := leafWindow(now)
	if err := a.ensureChain(now, notBefore, notAfter); err != nil {
		return nil, nil, nil, err
	}
	key, err = newP384Key()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate leaf key: %w", err)
	}
	subject, err := rawName(
		attr{oidCountry, "US"},
		attr{oidState, "Washington"},
		attr{oidLocality, "Seattle"},
		attr{oidOrg, subjectOrg},
		attr{oidUnit, subjectUnit},
		attr{oidCN, a.moduleID + "." + a.region + "." + domainLeaf},
	)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("encode leaf subject: %w", err)
	}
	exts, err := encodeExtensions(
		extension{oidExtBasicConstraints, true, leafConstraints{}},
		extension{oidExtKeyUsage, false, usageLeaf},
	)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       leafSerial(a.enclaveID, now.UTC().Truncate(time.Second)),
		RawSubject:         subject,
		NotBefore:          notBefore,
		NotAfter:           notAfter,
		ExtraExtensions:    exts,
		SignatureAlgorithm: x509.ECDSAWithSHA384,
	}
	leaf, err := sign(tmpl, a.instance, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("issue leaf certificate: %w", err)
	}
	cabundle = [][]byte{a.root.cert.Raw, a.regional.cert.Raw, a.zonal.cert.Raw, a.instance.cert.Raw}
	return leaf.cert.Raw, key, cabundle, nil
}
