package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// changeEnclave is a lifecycle enclave that also keeps a change-log
// position and records what ApplyKeyChanges hands it.
type changeEnclave struct {
	lifecycleEnclave
	cmu      sync.Mutex
	seq      uint64
	applied  []*enclavev1.KeyChange
	evictAll int
	down     bool
}

func (f *changeEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	switch enclavev1.Method(method) {
	case enclavev1.Method_METHOD_APPLY_KEY_CHANGES:
		f.cmu.Lock()
		defer f.cmu.Unlock()
		if f.down {
			return status.Error(codes.Unavailable, "enclave unavailable")
		}
		in := req.(*enclavev1.ApplyKeyChangesRequest)
		if in.GetEvictAll() {
			f.evictAll++
		}
		for _, c := range in.GetChanges() {
			f.applied = append(f.applied, proto.CloneOf(c))
		}
		f.seq = max(f.seq, in.GetSeq())
		resp.(*enclavev1.ApplyKeyChangesResponse).Seq = f.seq
		return nil
	}
	return f.lifecycleEnclave.Call(ctx, method, req, resp)
}

// take returns what was applied since the last take, and the evict-all count.
func (f *changeEnclave) take() (changes []string, evictAll int, seq uint64) {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	for _, c := range f.applied {
		if c.GetDeleted() {
			changes = append(changes, c.GetKeyId()+" deleted")
		} else {
			changes = append(changes, fmt.Sprintf("%s gen %d", c.GetKeyId(), c.GetGeneration()))
		}
	}
	f.applied = nil
	evictAll, f.evictAll = f.evictAll, 0
	return changes, evictAll, f.seq
}

// restart makes the enclave forget its position, as a new enclave would.
func (f *changeEnclave) restart() {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	f.seq = 0
}

func newChangeService(t *testing.T, st store.Store) (*proxy.Service, *changeEnclave) {
	t.Helper()
	enc := &changeEnclave{lifecycleEnclave: lifecycleEnclave{t: t, refuse: map[string]bool{}}}
	s := proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(s.Close) // a prune must not outlive the store's directory
	return s, enc
}

func sharedStore(t *testing.T) store.Store {
	t.Helper()
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	_, err = st.Put(context.Background(), "keks/"+testKEK, []byte("kek"), store.Cond{IfAbsent: true})
	require.NoError(t, err)
	return st
}

func changeNames(t *testing.T, st store.Store) []string {
	t.Helper()
	names, err := st.List(context.Background(), "changes/", "", 100000)
	require.NoError(t, err)
	return names
}

// A key disabled, enabled, rotated or deleted through parent A reaches the
// enclave behind parent B at B's next sync, through the store's change log.
func TestChangeLogReachesOtherParents(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	a, encA := newChangeService(t, st)
	b, encB := newChangeService(t, st)
	putKeys(t, st, keyID(1), keyID(2))

	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, seq := encB.take()
	assert.Empty(t, got, "an empty log hands over nothing")
	assert.Zero(t, evictAll)
	assert.Zero(t, seq)

	_, err := a.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	require.NoError(t, err)
	_, err = a.DeleteKey(ctx, &signerv1.DeleteKeyRequest{KeyId: keyID(2)})
	require.NoError(t, err)
	assert.Equal(t, []string{"changes/00000000000000000001", "changes/00000000000000000002"}, changeNames(t, st))

	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, seq = encB.take()
	assert.Equal(t, []string{keyID(1) + " gen 2", keyID(2) + " deleted"}, got)
	assert.Zero(t, evictAll)
	assert.EqualValues(t, 2, seq)

	require.NoError(t, b.SyncChanges(ctx))
	got, _, _ = encB.take()
	assert.Empty(t, got, "each entry is handed over once")

	// B's own change goes on after A's, and A learns of it.
	_, err = b.EnableKey(ctx, &signerv1.EnableKeyRequest{KeyId: keyID(1)})
	require.NoError(t, err)
	require.NoError(t, a.SyncChanges(ctx))
	got, _, seq = encA.take()
	assert.Equal(t, []string{keyID(1) + " gen 2", keyID(2) + " deleted", keyID(1) + " gen 3"}, got,
		"A's enclave gets the whole log, its own changes included (no-ops there)")
	assert.EqualValues(t, 3, seq)

	// A restarted enclave (position 0) is handed the log again.
	encB.restart()
	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, seq = encB.take()
	assert.Len(t, got, 3)
	assert.Zero(t, evictAll)
	assert.EqualValues(t, 3, seq)
}

