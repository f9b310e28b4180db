// Package keyringtest provides an in-memory stand-in for KMS for tests of
// the keyring and its callers. End-to-end tests use the KMS simulator
// (internal/kmssim) instead.
package keyringtest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrInvalidCiphertext is what FakeKMS returns for a ciphertext or context
// that does not match, like KMS's InvalidCiphertextException.
var ErrInvalidCiphertext = errors.New("InvalidCiphertextException")

// FakeKMS is an in-memory KMS: ciphertexts are AES-GCM under per-key
// material with the key ARN and the encryption context as additional data,
// so a changed context or ciphertext fails as it does with KMS. It counts
// its calls.
type FakeKMS struct {
	mu       sync.Mutex
	material map[string][]byte
	// Generated and Decrypted count calls.
	Generated, Decrypted atomic.Int64
	// Delay is added to every Decrypt.
	Delay time.Duration
	// Err, if set, is returned by every call.
	Err error
}

// New returns a FakeKMS that knows the given key ARNs.
func New(arns ...string) *FakeKMS {
	f := &FakeKMS{material: map[string][]byte{}}
	for _, a := range arns {
		m := make([]byte, 32)
		_, _ = rand.Read(m)
		f.material[a] = m
	}
	return f
}

func ctxAAD(arn string, c map[string]string) []byte {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(arn)
	for _, k := range keys {
		fmt.Fprintf(&b, "|%q=%q", k, c[k])
	}
	return []byte(b.String())
}

func (f *FakeKMS) aead(arn string) (cipher.AEAD, error) {
	f.mu.Lock()
	m, ok := f.material[arn]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("NotFoundException: %s", arn)
	}
	b, _ := aes.NewCipher(m)
	return cipher.NewGCM(b)
}

// GenerateDataKey implements keyring.KMS.
func (f *FakeKMS) GenerateDataKey(_ context.Context, arn string, c map[string]string) ([]byte, []byte, string, error) {
	f.Generated.Add(1)
	if f.Err != nil {
		return nil, nil, "", f.Err
	}
	a, err := f.aead(arn)
	if err != nil {
		return nil, nil, "", err
	}
	dk := make([]byte, 32)
	_, _ = rand.Read(dk)
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	return dk, append(nonce, a.Seal(nil, nonce, dk, ctxAAD(arn, c))...), arn, nil
}

// Decrypt implements keyring.KMS.
func (f *FakeKMS) Decrypt(_ context.Context, arn string, ct []byte, c map[string]string) ([]byte, string, error) {
	f.Decrypted.Add(1)
	time.Sleep(f.Delay)
	if f.Err != nil {
		return nil, "", f.Err
	}
	a, err := f.aead(arn)
	if err != nil {
		return nil, "", err
	}
	if len(ct) < 12 {
		return nil, "", ErrInvalidCiphertext
	}
	pt, err := a.Open(nil, ct[:12], ct[12:], ctxAAD(arn, c))
	if err != nil {
		return nil, "", ErrInvalidCiphertext
	}
	return pt, arn, nil
}

// SetCredentials accepts anything; it lets FakeKMS stand in for the
// enclave's KMS client where credentials are pushed.
func (f *FakeKMS) SetCredentials(string, string, string, time.Time) error { return nil }
