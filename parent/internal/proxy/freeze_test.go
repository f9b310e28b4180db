package proxy_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// freezeEnclave records the freeze states it is told and answers signing
// calls like fakeEnclave.
type freezeEnclave struct {
	fakeEnclave
	mu     sync.Mutex
	states []*signerv1.FreezeState
}

func (f *freezeEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	if enclavev1.Method(method) == enclavev1.Method_METHOD_SET_FREEZE {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.states = append(f.states, proto.CloneOf(req.(*enclavev1.SetFreezeRequest).GetState()))
		return nil
	}
	return f.fakeEnclave.Call(ctx, method, req, resp)
}

func (f *freezeEnclave) last() *signerv1.FreezeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.states) == 0 {
		return nil
	}
	return f.states[len(f.states)-1]
}

// failingStore fails every Get and Put while fail is set.
type failingStore struct {
	store.Store
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) failing() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *failingStore) set(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

func (f *failingStore) Get(ctx context.Context, name string) ([]byte, string, error) {
	if f.failing() {
		return nil, "", errors.New("store down")
	}
	return f.Store.Get(ctx, name)
}

func (f *failingStore) Put(ctx context.Context, name string, data []byte, cond store.Cond) (string, error) {
	if f.failing() {
		return "", errors.New("store down")
	}
	return f.Store.Put(ctx, name, data, cond)
}

func (f *failingStore) List(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if f.failing() {
		return nil, errors.New("store down")
	}
	return f.Store.List(ctx, prefix, after, limit)
}

func newFreezeService(t *testing.T, st store.Store, fromStore bool) (*proxy.Service, *freezeEnclave) {
	t.Helper()
	enc := &freezeEnclave{}
	return proxy.New(proxy.Config{Enclave: enc, Store: st, Logger: slog.New(slog.DiscardHandler), FreezeFromStore: fromStore}), enc
}

func signErr(s *proxy.Service) error {
	_, err := s.Sign(context.Background(), msgReq("k1", 8))
	return err
}

func batchErr(s *proxy.Service) error {
	_, err := s.SignBatch(context.Background(), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{msgReq("k1", 8)}})
	return err
}

func storedFreeze(t *testing.T, st store.Store) *signerv1.FreezeState {
	t.Helper()
	b, _, err := st.Get(context.Background(), proxy.FreezeName)
	require.NoError(t, err)
	out := new(signerv1.FreezeState)
	require.NoError(t, proto.Unmarshal(b, out))
	return out
}

func TestFreezeAndUnfreeze(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	s, enc := newFreezeService(t, st, false)
	ctx := context.Background()
	require.NoError(t, signErr(s))
	g, err := s.GetFreezeState(ctx, &signerv1.GetFreezeStateRequest{})
	require.NoError(t, err)
	assert.False(t, g.GetState().GetFrozen())

	for _, bad := range []string{"", strings.Repeat("x", 257), "two\nlines"} {
		_, err := s.Freeze(ctx, &signerv1.FreezeRequest{Reason: bad})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%q", bad)
		assert.True(t, strings.HasPrefix(status.Convert(err).Message(), "reason: "))
	}
	require.NoError(t, signErr(s), "a refused freeze freezes nothing")

	f, err := s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "leaked API credential"})
	require.NoError(t, err)
	assert.True(t, f.GetState().GetFrozen())
	assert.Positive(t, f.GetState().GetChangedAtUnixMs())
	for name, call := range map[string]func(*proxy.Service) error{"Sign": signErr, "SignBatch": batchErr} {
		err := call(s)
		require.Equal(t, codes.FailedPrecondition, status.Code(err), name)
		assert.Regexp(t, `^signing is frozen since \S+Z: leaked API credential$`, status.Convert(err).Message(), name)
	}
	assert.True(t, proto.Equal(f.GetState(), storedFreeze(t, st)), "kept in the store")
	assert.True(t, proto.Equal(f.GetState(), enc.last()), "the enclave is told")
	frozen, known := s.SigningFrozen()
	assert.True(t, frozen && known)

	// Freezing again keeps the first reason and time.
	again, err := s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "second"})
	require.NoError(t, err)
	assert.True(t, proto.Equal(f.GetState(), again.GetState()))

	u, err := s.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
	require.NoError(t, err)
	assert.False(t, u.GetState().GetFrozen())
	assert.Empty(t, u.GetState().GetReason())
	require.NoError(t, signErr(s))
	require.NoError(t, batchErr(s))
	assert.False(t, storedFreeze(t, st).GetFrozen())
	assert.False(t, enc.last().GetFrozen())
}