// An enclave that missed entries the log no longer holds, or that is too
// far behind to read them one by one, drops its whole cache.
func TestChangeLogGapEvictsAll(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	a, _ := newChangeService(t, st)
	b, encB := newChangeService(t, st)
	proxy.SetChangeLimits(b, 10000, 100, 3)
	putKeys(t, st, keyID(1))
	disable := func() {
		t.Helper()
		_, err := a.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
		require.NoError(t, err)
	}
	disable()
	disable()
	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, _ := encB.take()
	require.Len(t, got, 2)
	require.Zero(t, evictAll)

	// Entries 3..6: more than B reads one by one.
	for range 4 {
		disable()
	}
	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, seq := encB.take()
	assert.Empty(t, got)
	assert.Equal(t, 1, evictAll)
	assert.EqualValues(t, 6, seq, "the enclave jumps to the end of the log")

	// Entry 7 is pruned before B saw it; 8 is still there.
	disable()
	disable()
	require.NoError(t, st.Delete(ctx, "changes/00000000000000000007"))
	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, seq = encB.take()
	assert.Empty(t, got)
	assert.Equal(t, 1, evictAll)
	assert.EqualValues(t, 8, seq)
}

// Parents appending at once each get their own entry: no number is taken
// twice and none is skipped.
func TestChangeLogConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	var ids []string
	for i := range 24 {
		ids = append(ids, keyID(100+i))
	}
	putKeys(t, st, ids...)
	parents := make([]*proxy.Service, 3)
	for i := range parents {
		parents[i], _ = newChangeService(t, st)
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			_, err := parents[i%len(parents)].DeleteKey(ctx, &signerv1.DeleteKeyRequest{KeyId: id})
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	names := changeNames(t, st)
	require.Len(t, names, len(ids))
	for i, n := range names {
		assert.Equal(t, fmt.Sprintf("changes/%020d", i+1), n)
	}
	r, encR := newChangeService(t, st)
	require.NoError(t, r.SyncChanges(ctx))
	got, _, _ := encR.take()
	want := make([]string, 0, len(ids))
	for _, id := range ids {
		want = append(want, id+" deleted")
	}
	assert.ElementsMatch(t, want, got, "every deletion is in the log once")
}

// The writer of every pruneEvery-th entry deletes the entries that fell out
// of the last keep.
func TestChangeLogPrunes(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	a, _ := newChangeService(t, st)
	proxy.SetChangeLimits(a, 5, 4, 256)
	putKeys(t, st, keyID(1))
	for range 12 {
		_, err := a.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
		require.NoError(t, err)
	}
	// Entry 8 prunes 1..3 and entry 12 prunes 4..7: the last 5 are kept.
	require.Eventually(t, func() bool {
		names := changeNames(t, st)
		return len(names) > 0 && names[0] == "changes/00000000000000000008"
	}, 5*time.Second, 10*time.Millisecond, "entries before 8 pruned")
	assert.Len(t, changeNames(t, st), 5, "8..12 kept")
}

