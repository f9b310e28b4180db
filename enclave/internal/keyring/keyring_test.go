package keyring

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring/keyringtest"
	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	"github.com/nitrosigner/nitrosigner/internal/link"
	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const (
	arnA = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-0000-0000-0000-000000000001"
	arnB = "arn:aws:kms:us-east-1:111122223333:key/bbbbbbbb-0000-0000-0000-000000000002"
	arnX = "arn:aws:kms:us-east-1:999999999999:key/cccccccc-0000-0000-0000-000000000003"
)

func newRing(t testing.TB, kms KMS, arns ...string) *Keyring {
	t.Helper()
	if len(arns) == 0 {
		arns = []string{arnA}
	}
	r, err := New(Config{KMS: kms, KMSKeys: arns, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func signDigest(t *testing.T, r *Keyring, id string) ([]byte, error) {
	t.Helper()
	digest := sha256.Sum256([]byte("payload"))
	var sig []byte
	_, err := r.Use(context.Background(), id, false, func(sc sign.Scheme, priv, _ []byte) (err error) {
		sig, err = sc.SignDigest(priv, digest[:])
		return err
	})
	return sig, err
}

func verifySecp(t *testing.T, pub, sig []byte) {
	t.Helper()
	digest := sha256.Sum256([]byte("payload"))
	compact := append([]byte{27 + sig[64]}, sig[:64]...)
	got, _, err := ecdsa.RecoverCompact(compact, digest[:])
	require.NoError(t, err)
	want, err := secp256k1.ParsePubKey(pub)
	require.NoError(t, err)
	require.True(t, got.IsEqual(want))
}

func blobs(c *Created) Blobs {
	return Blobs{KeyID: c.Header.KeyId, SealedKey: c.SealedKey, SealedKEK: c.SealedKEK}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{KMSKeys: []string{arnA}})
	require.Error(t, err)
	_, err = New(Config{KMS: keyringtest.New()})
	require.Error(t, err)
	_, err = New(Config{KMS: keyringtest.New(), KMSKeys: []string{"alias/signer"}})
	require.ErrorContains(t, err, "not a KMS key ARN")
}

func TestCreateSignAndReloadAfterRestart(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	c, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, map[string]string{"team": "ops"})
	require.NoError(t, err)
	require.Equal(t, arnA, c.KMSKeyARN)
	require.EqualValues(t, 1, c.Header.Generation)
	sig, err := signDigest(t, r, c.Header.KeyId)
	require.NoError(t, err)
	verifySecp(t, c.Header.PublicKey, sig)
	require.EqualValues(t, 1, kms.Generated.Load())

	// A restarted enclave knows nothing until the parent loads the blobs.
	r2 := newRing(t, kms)
	_, err = signDigest(t, r2, c.Header.KeyId)
	require.ErrorIs(t, err, ErrNotLoaded)
	errs := r2.Load(context.Background(), []Blobs{blobs(c)})
	require.NoError(t, errs[0])
	sig, err = signDigest(t, r2, c.Header.KeyId)
	require.NoError(t, err)
	verifySecp(t, c.Header.PublicKey, sig)
	require.EqualValues(t, 1, kms.Decrypted.Load())
}

func TestEd25519AndP256RoundTrip(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	for _, alg := range []signerv1.Algorithm{signerv1.Algorithm_ALGORITHM_ED25519, signerv1.Algorithm_ALGORITHM_P256} {
		c, err := r.Create(context.Background(), alg, nil)
		require.NoError(t, err)
		r2 := newRing(t, kms)
		require.NoError(t, r2.Load(context.Background(), []Blobs{blobs(c)})[0])
		_, err = r2.Use(context.Background(), c.Header.KeyId, true, func(sc sign.Scheme, priv, pub []byte) error {
			require.Equal(t, c.Header.PublicKey, pub)
			if alg == signerv1.Algorithm_ALGORITHM_ED25519 {
				sig, err := sc.SignMessage(priv, []byte("m"))
				require.NoError(t, err)
				require.True(t, ed25519.Verify(pub, []byte("m"), sig))
			}
			return nil
		})
		require.NoError(t, err)
	}
}

func TestColdLoadOneKMSCallPerKEK(t *testing.T) {
	kms := keyringtest.New(arnA)
	kms.Delay = 5 * time.Millisecond
	r, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, KEKMaxKeys: 50, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var items []Blobs
	for range 200 {
		c, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
		require.NoError(t, err)
		items = append(items, blobs(c))
	}
	require.EqualValues(t, 4, kms.Generated.Load(), "a new KEK every 50 keys")

	r2 := newRing(t, kms)
	// Load from many goroutines at once: concurrent loads of one KEK make
	// one KMS call.
	var wg sync.WaitGroup
	for i := range items {
		wg.Go(func() { assert.NoError(t, r2.Load(context.Background(), items[i:i+1])[0]) })
	}
	wg.Wait()
	require.EqualValues(t, 4, kms.Decrypted.Load())
	require.Equal(t, 200, r2.Len())
	for _, it := range items[:5] {
		_, err := signDigest(t, r2, it.KeyID)
		require.NoError(t, err)
	}
	require.EqualValues(t, 4, kms.Decrypted.Load(), "warm signing never calls KMS")
}

func TestSwappedBlobRefused(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	a, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	b, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	r2 := newRing(t, kms)
	swapped := Blobs{KeyID: a.Header.KeyId, SealedKey: b.SealedKey, SealedKEK: b.SealedKEK}
	require.ErrorIs(t, r2.Load(context.Background(), []Blobs{swapped})[0], ErrMismatch)
	_, err = r2.SetState(context.Background(), a.Header.KeyId, signerv1.KeyState_KEY_STATE_DISABLED, swapped)
	require.ErrorIs(t, err, ErrMismatch)

	// A header edited to claim another key's id (re-encoded, so it parses)
	// fails authentication.
	var sk sealedv1.SealedKey
	require.NoError(t, proto.Unmarshal(b.SealedKey, &sk))
	var h sealedv1.SealedKeyHeader
	require.NoError(t, proto.Unmarshal(sk.Header, &h))
	h.KeyId = a.Header.KeyId
	sk.Header, err = proto.Marshal(&h)
	require.NoError(t, err)
	forged, err := proto.Marshal(&sk)
	require.NoError(t, err)
	err = r2.Load(context.Background(), []Blobs{{KeyID: a.Header.KeyId, SealedKey: forged, SealedKEK: b.SealedKEK}})[0]
	require.ErrorIs(t, err, seal.ErrOpen)
}

func TestEveryFlippedByteRefused(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	c, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, map[string]string{"a": "b"})
	require.NoError(t, err)
	// One keyring with the KEK already unwrapped checks the key blob; a
	// fresh one per flip checks the KEK blob.
	warm := newRing(t, kms)
	require.NoError(t, warm.Load(context.Background(), []Blobs{blobs(c)})[0])
	warm.Evict(c.Header.KeyId, false)
	for i := range c.SealedKey {
		for _, bit := range []byte{0x01, 0x80} {
			bad := slices.Clone(c.SealedKey)
			bad[i] ^= bit
			err := warm.Load(context.Background(), []Blobs{{KeyID: c.Header.KeyId, SealedKey: bad, SealedKEK: c.SealedKEK}})[0]
			require.Error(t, err, "key blob byte %d bit %#x", i, bit)
			require.Zero(t, warm.Len())
		}
	}
	for i := range c.SealedKEK {
		bad := slices.Clone(c.SealedKEK)
		bad[i] ^= 0x01
		cold := newRing(t, kms)
		err := cold.Load(context.Background(), []Blobs{{KeyID: c.Header.KeyId, SealedKey: c.SealedKey, SealedKEK: bad}})[0]
		require.Error(t, err, "KEK blob byte %d", i)
	}
}