func TestFreezeReachesOtherParents(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	a, _ := newFreezeService(t, st, true)
	b, encB := newFreezeService(t, st, true)
	ctx := context.Background()

	// Before the state was read, signing is refused and the state unknown.
	require.Equal(t, codes.Unavailable, status.Code(signErr(b)))
	_, err = b.GetFreezeState(ctx, &signerv1.GetFreezeStateRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err))
	_, known := b.SigningFrozen()
	assert.False(t, known)

	require.NoError(t, a.SyncFreeze(ctx))
	require.NoError(t, b.SyncFreeze(ctx))
	require.NoError(t, signErr(b), "no record: never frozen")

	_, err = a.Freeze(ctx, &signerv1.FreezeRequest{Reason: "incident"})
	require.NoError(t, err)
	require.NoError(t, b.SyncFreeze(ctx))
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(b)))
	assert.True(t, encB.last().GetFrozen(), "b tells its enclave")
	assert.Equal(t, "incident", encB.last().GetReason())

	// A third parent started now comes up frozen.
	c, _ := newFreezeService(t, st, true)
	require.NoError(t, c.SyncFreeze(ctx))
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(c)))
	// Freezing through it keeps a's reason.
	got, err := c.Freeze(ctx, &signerv1.FreezeRequest{Reason: "me too"})
	require.NoError(t, err)
	assert.Equal(t, "incident", got.GetState().GetReason())

	_, err = b.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
	require.NoError(t, err)
	require.NoError(t, a.SyncFreeze(ctx))
	require.NoError(t, signErr(a))
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(c)), "until c polls")
	require.NoError(t, c.SyncFreeze(ctx))
	require.NoError(t, signErr(c))
}

func TestFreezeFailsClosed(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	st := &failingStore{Store: dir}
	s, enc := newFreezeService(t, st, false)
	ctx := context.Background()

	// The store is down: this parent (and its enclave) still freeze, and
	// the caller learns that the others do not.
	st.set(true)
	_, err = s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "incident"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "signing is frozen on this parent")
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
	assert.True(t, enc.last().GetFrozen())

	// Unfreezing needs the store: while it is down, signing stays frozen.
	_, err = s.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "stays frozen")
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
	// A failed poll keeps the state too.
	require.Error(t, s.SyncFreeze(ctx))
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))

	st.set(false)
	_, err = s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "retry"})
	require.NoError(t, err)
	assert.Equal(t, "incident", storedFreeze(t, dir).GetReason(), "the retry stores the state in force")
	_, err = s.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
	require.NoError(t, err)
	require.NoError(t, signErr(s))
}

func TestFreezeRecordMalformed(t *testing.T) {
	st, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	ctx := context.Background()
	_, err = st.Put(ctx, proxy.FreezeName, []byte{0xff, 0xff}, store.Cond{})
	require.NoError(t, err)
	s, _ := newFreezeService(t, st, true)
	require.ErrorContains(t, s.SyncFreeze(ctx), "malformed")
	require.Equal(t, codes.Unavailable, status.Code(signErr(s)), "an unreadable record is not taken as unfrozen")

	// A frozen record whose reason is not one a freeze accepts still freezes.
	b, err := proto.Marshal(&signerv1.FreezeState{Frozen: true, Reason: "bad\x00reason"})
	require.NoError(t, err)
	_, err = st.Put(ctx, proxy.FreezeName, b, store.Cond{})
	require.NoError(t, err)
	require.NoError(t, s.SyncFreeze(ctx))
	err = signErr(s)
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.NotContains(t, status.Convert(err).Message(), "\x00")
}

// hangingStore holds every Get and Put while its gate is closed, and says
// when one is held.
type hangingStore struct {
	store.Store
	mu   sync.Mutex
	gate chan struct{} // nil: open
	held chan string
}