// Malformed entries (the store is not trusted) are skipped with a log line;
// the rest are applied.
func TestChangeLogSkipsMalformedEntries(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	var logs syncbuf.Buffer
	enc := &changeEnclave{lifecycleEnclave: lifecycleEnclave{t: t}}
	b := proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	good, err := proto.Marshal(&enclavev1.KeyChange{KeyId: keyID(5), Generation: 3})
	require.NoError(t, err)
	for i, blob := range [][]byte{
		[]byte("\xff\xff not protobuf"),
		mustMarshal(t, &enclavev1.KeyChange{KeyId: "../../etc", Generation: 2}),
		mustMarshal(t, &enclavev1.KeyChange{KeyId: keyID(6), Generation: 2, Deleted: true}),
		mustMarshal(t, &enclavev1.KeyChange{KeyId: keyID(6)}),
		good,
	} {
		_, err := st.Put(ctx, fmt.Sprintf("changes/%020d", i+1), blob, store.Cond{IfAbsent: true})
		require.NoError(t, err)
	}
	_, err = st.Put(ctx, "changes/not-a-number", good, store.Cond{})
	require.NoError(t, err)
	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, seq := enc.take()
	assert.Equal(t, []string{keyID(5) + " gen 3"}, got)
	assert.Zero(t, evictAll)
	assert.EqualValues(t, 5, seq)
	assert.Contains(t, logs.String(), "cannot read")
	assert.Contains(t, logs.String(), "not written by nitrosigner")
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

// A parent that cannot read the change log for longer than FreezeMaxStale
// refuses signing: a key disabled through another parent could still sign
// here. An enclave that cannot be reached does not count: its own errors
// stop signing.
func TestChangeLogGoesStale(t *testing.T) {
	ctx := context.Background()
	dir := sharedStore(t)
	st := &failingStore{Store: dir}
	enc := &changeEnclave{lifecycleEnclave: lifecycleEnclave{t: t}}
	s := proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.DiscardHandler), FreezeMaxStale: time.Nanosecond})
	known := func() bool {
		_, known := s.SigningFrozen()
		return known
	}
	require.NoError(t, s.SyncChanges(ctx))
	require.True(t, known())

	enc.cmu.Lock()
	enc.down = true
	enc.cmu.Unlock()
	require.Error(t, s.SyncChanges(ctx))
	require.True(t, known(), "an unreachable enclave does not make the log stale")
	enc.cmu.Lock()
	enc.down = false
	enc.cmu.Unlock()

	st.set(true)
	require.Error(t, s.SyncChanges(ctx))
	err := signErr(s)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "key changes made through other parents could not be read")
	assert.False(t, known())

	st.set(false)
	require.NoError(t, s.SyncChanges(ctx))
	assert.True(t, known())
	assert.NotContains(t, status.Convert(signErr(s)).Message(), "could not be read")
}

// A change whose log entry could not be written is the client's error, and
// its retry writes the entry.
func TestChangeLogRecordFailureIsReported(t *testing.T) {
	ctx := context.Background()
	dir := sharedStore(t)
	putKeys(t, dir, keyID(1), keyID(2))
	st := &listFailingStore{Store: dir}
	s, _ := newChangeService(t, st)
	st.fail = true
	_, err := s.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "could not be recorded for other instances")
	_, err = s.DeleteKey(ctx, &signerv1.DeleteKeyRequest{KeyId: keyID(2)})
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Empty(t, changeNames(t, dir))

	st.fail = false
	_, err = s.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	require.NoError(t, err)
	_, err = s.DeleteKey(ctx, &signerv1.DeleteKeyRequest{KeyId: keyID(2)})
	assert.Equal(t, codes.NotFound, status.Code(err), "the blob went with the first call")
	assert.Len(t, changeNames(t, dir), 2, "the retries wrote both entries")
}

// listFailingStore fails only List (and so the first append of a parent).
type listFailingStore struct {
	store.Store
	fail bool
}

func (f *listFailingStore) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if f.fail {
		return nil, fmt.Errorf("store down")
	}
	return f.Store.List(ctx, prefix, after, limit)
}

