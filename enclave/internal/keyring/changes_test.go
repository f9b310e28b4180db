package keyring

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring/keyringtest"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Two enclaves behind two parents share one key store: a key disabled
// through A keeps signing in B's cache until B applies the change (the
// parents' change log). Supersede drops B's older copy, and B then loads
// only the new generation, never the old blob a slow load may still hand it.
func TestSupersedeDropsOlderCopies(t *testing.T) {
	ctx := context.Background()
	kms := keyringtest.New(arnA)
	newRing := func() *Keyring {
		r, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	a, b := newRing(), newRing()
	c, err := a.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	id := c.Header.KeyId
	gen1 := blobs(c)
	require.NoError(t, b.Load(ctx, []Blobs{gen1})[0])
	_, err = signDigest(t, b, id)
	require.NoError(t, err, "B signs with the key it loaded")

	// A change B already has (or older) leaves B's copy alone.
	assert.False(t, b.Supersede(id, 1))
	_, err = signDigest(t, b, id)
	require.NoError(t, err)

	d, err := a.SetState(ctx, id, signerv1.KeyState_KEY_STATE_DISABLED, gen1)
	require.NoError(t, err)
	require.EqualValues(t, 2, d.Header.Generation)
	gen2 := Blobs{KeyID: id, SealedKey: d.SealedKey, SealedKEK: c.SealedKEK}
	_, err = signDigest(t, b, id)
	require.NoError(t, err, "precondition: B has not heard of the disable")

	assert.True(t, b.Supersede(id, 2), "B's generation-1 copy is dropped")
	_, err = signDigest(t, b, id)
	require.ErrorIs(t, err, ErrNotLoaded, "B's next use loads the stored blob")
	require.ErrorIs(t, b.Load(ctx, []Blobs{gen1})[0], ErrStale, "the old, enabled blob no longer loads in B")
	require.NoError(t, b.Load(ctx, []Blobs{gen2})[0])
	_, err = signDigest(t, b, id)
	require.ErrorIs(t, err, ErrDisabled, "B now acts on the disable")
	assert.False(t, b.Supersede(id, 2), "a repeated change is a no-op")

	// A deleted key stays deleted whatever change comes after.
	b.Evict(id, true)
	assert.False(t, b.Supersede(id, 9))
	require.ErrorIs(t, b.Load(ctx, []Blobs{gen2})[0], ErrDeleted)

	// Made-up ids are ignored.
	assert.False(t, b.Supersede("key_nothex", 3))
	assert.False(t, b.Supersede("", 3))
}

func TestEvictAll(t *testing.T) {
	ctx := context.Background()
	kms := keyringtest.New(arnA)
	r, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	var ids []string
	var gen1 Blobs
	for i := range 3 {
		c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_ED25519, nil)
		require.NoError(t, err)
		ids = append(ids, c.Header.KeyId)
		if i == 0 {
			gen1 = blobs(c)
		}
	}
	// The first key is at generation 2 when the cache is dropped.
	d, err := r.SetState(ctx, ids[0], signerv1.KeyState_KEY_STATE_DISABLED, gen1)
	require.NoError(t, err)
	require.NoError(t, r.Load(ctx, []Blobs{{KeyID: ids[0], SealedKey: d.SealedKey, SealedKEK: gen1.SealedKEK}})[0])

	assert.Equal(t, 3, r.EvictAll())
	assert.Equal(t, 0, r.Len())
	for _, id := range ids {
		_, err := signDigest(t, r, id)
		require.ErrorIs(t, err, ErrNotLoaded, id)
	}
	require.ErrorIs(t, r.Load(ctx, []Blobs{gen1})[0], ErrStale, "the floor remembers generation 2")
	assert.Equal(t, 0, r.EvictAll())

	// The cache is usable afterwards.
	c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	_, err = signDigest(t, r, c.Header.KeyId)
	require.NoError(t, err)
}

// gatedKMS blocks Decrypt until release is closed, and says when it is
// blocked.
type gatedKMS struct {
	*keyringtest.FakeKMS
	entered chan struct{}
	release chan struct{}
}

func (g *gatedKMS) Decrypt(ctx context.Context, arn string, ct []byte, c map[string]string) ([]byte, string, error) {
	close(g.entered)
	<-g.release
	return g.FakeKMS.Decrypt(ctx, arn, ct, c)
}

// EvictAll refuses the loads running when it comes (the change log's gap
// path). B's parent read key K's generation-1 (enabled) blob and is loading
// it (KEK unwrap in flight) when A disables K (generation 2) and B's
// parent, too far behind to hand over the change, sends EvictAll. Unlike
// Supersede(K, 2), EvictAll raises no floor for K; without the fence B
// would cache the enabled generation 1 and, its position past the entry,
// never learn of the disable.
func TestEvictAllRefusesLoadsInFlight(t *testing.T) {
	ctx := context.Background()
	kms := keyringtest.New(arnA)
	a, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	g := &gatedKMS{FakeKMS: kms, entered: make(chan struct{}), release: make(chan struct{})}
	b, err := New(Config{KMS: g, KMSKeys: []string{arnA}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	c, err := a.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	id := c.Header.KeyId
	gen1 := blobs(c)

	done := make(chan error, 1)
	go func() { done <- b.Load(ctx, []Blobs{gen1})[0] }() // B's parent read gen 1 before A's write
	<-g.entered

	d, err := a.SetState(ctx, id, signerv1.KeyState_KEY_STATE_DISABLED, gen1)
	require.NoError(t, err)
	require.EqualValues(t, 2, d.Header.Generation)
	b.EvictAll() // the gap sync covering A's change
	close(g.release)
	loadErr := <-done

	_, signErr := signDigest(t, b, id)
	require.True(t, loadErr != nil || signErr != nil,
		"a load that began before EvictAll installed the superseded, enabled generation 1; B signs with a key disabled through A")
}
