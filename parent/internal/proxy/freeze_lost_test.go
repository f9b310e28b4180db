package proxy_test

// Freeze states are not lost: a freeze whose store write failed survives
// the next poll, and a parent that cannot read the store stops signing.

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// A Freeze that could not be written answers "signing is frozen on this
// parent"; the next background poll after the store recovers reads the old
// "not frozen" record and silently lifts it.
func TestFailedFreezeWriteIsKept(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	st := &failingStore{Store: dir}
	s, enc := newFreezeService(t, st, true)
	ctx := context.Background()
	require.NoError(t, s.SyncFreeze(ctx))

	st.set(true)
	_, err = s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "incident"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "signing is frozen on this parent")
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))

	st.set(false)
	require.NoError(t, s.SyncFreeze(ctx)) // the parent's poll, every 5 s
	assert.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)),
		"the freeze this parent promised is lifted by its own poll")
	assert.True(t, enc.last().GetFrozen(), "and the enclave is told to unfreeze")
	assert.True(t, storedFreeze(t, dir).GetFrozen(), "the poll wrote the freeze the first write could not")
}

// A parent whose store reads fail for longer than FreezeMaxStale refuses
// signing, so it cannot miss a freeze made through another parent, and
// follows that freeze once the store answers again.
func TestFreezeStateGoesStale(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	a, _ := newFreezeService(t, dir, true)
	bStore := &failingStore{Store: dir}
	b := proxy.New(proxy.Config{Enclave: &freezeEnclave{}, Store: bStore, Logger: slog.New(slog.DiscardHandler),
		FreezeFromStore: true, FreezeMaxStale: time.Nanosecond})
	ctx := context.Background()
	require.NoError(t, a.SyncFreeze(ctx))
	require.NoError(t, b.SyncFreeze(ctx))

	bStore.set(true) // B loses access to the store (throttling, IAM, network)
	_, err = a.Freeze(ctx, &signerv1.FreezeRequest{Reason: "incident"})
	require.NoError(t, err)
	require.Error(t, b.SyncFreeze(ctx))
	err = signErr(b)
	assert.Equal(t, codes.Unavailable, status.Code(err), "B cannot read the freeze state and must not sign")
	assert.Contains(t, status.Convert(err).Message(), "could not be read from the key store lately")
	_, known := b.SigningFrozen()
	assert.False(t, known)

	bStore.set(false)
	require.NoError(t, b.SyncFreeze(ctx))
	assert.Equal(t, codes.FailedPrecondition, status.Code(signErr(b)), "B follows A's freeze")
	frozen, known := b.SigningFrozen()
	assert.True(t, frozen && known)
}