func TestKEKContextEditedRefused(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	c, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	var k sealedv1.SealedKEK
	require.NoError(t, proto.Unmarshal(c.SealedKEK, &k))
	k.EncryptionContext[seal.ContextPurpose] = "something-else"
	edited, err := proto.Marshal(&k)
	require.NoError(t, err)
	cold := newRing(t, kms)
	err = cold.Load(context.Background(), []Blobs{{KeyID: c.Header.KeyId, SealedKey: c.SealedKey, SealedKEK: edited}})[0]
	require.ErrorIs(t, err, seal.ErrMalformed)
	require.Zero(t, kms.Decrypted.Load(), "refused before calling KMS")
}

func TestUntrustedKMSKeyRefused(t *testing.T) {
	// The parent made its own KEK under a KMS key it controls (so it knows
	// the data key) and sealed a key of its choosing under it. The enclave
	// must not use it: the KMS key is not one it trusts.
	kms := keyringtest.New(arnA, arnX)
	rogue := newRing(t, kms, arnX)
	c, err := rogue.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	r := newRing(t, kms, arnA)
	before := kms.Decrypted.Load()
	err = r.Load(context.Background(), []Blobs{blobs(c)})[0]
	require.ErrorIs(t, err, ErrKMSKeyNotAllowed)
	require.Equal(t, before, kms.Decrypted.Load(), "no KMS call for an untrusted key")
	_, err = r.Rotate(context.Background(), c.Header.KeyId, arnX, blobs(c))
	require.ErrorIs(t, err, ErrKMSKeyNotAllowed)
}

