// Package keyring is the only place in the enclave where plaintext private
// keys live.
//
// This version keeps keys in enclave memory only: they are lost when the
// enclave stops. Sealing under a KMS data key and storage by the parent come
// next; callers use the keyring through the small interface they declare, so
// a sealed implementation can replace [Memory] without touching them.
//
// Private key bytes never leave the package except as the argument of the
// callback given to [Memory.Use], which must not retain them. Deleted keys are
// zeroized.
package keyring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Errors callers branch on.
var (
	// ErrNotFound means no key has the given id.
	ErrNotFound = errors.New("key not found")
	// ErrDisabled means the key exists but may not sign.
	ErrDisabled = errors.New("key is disabled")
	// ErrUnknownAlgorithm means no signature scheme is registered for the
	// requested algorithm.
	ErrUnknownAlgorithm = errors.New("unknown algorithm")
)

// IDPrefix starts every key id; 32 lowercase hex digits follow.
const IDPrefix = "key_"

// Key is the public description of a key.
type Key struct {
	ID        string
	Algorithm signerv1.Algorithm
	PublicKey []byte
	State     signerv1.KeyState
	CreatedAt time.Time
	Labels    map[string]string
}

type entry struct {
	scheme sign.Scheme
	priv   []byte
	key    Key
}

// Config configures a [Memory] keyring.
type Config struct {
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Memory is an in-memory keyring. It is safe for concurrent use.
type Memory struct {
	now  func() time.Time
	mu   sync.RWMutex
	keys map[string]*entry
}

// NewMemory returns an empty in-memory keyring.
func NewMemory(cfg Config) *Memory {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Memory{now: cfg.Now, keys: make(map[string]*entry)}
}

func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read key id: %w", err)
	}
	return IDPrefix + hex.EncodeToString(b[:]), nil
}

// ValidID reports whether s has the shape of a key id. Unknown ids of the
// right shape are reported by the keyring as [ErrNotFound].
func ValidID(s string) bool {
	rest, ok := strings.CutPrefix(s, IDPrefix)
	if !ok || len(rest) != 32 {
		return false
	}
	for _, c := range []byte(rest) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Create generates a key of the given algorithm inside the enclave. Labels
// are copied.
func (m *Memory) Create(_ context.Context, alg signerv1.Algorithm, labels map[string]string) (Key, error) {
	s, ok := sign.Lookup(alg)
	if !ok {
		return Key{}, fmt.Errorf("%w: %v", ErrUnknownAlgorithm, alg)
	}
	priv, pub, err := s.Generate()
	if err != nil {
		return Key{}, err
	}
	id, err := newID()
	if err != nil {
		sign.Zero(priv)
		return Key{}, err
	}
	k := Key{
		ID:        id,
		Algorithm: alg,
		PublicKey: pub,
		State:     signerv1.KeyState_KEY_STATE_ENABLED,
		CreatedAt: m.now(),
		Labels:    copyLabels(labels),
	}
	m.mu.Lock()
	m.keys[id] = &entry{scheme: s, priv: priv, key: k}
	m.mu.Unlock()
	return k.clone(), nil
}

// Get returns the public description of a key.
func (m *Memory) Get(_ context.Context, id string) (Key, error) {
	m.mu.RLock()
	e, ok := m.keys[id]
	var k Key
	if ok {
		k = e.key.clone()
	}
	m.mu.RUnlock()
	if !ok {
		return Key{}, ErrNotFound
	}
	return k, nil
}

// List returns up to limit keys whose ids sort after the given id, in id
// order.
func (m *Memory) List(_ context.Context, after string, limit int) ([]Key, error) {
	m.mu.RLock()
	ids := make([]string, 0, len(m.keys))
	for id := range m.keys {
		if id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]Key, len(ids))
	for i, id := range ids {
		out[i] = m.keys[id].key.clone()
	}
	m.mu.RUnlock()
	return out, nil
}

// Use calls fn with the key's scheme and private key bytes, under a read
// lock. fn must not retain or copy priv. It returns [ErrNotFound] or
// [ErrDisabled] without calling fn, and the key's algorithm otherwise.
func (m *Memory) Use(_ context.Context, id string, fn func(s sign.Scheme, priv []byte) error) (signerv1.Algorithm, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.keys[id]
	if !ok {
		return 0, ErrNotFound
	}
	if e.key.State != signerv1.KeyState_KEY_STATE_ENABLED {
		return e.key.Algorithm, ErrDisabled
	}
	return e.key.Algorithm, fn(e.scheme, e.priv)
}

// Len returns the number of keys held.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.keys)
}

// Delete removes a key and zeroizes its private bytes.
func (m *Memory) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[id]
	if !ok {
		return ErrNotFound
	}
	sign.Zero(e.priv)
	delete(m.keys, id)
	return nil
}

// Close zeroizes every private key. The keyring must not be used afterwards.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, e := range m.keys {
		sign.Zero(e.priv)
		delete(m.keys, id)
	}
	return nil
}

func (k Key) clone() Key {
	k.PublicKey = slices.Clone(k.PublicKey)
	k.Labels = copyLabels(k.Labels)
	return k
}

func copyLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}
