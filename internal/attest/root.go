package attest

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"
)

// AWSRootSHA256 is the lowercase hex SHA-256 of the DER encoding of the AWS
// Nitro Enclaves Root G1 certificate, as published by AWS in "Verifying the
// root of trust". The embedded root is checked against it when the package
// is initialised.
//
// Note that AWS also publishes the SHA-256 of the zip file the root is
// distributed in (8cf60e2b…ff7c); that value is not a certificate
// fingerprint and must not be compared with this one.
const AWSRootSHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

// awsRootPEM is the AWS Nitro Enclaves Root G1 certificate
// (CN=aws.nitro-enclaves, OU=AWS, O=Amazon, C=US, serial
// f93175681b90afe11d46ccb4e4e7f856, valid 2019-10-28 to 2049-10-28, P-384).
//
//go:embed awsroot.pem
var awsRootPEM []byte

// awsRootDER is the DER of the embedded root, checked against AWSRootSHA256.
var awsRootDER = mustRootDER(awsRootPEM)

// mustRootDER decodes the embedded PEM and checks its fingerprint. It panics
// at package initialisation if the embedded file was altered: that is a build
// defect, and no verification may run with a wrong root.
func mustRootDER(pemBytes []byte) []byte {
	block, rest := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" || len(block.Headers) != 0 {
		panic("attest: embedded aws root is not a pem certificate")
	}
	if next, _ := pem.Decode(rest); next != nil {
		panic("attest: embedded aws root holds more than one pem block")
	}
	sum := sha256.Sum256(block.Bytes)
	if got := hex.EncodeToString(sum[:]); got != AWSRootSHA256 {
		panic(fmt.Sprintf("attest: embedded aws root has sha-256 %s, want %s", got, AWSRootSHA256))
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		panic(fmt.Sprintf("attest: parse embedded aws root: %v", err))
	}
	return block.Bytes
}

// AWSRoot returns the AWS Nitro Enclaves Root G1 certificate, whose DER
// SHA-256 is [AWSRootSHA256]. It is the trust anchor [Verify] uses when
// [Options.Roots] is nil.
//
// Each call returns a freshly parsed certificate, so callers may not affect
// one another or the default used by [Verify] by modifying it.
func AWSRoot() *x509.Certificate {
	// ParseCertificate keeps references into its input: parse a copy.
	cert, err := x509.ParseCertificate(bytes.Clone(awsRootDER))
	if err != nil {
		// The same bytes parsed during initialisation.
		panic(fmt.Sprintf("attest: parse embedded aws root: %v", err))
	}
	return cert
}