func TestDisableEnableAndStale(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	ctx := context.Background()
	c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	d, err := r.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_DISABLED, blobs(c))
	require.NoError(t, err)
	require.EqualValues(t, 2, d.Header.Generation)
	// Disabling fails closed: the cached key stops at once, before the
	// new blob is even stored, and a reload of the old one does not undo it.
	_, err = signDigest(t, r, c.Header.KeyId)
	require.ErrorIs(t, err, ErrDisabled)
	require.NoError(t, r.Load(ctx, []Blobs{blobs(c)})[0], "same generation: no change")
	_, err = signDigest(t, r, c.Header.KeyId)
	require.ErrorIs(t, err, ErrDisabled)
	require.NoError(t, r.Load(ctx, []Blobs{{KeyID: c.Header.KeyId, SealedKey: d.SealedKey, SealedKEK: c.SealedKEK}})[0])
	_, err = signDigest(t, r, c.Header.KeyId)
	require.ErrorIs(t, err, ErrDisabled)
	// Replaying the older, enabled blob to this enclave is refused, also
	// after the key left the cache.
	require.ErrorIs(t, r.Load(ctx, []Blobs{blobs(c)})[0], ErrStale)
	r.Evict(c.Header.KeyId, false)
	require.ErrorIs(t, r.Load(ctx, []Blobs{blobs(c)})[0], ErrStale, "the generation floor outlives eviction")
	_, err = r.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_ENABLED, blobs(c))
	require.ErrorIs(t, err, ErrStale)

	// Disabled survives a restart: a new enclave loads the stored blob.
	r2 := newRing(t, kms)
	require.NoError(t, r2.Load(ctx, []Blobs{{KeyID: c.Header.KeyId, SealedKey: d.SealedKey, SealedKEK: c.SealedKEK}})[0])
	_, err = signDigest(t, r2, c.Header.KeyId)
	require.ErrorIs(t, err, ErrDisabled)
	e, err := r2.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_ENABLED,
		Blobs{KeyID: c.Header.KeyId, SealedKey: d.SealedKey, SealedKEK: c.SealedKEK})
	require.NoError(t, err)
	require.NoError(t, r2.Load(ctx, []Blobs{{KeyID: c.Header.KeyId, SealedKey: e.SealedKey, SealedKEK: c.SealedKEK}})[0])
	_, err = signDigest(t, r2, c.Header.KeyId)
	require.NoError(t, err)
}

func TestSetStateAlreadySet(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	ctx := context.Background()
	c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)

	// Enabling an enabled key hands back the blob it was given.
	e, err := r.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_ENABLED, blobs(c))
	require.NoError(t, err)
	require.True(t, e.Unchanged)
	require.Equal(t, c.SealedKey, e.SealedKey)
	require.EqualValues(t, 1, e.Header.Generation)
	_, err = signDigest(t, r, c.Header.KeyId)
	require.NoError(t, err)

	// A second enclave still caches the key enabled when the first one
	// disables it. Disabling it there again re-seals nothing, but its
	// cached key stops at once all the same.
	r2 := newRing(t, kms)
	require.NoError(t, r2.Load(ctx, []Blobs{blobs(c)})[0])
	d, err := r.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_DISABLED, blobs(c))
	require.NoError(t, err)
	require.False(t, d.Unchanged)
	db := Blobs{KeyID: c.Header.KeyId, SealedKey: d.SealedKey, SealedKEK: c.SealedKEK}
	again, err := r2.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_DISABLED, db)
	require.NoError(t, err)
	require.True(t, again.Unchanged)
	require.Equal(t, d.SealedKey, again.SealedKey)
	require.EqualValues(t, 2, again.Header.Generation)
	require.Equal(t, signerv1.KeyState_KEY_STATE_DISABLED, again.Header.State)
	_, err = signDigest(t, r2, c.Header.KeyId)
	require.ErrorIs(t, err, ErrDisabled)

	// Nothing is handed back unchecked: another key's blob is refused.
	o, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	_, err = r.SetState(ctx, c.Header.KeyId, signerv1.KeyState_KEY_STATE_ENABLED,
		Blobs{KeyID: c.Header.KeyId, SealedKey: o.SealedKey, SealedKEK: o.SealedKEK})
	require.ErrorIs(t, err, ErrMismatch)
}