func (g *hangingStore) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
}

func (g *hangingStore) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
	g.gate = nil
}

func (g *hangingStore) wait(ctx context.Context, op string) error {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate == nil {
		return nil
	}
	g.held <- op
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *hangingStore) Get(ctx context.Context, name string) ([]byte, string, error) {
	if err := g.wait(ctx, "get"); err != nil {
		return nil, "", err
	}
	return g.Store.Get(ctx, name)
}

func (g *hangingStore) Put(ctx context.Context, name string, data []byte, cond store.Cond) (string, error) {
	if err := g.wait(ctx, "put"); err != nil {
		return "", err
	}
	return g.Store.Put(ctx, name, data, cond)
}

// pollHoldingTheLock returns a service over dir whose poll (SyncFreeze,
// answering on polled) has taken the freeze lock and hangs on the store
// until st.open.
func pollHoldingTheLock(t *testing.T, dir store.Store) (*proxy.Service, *freezeEnclave, *hangingStore, chan error) {
	t.Helper()
	st := &hangingStore{Store: dir, held: make(chan string, 8)}
	s, enc := newFreezeService(t, st, false)
	st.close()
	polled := make(chan error, 1)
	go func() { polled <- s.SyncFreeze(context.Background()) }()
	require.Equal(t, "get", <-st.held)
	return s, enc, st, polled
}

// A Freeze stops signing at once even while another change of the freeze
// state waits on a store that stopped answering. The poll that read "not
// frozen" before it does not undo it, nor does an Unfreeze that was waiting
// for the lock, and the freeze reaches the store once it answers again.
func TestFreezeWhileStoreHangs(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	// An unfreeze stored earlier: the poll below reads a state that
	// differs from this parent's, so it does try to apply it.
	b, err := proto.Marshal(&signerv1.FreezeState{ChangedAtUnixMs: 1})
	require.NoError(t, err)
	_, err = dir.Put(context.Background(), proxy.FreezeName, b, store.Cond{})
	require.NoError(t, err)
	s, enc, st, polled := pollHoldingTheLock(t, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "store outage"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "signing is frozen on this parent")
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
	require.NotNil(t, enc.last(), "the enclave is told at once, not at the next poll")
	assert.True(t, enc.last().GetFrozen())
	assert.Equal(t, "store outage", enc.last().GetReason())
	// A reconnecting enclave is told too, without waiting for the lock.
	pctx, pcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer pcancel()
	require.NoError(t, s.PushFreeze(pctx))

	// An Unfreeze waits for the lock; the store answers again.
	unfrozen := make(chan error, 1)
	go func() {
		_, err := s.Unfreeze(context.Background(), &signerv1.UnfreezeRequest{})
		unfrozen <- err
	}()
	st.open()
	require.NoError(t, <-polled)
	err = <-unfrozen
	require.Equal(t, codes.Aborted, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "had not reached the key store")
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
	assert.Equal(t, "store outage", storedFreeze(t, dir).GetReason())
	assert.Equal(t, "store outage", enc.last().GetReason(), "the enclave is told")

	// Later polls keep it; an Unfreeze now ends it.
	require.NoError(t, s.SyncFreeze(context.Background()))
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
	_, err = s.Unfreeze(context.Background(), &signerv1.UnfreezeRequest{})
	require.NoError(t, err)
	require.NoError(t, s.SyncFreeze(context.Background()))
	require.NoError(t, signErr(s))
	assert.False(t, enc.last().GetFrozen())
}

// A Freeze that arrives while an Unfreeze writes the store wins: the
// Unfreeze answers Aborted, signing stays frozen, and the store holds the
// freeze again.
func TestFreezeDuringUnfreeze(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	st := &hangingStore{Store: dir, held: make(chan string, 8)}
	s, enc := newFreezeService(t, st, false)
	ctx := context.Background()
	_, err = s.Freeze(ctx, &signerv1.FreezeRequest{Reason: "first"})
	require.NoError(t, err)

	st.close()
	unfrozen := make(chan error, 1)
	go func() {
		_, err := s.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
		unfrozen <- err
	}()
	require.Equal(t, "put", <-st.held)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = s.Freeze(short, &signerv1.FreezeRequest{Reason: "second"})
	require.Equal(t, codes.Unavailable, status.Code(err), "the Unfreeze holds the lock")
	st.open()
	err = <-unfrozen
	require.Equal(t, codes.Aborted, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "arrived while unfreezing")
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
	assert.Equal(t, "first", storedFreeze(t, dir).GetReason(), "the first reason stays")
	assert.True(t, enc.last().GetFrozen())
	require.NoError(t, s.SyncFreeze(ctx))
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))
}

