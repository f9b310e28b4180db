package kms

import (
	"crypto/x509"
	"fmt"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// PublicRoots returns the public web PKI roots compiled into the binary (the
// NSS trust store via golang.org/x/crypto/x509roots), the only roots the
// enclave trusts for KMS in production. The enclave image has no file
// system certificates and never reads any.
func PublicRoots() (*x509.CertPool, error) {
	p := x509.NewCertPool()
	for r := range bundle.Roots() {
		c, err := x509.ParseCertificate(r.Certificate)
		if err != nil {
			return nil, fmt.Errorf("kms: embedded root: %w", err)
		}
		if r.Constraint == nil {
			p.AddCert(c)
		} else {
			p.AddCertWithConstraint(c, r.Constraint)
		}
	}
	return p, nil
}
