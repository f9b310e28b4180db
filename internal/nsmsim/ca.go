//go:build !nosim

package nsmsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"
	"time"
)

// Validity periods of the simulated chain, after the shapes observed in real
// documents (nitro-reference §1.3).
const (
	rootBackdate     = 24 * time.Hour
	rootLifetime     = 30 * 365 * 24 * time.Hour
	caBackdate       = time.Hour
	regionalLifetime = 20 * 24 * time.Hour
	zonalLifetime    = 5 * 24 * time.Hour
	instanceLifetime = 24 * time.Hour
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

// attr is one subject attribute.
type attr struct {
	oid asn1.ObjectIdentifier
	val string
}

// rawName DER-encodes a distinguished name with one attribute per RDN, in
// the given order.
func rawName(attrs ...attr) ([]byte, error) {
	seq := make(pkix.RDNSequence, 0, len(attrs))
	for _, a := range attrs {
		seq = append(seq, pkix.RelativeDistinguishedNameSET{{Type: a.oid, Value: a.val}})
	}
	return asn1.Marshal(seq)
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

	root     *issuer
	regional *issuer
	zonal    *issuer
	instance *issuer
}

// newP384Key generates a fresh ECDSA P-384 key from the system CSPRNG.
func newP384Key() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x01 // keep it 16 bytes long
	return new(big.Int).SetBytes(b)
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

// newRoot creates a self-signed root valid from a day before now for 30
// years, shaped like AWS Nitro Enclaves Root-G1.
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
	notBefore := now.UTC().Truncate(time.Second).Add(-rootBackdate)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		RawSubject:            subject,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            -1,
		SignatureAlgorithm:    x509.ECDSAWithSHA384,
	}
	return sign(tmpl, nil, key)
}

// sign issues tmpl for key, signed by parent, or self-signed when parent is
// nil.
func sign(tmpl *x509.Certificate, parent *issuer, key *ecdsa.PrivateKey) (*issuer, error) {
	parentCert, parentKey := tmpl, key
	if parent != nil {
		parentCert, parentKey = parent.cert, parent.key
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

// newCA issues an intermediate CA certificate under parent, valid from an
// hour before now for lifetime.
func newCA(parent *issuer, subject []byte, now time.Time, lifetime time.Duration, pathLen int, usage x509.KeyUsage, crl bool) (*issuer, error) {
	key, err := newP384Key()
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	notBefore := now.UTC().Truncate(time.Second).Add(-caBackdate)
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		RawSubject:            subject,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(lifetime),
		KeyUsage:              usage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
		SignatureAlgorithm:    x509.ECDSAWithSHA384,
	}
	if crl {
		tmpl.CRLDistributionPoints = []string{crlBaseURL + randomUUID() + ".crl"}
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
		usage := x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		if a.regional, err = newCA(a.root, subject, now, regionalLifetime, 2, usage, true); err != nil {
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
		usage := x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		if a.zonal, err = newCA(a.regional, subject, now, zonalLifetime, 1, usage, true); err != nil {
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
		if a.instance, err = newCA(a.zonal, subject, now, instanceLifetime, 0, x509.KeyUsageCertSign, false); err != nil {
			return fmt.Errorf("issue instance certificate: %w", err)
		}
	}
	return nil
}

// leafWindow returns the validity period of a leaf issued at now.
func leafWindow(now time.Time) (notBefore, notAfter time.Time) {
	notBefore = now.UTC().Truncate(time.Second).Add(-leafBackdate)
	return notBefore, notBefore.Add(leafLifetime)
}

// issueLeaf issues a fresh document-signing certificate for a new P-384 key,
// valid from a few seconds before now for exactly three hours, and returns it
// with the cabundle [root, regional, zonal, instance].
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
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		RawSubject:   subject,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		// AWS leaves carry digitalSignature and nonRepudiation.
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
		IsCA:                  false,
		SignatureAlgorithm:    x509.ECDSAWithSHA384,
	}
	leaf, err := sign(tmpl, a.instance, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("issue leaf certificate: %w", err)
	}
	cabundle = [][]byte{a.root.cert.Raw, a.regional.cert.Raw, a.zonal.cert.Raw, a.instance.cert.Raw}
	return leaf.cert.Raw, key, cabundle, nil
}