func TestRotateKeepsKeyChangesKEK(t *testing.T) {
	kms := keyringtest.New(arnA, arnB)
	r := newRing(t, kms, arnA, arnB)
	ctx := context.Background()
	c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	rot, err := r.Rotate(ctx, c.Header.KeyId, arnB, blobs(c))
	require.NoError(t, err)
	require.Equal(t, arnB, rot.KMSKeyARN)
	require.NotEqual(t, c.Header.KekId, rot.Header.KekId)
	require.Equal(t, c.Header.PublicKey, rot.Header.PublicKey)
	require.NotEmpty(t, rot.SealedKEK)

	r2 := newRing(t, kms, arnA, arnB)
	nb := Blobs{KeyID: c.Header.KeyId, SealedKey: rot.SealedKey, SealedKEK: rot.SealedKEK}
	require.NoError(t, r2.Load(ctx, []Blobs{nb})[0])
	sig, err := signDigest(t, r2, c.Header.KeyId)
	require.NoError(t, err)
	verifySecp(t, c.Header.PublicKey, sig)
	// The new blob does not open with the old KEK blob.
	r3 := newRing(t, kms, arnA, arnB)
	require.ErrorIs(t, r3.Load(ctx, []Blobs{{KeyID: c.Header.KeyId, SealedKey: rot.SealedKey, SealedKEK: c.SealedKEK}})[0], ErrMismatch)
}

func TestPublicKeyMismatchCaughtBeforeSigning(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	ctx := context.Background()
	c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	other, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.NoError(t, err)
	// Seal the first key's private key under a header that claims the other
	// key's public key: only someone holding the KEK can do this, so it is
	// a bug or corruption, and it must never sign.
	kid, _ := seal.ParseID(seal.KEKIDPrefix, c.Header.KekId)
	kk := r.keks[kid]
	var priv []byte
	_, err = r.Use(context.Background(), c.Header.KeyId, false, func(_ sign.Scheme, p, _ []byte) error { priv = slices.Clone(p); return nil })
	require.NoError(t, err)
	h := cloneHeader(c.Header)
	h.PublicKey = other.Header.PublicKey
	bad, err := seal.SealKey(kk.aead, h, priv)
	clear(priv)
	require.NoError(t, err)
	var logs syncbuf.Buffer
	r2, err := New(Config{KMS: kms, KMSKeys: []string{arnA},
		Logger: slog.New(link.LogRequestIDs(slog.NewTextHandler(&logs, nil)))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r2.Close() })
	require.NoError(t, r2.Load(ctx, []Blobs{{KeyID: c.Header.KeyId, SealedKey: bad, SealedKEK: c.SealedKEK}})[0])
	_, err = r2.Use(link.WithRequestID(ctx, "req-mismatch"), c.Header.KeyId, false,
		func(sign.Scheme, []byte, []byte) error { return nil })
	require.ErrorIs(t, err, ErrMismatch)
	require.Zero(t, r2.Len(), "mismatched key evicted")
	assert.Contains(t, logs.String(), "sealed public key does not match")
	assert.Contains(t, logs.String(), "request_id=req-mismatch", "the log line names the request")
}

func TestEvictionBoundedAndZeroized(t *testing.T) {
	kms := keyringtest.New(arnA)
	r, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, MaxKeys: 8, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := context.Background()
	var items []Blobs
	for range 20 {
		c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_ED25519, nil)
		require.NoError(t, err)
		items = append(items, blobs(c))
	}
	require.Equal(t, 8, r.Len())
	require.EqualValues(t, 8, r.used)
	r.Evict(items[19].KeyID, false)
	require.Equal(t, 7, r.Len())
	zeroSlots := 0
	for _, s := range r.pages[0][:r.used] {
		if s == (slot{}) {
			zeroSlots++
		}
	}
	require.Equal(t, 1, zeroSlots, "the evicted slot is zeroized")
	// Evicted keys come back on load.
	errs := r.Load(ctx, items)
	for _, e := range errs {
		require.NoError(t, e)
	}
	require.Equal(t, 8, r.Len())
	require.NoError(t, r.Close())
	require.Nil(t, r.pages)
	_, err = r.Create(ctx, signerv1.Algorithm_ALGORITHM_ED25519, nil)
	require.ErrorIs(t, err, ErrClosed)
}