// FuzzDecodeChange: log entries come from the store, which is not trusted.
// Whatever they hold, decoding either fails or yields a change the enclave
// accepts (a valid key id, and a generation or a deletion).
func FuzzDecodeChange(f *testing.F) {
	f.Add(mustMarshal(f, &enclavev1.KeyChange{KeyId: keyID(1), Generation: 2}))
	f.Add(mustMarshal(f, &enclavev1.KeyChange{KeyId: keyID(2), Deleted: true}))
	f.Add(mustMarshal(f, &enclavev1.KeyChange{KeyId: keyID(3), Generation: 1 << 40}))
	f.Add([]byte{})
	f.Add([]byte("\x0a\x24key_"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := proxy.DecodeChange(b)
		if err != nil {
			require.Nil(t, c)
			return
		}
		require.Len(t, c.GetKeyId(), 36)
		require.True(t, c.GetDeleted() != (c.GetGeneration() > 0), "%v", c)
	})
}

// hookEnclave runs onLoad on every LoadKeys before answering it.
type hookEnclave struct {
	lifecycleEnclave
	onLoad func(n int) error
	loads  int
}

func (f *hookEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	if enclavev1.Method(method) == enclavev1.Method_METHOD_LOAD_KEYS {
		f.loads++
		if err := f.onLoad(f.loads); err != nil {
			return err
		}
	}
	return f.lifecycleEnclave.Call(ctx, method, req, resp)
}

// A load races changes: it read a blob, and before the enclave took it a
// change landed. The enclave refuses a blob older than one it knows
// (Aborted): the load reads again. A sync that made the enclave drop every
// cached key meanwhile (the epoch moves) makes the load read again too, and
// a key deleted in between is dropped from the cache.
func TestLoadRetriesAcrossChanges(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		onLoad     func(s *proxy.Service, st store.Store, n int) error
		wantErr    codes.Code
		wantLoads  int
		wantEvicts int
	}{
		{"stale blob read again", func(_ *proxy.Service, _ store.Store, n int) error {
			if n == 1 {
				return status.Error(codes.Aborted, "sealed key is older than the version already loaded")
			}
			return nil
		}, codes.OK, 2, 0},
		{"always stale", func(*proxy.Service, store.Store, int) error {
			return status.Error(codes.Aborted, "sealed key is older than the version already loaded")
		}, codes.Aborted, 3, 0},
		{"cache dropped during the load", func(s *proxy.Service, _ store.Store, n int) error {
			if n == 1 {
				proxy.BumpChangeEpoch(s)
			}
			return nil
		}, codes.OK, 2, 0},
		{"deleted during the load", func(s *proxy.Service, st store.Store, n int) error {
			if n == 1 {
				proxy.BumpChangeEpoch(s)
				require.NoError(t, st.Delete(ctx, "keys/"+keyID(1)))
			}
			return nil
		}, codes.NotFound, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := sharedStore(t)
			putKeys(t, st, keyID(1))
			enc := &hookEnclave{lifecycleEnclave: lifecycleEnclave{t: t}}
			s := proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.DiscardHandler)})
			enc.onLoad = func(n int) error { return tc.onLoad(s, st, n) }
			err := proxy.Load(s, ctx, keyID(1))[0]
			assert.Equal(t, tc.wantErr, status.Code(err), "%v", err)
			if tc.wantErr == codes.Aborted {
				assert.Equal(t, "the key changed while it was being loaded; retry", status.Convert(err).Message())
			}
			assert.Equal(t, tc.wantLoads, enc.loads)
			evicts := 0
			for _, c := range enc.calls {
				if c == "evict "+keyID(1)+" deleted=false" {
					evicts++
				}
			}
			assert.Equal(t, tc.wantEvicts, evicts)
		})
	}
}