// A Freeze that finds the freeze lock held by a change waiting on the
// store tells the enclave before it waits, and completes once the store
// answers.
func TestFreezeTellsEnclaveBeforeWaitingForTheLock(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	s, enc, st, polled := pollHoldingTheLock(t, dir)

	frozen := make(chan error, 1)
	go func() {
		_, err := s.Freeze(context.Background(), &signerv1.FreezeRequest{Reason: "incident"})
		frozen <- err
	}()
	require.Eventually(t, func() bool { return enc.last().GetFrozen() }, 5*time.Second, time.Millisecond,
		"the enclave is told while the Freeze waits for the lock")
	select {
	case err := <-frozen:
		t.Fatalf("Freeze answered (%v) while the poll held the lock", err)
	default:
	}
	st.open()
	require.NoError(t, <-polled)
	require.NoError(t, <-frozen)
	assert.Equal(t, "incident", storedFreeze(t, dir).GetReason())
	assert.Equal(t, "incident", enc.last().GetReason())
}

// gatedEnclave holds its first SetFreeze call until release is closed,
// and records the states in the order its calls return.
type gatedEnclave struct {
	freezeEnclave
	held    chan struct{} // closed when the first SetFreeze arrived
	release chan struct{}
	once    sync.Once
}

func (g *gatedEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	if enclavev1.Method(method) == enclavev1.Method_METHOD_SET_FREEZE {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.held)
			<-g.release
		}
	}
	return g.freezeEnclave.Call(ctx, method, req, resp)
}

// Pushes of the freeze state take turns: a Freeze made while an Unfreeze
// is still telling a slow enclave "not frozen" reaches the enclave after
// it, so the enclave ends frozen, as the parent is.
func TestFreezePushesKeepTheirOrder(t *testing.T) {
	dir, err := store.NewDir(t.TempDir())
	require.NoError(t, err)
	enc := &gatedEnclave{held: make(chan struct{}), release: make(chan struct{})}
	s := proxy.New(proxy.Config{Enclave: enc, Store: dir, Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	// Known state: unfrozen, and the first push is the Unfreeze's.
	require.NoError(t, s.SyncFreeze(ctx))
	require.Nil(t, enc.last())

	unfrozen := make(chan error, 1)
	go func() {
		_, err := s.Unfreeze(ctx, &signerv1.UnfreezeRequest{})
		unfrozen <- err
	}()
	<-enc.held // the Unfreeze tells the enclave "not frozen", slowly

	frozen := make(chan error, 1)
	go func() {
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		_, err := s.Freeze(short, &signerv1.FreezeRequest{Reason: "incident"})
		frozen <- err
	}()
	require.Eventually(t, func() bool { f, _ := s.SigningFrozen(); return f }, 5*time.Second, time.Millisecond)
	// The Freeze gives up on the lock and tells the enclave itself; its
	// push would overtake the Unfreeze's here if pushes did not take turns.
	time.Sleep(80 * time.Millisecond)
	close(enc.release)

	require.NoError(t, <-unfrozen)
	err = <-frozen
	require.Equal(t, codes.Unavailable, status.Code(err), "the Unfreeze held the lock: %v", err)
	require.Len(t, enc.states, 2)
	assert.False(t, enc.states[0].GetFrozen())
	assert.True(t, enc.states[1].GetFrozen(), "the enclave ends frozen")
	assert.Equal(t, "incident", enc.states[1].GetReason())
	require.Equal(t, codes.FailedPrecondition, status.Code(signErr(s)))

	// The next poll writes the freeze to the store.
	require.NoError(t, s.SyncFreeze(ctx))
	assert.Equal(t, "incident", storedFreeze(t, dir).GetReason())
}
