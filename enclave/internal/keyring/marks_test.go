package keyring

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring/keyringtest"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// "Disabling fails closed: the cached key stops signing now, before the new
// blob is stored" holds after the key leaves the cache too (random eviction
// of a full cache, or EvictKey): the old, enabled gen-1 blob, still the
// stored one until the parent's compare-and-swap lands, loads disabled.
// Once the disabled blob is stored and the key enabled again, it signs.
func TestDisableSurvivesEviction(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		evict func(t *testing.T, r *Keyring, id string)
	}{
		{"cache full", func(t *testing.T, r *Keyring, id string) {
			// Another key is created; the cache (MaxKeys 1) evicts the only
			// other key: the disabled one.
			_, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
			require.NoError(t, err)
			require.Equal(t, 1, r.Len())
			r.mu.RLock()
			_, cached := r.index[mustID(t, id)]
			r.mu.RUnlock()
			require.False(t, cached, "precondition: the disabled key was evicted")
		}},
		{"EvictKey", func(_ *testing.T, r *Keyring, id string) { r.Evict(id, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kms := keyringtest.New(arnA)
			r, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, MaxKeys: 1, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			t.Cleanup(func() { _ = r.Close() })
			c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
			require.NoError(t, err)
			id := c.Header.KeyId

			d, err := r.SetState(ctx, id, signerv1.KeyState_KEY_STATE_DISABLED, blobs(c))
			require.NoError(t, err)
			require.EqualValues(t, 2, d.Header.Generation)
			_, err = signDigest(t, r, id)
			require.ErrorIs(t, err, ErrDisabled, "precondition: disabling fails closed while cached")

			tc.evict(t, r, id)

			// The parent answers "key not loaded" by loading the stored
			// blob, still gen 1 (the CAS of gen 2 has not landed, or failed).
			loadErr := r.Load(ctx, []Blobs{blobs(c)})[0]
			_, signErr := signDigest(t, r, id)
			require.True(t, loadErr != nil || signErr != nil,
				"a key this enclave just disabled (sealed gen 2) signs again from its gen-1 blob after eviction: load=%v sign=%v", loadErr, signErr)

			// The disabled blob lands; enabling re-seals gen 3, which signs.
			r.Evict(id, false)
			disabled := Blobs{KeyID: id, SealedKey: d.SealedKey, SealedKEK: c.SealedKEK}
			require.NoError(t, r.Load(ctx, []Blobs{disabled})[0])
			e, err := r.SetState(ctx, id, signerv1.KeyState_KEY_STATE_ENABLED, disabled)
			require.NoError(t, err)
			require.NoError(t, r.Load(ctx, []Blobs{{KeyID: id, SealedKey: e.SealedKey, SealedKEK: c.SealedKEK}})[0])
			_, err = signDigest(t, r, id)
			require.NoError(t, err)
		})
	}
}

// After a disable whose new blob was never stored (compare-and-swap
// conflict, store outage), enabling the key again with the stored, enabled
// gen-1 blob answers "unchanged" and lets the cached key sign again.
func TestEnableAfterAbortedDisable(t *testing.T) {
	ctx := context.Background()
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	id := c.Header.KeyId

	_, err = r.SetState(ctx, id, signerv1.KeyState_KEY_STATE_DISABLED, blobs(c))
	require.NoError(t, err)
	// The gen-2 blob is never stored. The operator enables the key again,
	// with the stored (gen-1, enabled) blob.
	e, err := r.SetState(ctx, id, signerv1.KeyState_KEY_STATE_ENABLED, blobs(c))
	require.NoError(t, err)
	require.True(t, e.Unchanged)
	require.Equal(t, signerv1.KeyState_KEY_STATE_ENABLED, e.Header.State)
	// The parent loads the stored blob, as after every state change.
	require.NoError(t, r.Load(ctx, []Blobs{blobs(c)})[0])
	_, err = signDigest(t, r, id)
	require.NoError(t, err, "stored state and the enclave's answer say enabled, the cache still says disabled")
}

func mustID(t *testing.T, id string) [16]byte {
	t.Helper()
	b, ok := parseKeyID(id)
	require.True(t, ok)
	return b
}