// A parent that has never read the change log (restarted while its enclave
// kept running, and the store's List failing from the start) goes stale
// like one that lost it later: signing is refused after FreezeMaxStale
// rather than going on with whatever the enclave cached.
func TestChangeLogNeverReadGoesStale(t *testing.T) {
	ctx := context.Background()
	st := &failingStore{Store: sharedStore(t)}
	st.set(true)
	enc := &changeEnclave{lifecycleEnclave: lifecycleEnclave{t: t}}
	s := proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.DiscardHandler), FreezeMaxStale: time.Nanosecond})
	for range 5 {
		require.Error(t, s.SyncChanges(ctx))
	}
	_, known := s.SigningFrozen()
	assert.False(t, known, "the log was never read: signing must not be reported as safe")
	err := signErr(s)
	assert.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "key changes made through other parents could not be read")
}

// A writer whose idea of the log's end fell behind into its pruned part
// (more than keep entries appended between two of its syncs, or a
// partition) does not claim a pruned number, which put-if-absent would
// grant and every reader has passed: it lists from there first.
func TestChangeLogStaleHintDoesNotWriteBelowPruned(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	putKeys(t, st, keyID(1), keyID(2))
	w, _ := newChangeService(t, st)
	a, _ := newChangeService(t, st)
	r, encR := newChangeService(t, st)
	proxy.SetChangeLimits(a, 5, 4, 256)

	_, err := w.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(2)}) // entry 1; W's next is 2
	require.NoError(t, err)
	for range 11 { // entries 2..12 through A; 8 prunes 1..3, 12 prunes 4..7
		_, err := a.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		names := changeNames(t, st)
		return len(names) > 0 && names[0] == "changes/00000000000000000008"
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, r.SyncChanges(ctx))
	_, _, seq := encR.take()
	require.EqualValues(t, 12, seq)

	_, err = w.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(2)})
	require.NoError(t, err)
	require.NoError(t, r.SyncChanges(ctx))
	got, evictAll, _ := encR.take()
	assert.True(t, len(got) > 0 || evictAll > 0,
		"W's change reaches R, not written under a pruned number: %v", changeNames(t, st))
}

// An entry numbered math.MaxUint64 (anything that can write to the bucket
// can add one; the store is not trusted) is not nitrosigner's: readers do
// not jump to it, and writers do not wrap around after it, which would
// blind every parent while every sync succeeds.
func TestChangeLogIgnoresHugeSequenceNumbers(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	putKeys(t, st, keyID(1))
	_, err := st.Put(ctx, "changes/18446744073709551615",
		mustMarshal(t, &enclavev1.KeyChange{KeyId: keyID(9), Generation: 2}), store.Cond{IfAbsent: true})
	require.NoError(t, err)
	require.Equal(t, "changes/18446744073709551615", "changes/"+strconv.FormatUint(math.MaxUint64, 10))
	a, _ := newChangeService(t, st)
	b, encB := newChangeService(t, st)
	require.NoError(t, b.SyncChanges(ctx))
	encB.take()

	_, err = a.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
	require.NoError(t, err)
	require.NoError(t, b.SyncChanges(ctx))
	got, evictAll, _ := encB.take()
	assert.True(t, len(got) > 0 || evictAll > 0, "A's disable never reaches B; log: %v", changeNames(t, st))
}

// A call that changes nothing (disable of a disabled key, as an idempotent
// script or reconciler sends) appends nothing: enough of them between two
// polls would otherwise make every other enclave drop its whole cache.
func TestChangeLogNoOpCallsAppendNothing(t *testing.T) {
	ctx := context.Background()
	st := sharedStore(t)
	putKeys(t, st, keyID(1))
	a, encA := newChangeService(t, st)
	encA.unchanged = true
	b, encB := newChangeService(t, st)
	proxy.SetChangeLimits(b, 10000, 100, 3)
	for range 4 {
		_, err := a.DisableKey(ctx, &signerv1.DisableKeyRequest{KeyId: keyID(1)})
		require.NoError(t, err)
	}
	require.NoError(t, b.SyncChanges(ctx))
	_, evictAll, _ := encB.take()
	assert.Empty(t, changeNames(t, st), "no-op calls append no entries")
	assert.Zero(t, evictAll, "no-op calls do not drop other enclaves' caches")
}
