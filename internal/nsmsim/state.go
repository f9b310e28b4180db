//go:build !nosim

package nsmsim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/fsutil"
)

// Files kept in [Config.StateDir].
const (
	// RootCertFile is the name of the simulated root certificate (PEM, mode
	// 0644) inside [Config.StateDir]. Verifiers in other processes (a KMS
	// simulator, a CLI) can trust it with [LoadRoot].
	RootCertFile = "root.pem"
	// RootKeyFile is the name of the simulated root private key (PKCS #8
	// PEM, mode 0600) inside [Config.StateDir].
	RootKeyFile = "root-key.pem"
	lockFile    = ".lock"
)

// LoadRoot reads the simulated root certificate persisted in stateDir by a
// [Simulator] created with [Config.StateDir] set. It returns an error
// wrapping [fs.ErrNotExist] when no simulator has written one yet.
func LoadRoot(stateDir string) (*x509.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, RootCertFile))
	if err != nil {
		return nil, fmt.Errorf("read simulated root: %w", err)
	}
	return parseRootPEM(b)
}

func parseRootPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("simulated root: no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse simulated root: %w", err)
	}
	return cert, nil
}

// loadOrCreateRoot returns the root persisted in dir, creating and persisting
// a new one when there is none. Creation is serialised with an exclusive lock
// on dir/.lock, so simulators started concurrently over the same directory,
// in one process or several, end up sharing one root.
func loadOrCreateRoot(dir string, now time.Time) (*issuer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	unlock, err := fsutil.Lock(filepath.Join(dir, lockFile), true)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	defer unlock()

	certPath := filepath.Join(dir, RootCertFile)
	keyPath := filepath.Join(dir, RootKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return loadRoot(certPath, keyPath)
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		// Fresh directory: create below.
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("stat %s: %w", certPath, certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("stat %s: %w", keyPath, keyErr)
	default:
		return nil, fmt.Errorf("state dir %s holds only one of %s and %s; remove it or restore the other", dir, RootCertFile, RootKeyFile)
	}

	root, err := newRoot(now)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(root.key)
	if err != nil {
		return nil, fmt.Errorf("encode root key: %w", err)
	}
	// The key goes first: a crash between the two writes leaves a key
	// without a certificate, which is reported rather than silently
	// replaced.
	if err := fsutil.WriteFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("write root key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.cert.Raw}), 0o644); err != nil {
		return nil, fmt.Errorf("write root certificate: %w", err)
	}
	return root, nil
}

// loadRoot reads and cross-checks a persisted root certificate and key.
func loadRoot(certPath, keyPath string) (*issuer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read root certificate: %w", err)
	}
	cert, err := parseRootPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("stat root key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("root key %s has mode %v; it must not be accessible by group or others", keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read root key: %w", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY PEM block", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse root key %s: %w", keyPath, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P384() {
		return nil, fmt.Errorf("root key %s is not an ECDSA P-384 key", keyPath)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("root key %s does not match certificate %s", keyPath, certPath)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("root certificate %s is not a CA", certPath)
	}
	return &issuer{cert: cert, key: key}, nil
}