func TestKMSFailureIsReported(t *testing.T) {
	kms := keyringtest.New() // knows no key: every call fails
	r := newRing(t, kms)
	_, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
	require.ErrorContains(t, err, "new KEK")
}

func TestDeletedKeyStaysDeleted(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	c, err := r.Create(context.Background(), signerv1.Algorithm_ALGORITHM_ED25519, nil)
	require.NoError(t, err)
	r.Evict(c.Header.KeyId, true)
	// A load that raced the deletion (its blob read before the delete)
	// cannot bring the key back.
	require.ErrorIs(t, r.Load(context.Background(), []Blobs{blobs(c)})[0], ErrDeleted)
	_, err = r.SetState(context.Background(), c.Header.KeyId, signerv1.KeyState_KEY_STATE_ENABLED, blobs(c))
	require.ErrorIs(t, err, ErrDeleted)
}

func TestRotationsShareAKEK(t *testing.T) {
	kms := keyringtest.New(arnA)
	r := newRing(t, kms)
	ctx := context.Background()
	var cs []*Created
	for range 10 {
		c, err := r.Create(ctx, signerv1.Algorithm_ALGORITHM_SECP256K1, nil)
		require.NoError(t, err)
		cs = append(cs, c)
	}
	require.EqualValues(t, 1, kms.Generated.Load())
	kekIDs := map[string]bool{}
	for _, c := range cs {
		rot, err := r.Rotate(ctx, c.Header.KeyId, "", blobs(c))
		require.NoError(t, err)
		require.NotEqual(t, c.Header.KekId, rot.Header.KekId, "rotation changes the KEK")
		kekIDs[rot.Header.KekId] = true
	}
	require.Len(t, kekIDs, 1, "ten rotations share one new KEK")
	require.EqualValues(t, 2, kms.Generated.Load())
}

// TestKEKEvictionUnderLoad: a KEK table far smaller than the KEKs in use
// keeps evicting while loads run concurrently; nothing crashes and every
// key loads.
func TestKEKEvictionUnderLoad(t *testing.T) {
	kms := keyringtest.New(arnA)
	maker, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, KEKMaxKeys: 1, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var items []Blobs
	for range 64 {
		c, err := maker.Create(context.Background(), signerv1.Algorithm_ALGORITHM_ED25519, nil)
		require.NoError(t, err)
		items = append(items, blobs(c))
	}
	r, err := New(Config{KMS: kms, KMSKeys: []string{arnA}, MaxKEKs: 2, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range items {
				assert.NoError(t, r.Load(context.Background(), items[i:i+1])[0])
			}
		})
	}
	wg.Wait()
	require.Equal(t, 64, r.Len())
	require.LessOrEqual(t, r.KEKs(), 2)
}

// TestUnwrapSurvivesOneCallerGivingUp: callers share one KMS unwrap; a
// caller whose deadline passes does not fail the others.
func TestUnwrapSurvivesOneCallerGivingUp(t *testing.T) {
	kms := keyringtest.New(arnA)
	c, err := newRing(t, kms).Create(context.Background(), signerv1.Algorithm_ALGORITHM_ED25519, nil)
	require.NoError(t, err)
	kms.Delay = 200 * time.Millisecond
	r := newRing(t, kms)
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	errShort := make(chan error, 1)
	go func() { errShort <- r.Load(short, []Blobs{blobs(c)})[0] }()
	require.NoError(t, r.Load(context.Background(), []Blobs{blobs(c)})[0])
	require.ErrorIs(t, <-errShort, context.DeadlineExceeded)
	require.EqualValues(t, 1, kms.Decrypted.Load())
}

// TestFailingKEKNotRetriedPerKey: keys under a KEK that KMS will not unwrap
// fail without one KMS call each.
func TestFailingKEKNotRetriedPerKey(t *testing.T) {
	kms := keyringtest.New(arnA)
	maker := newRing(t, kms)
	var items []Blobs
	for range 500 {
		c, err := maker.Create(context.Background(), signerv1.Algorithm_ALGORITHM_ED25519, nil)
		require.NoError(t, err)
		items = append(items, blobs(c))
	}
	kms.Err = errors.New("KMS is down")
	r := newRing(t, kms)
	errs := r.Load(context.Background(), items)
	for _, err := range errs {
		require.ErrorContains(t, err, "KMS is down")
	}
	require.LessOrEqual(t, kms.Decrypted.Load(), int64(runtime.GOMAXPROCS(0)), "at most one call per load worker")
}
