package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// The freeze switch stops all signing. Its state is an encoded
// signerv1.FreezeState kept in the store under FreezeName, so that it
// survives restarts and reaches every parent sharing the store: each one
// reads it at start and every poll interval ([Service.SyncFreeze]). The
// parent refuses signing calls itself while frozen, and tells the enclave,
// which refuses them too, on every change and every new connection.
//
// The parent is not trusted (DESIGN.md §1): until requests are
// authenticated end to end, whoever can call the parent can also unfreeze.

// FreezeName is the store name of the freeze state.
const FreezeName = "control/freeze"

// errFreezeUnknown refuses signing before the freeze state was first read;
// errFreezeStale when it has not been read for too long.
var (
	errFreezeUnknown = status.Error(codes.Unavailable, "the freeze state has not been read from the key store yet; retry")
	errFreezeStale   = status.Error(codes.Unavailable, "the freeze state could not be read from the key store lately, so a freeze made through another parent could be missed; signing resumes when the store answers again")
	// errFreezeBusy answers a change that could not take the freeze lock
	// before its deadline (another change waits on a slow store).
	errFreezeBusy = status.Error(codes.Unavailable, "another freeze change is in progress; retry")
)

// frozenErr returns the error a signing call gets now, nil when signing may
// go ahead.
func (s *Service) frozenErr() error {
	f := s.freeze.Load()
	switch {
	case f == nil:
		return errFreezeUnknown
	case f.GetFrozen():
		return enclavev1.FrozenError(f)
	case s.freezeRead.stale.Load():
		return errFreezeStale
	case s.changes.read.stale.Load():
		return errChangesStale
	}
	return nil
}

// SigningFrozen reports whether the freeze switch stops signing now, and
// whether its state is known (read from the store at least once, and
// lately, as is the key change log).
func (s *Service) SigningFrozen() (frozen, known bool) {
	f := s.freeze.Load()
	return f.GetFrozen(), f != nil && (f.GetFrozen() || !s.freezeRead.stale.Load() && !s.changes.read.stale.Load())
}

// lockFreeze takes the freeze lock, or gives up when ctx ends.
func (s *Service) lockFreeze(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case s.freezeLock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryLockFreeze takes the freeze lock if it is free.
func (s *Service) tryLockFreeze() bool {
	select {
	case s.freezeLock <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Service) unlockFreeze() { <-s.freezeLock }

// Freeze implements signerv1.SignerServiceServer. It fails closed: this
// parent stops signing at once, before it waits for the freeze lock, the
// store or the enclave, since the store may be what the incident is about.
// The store write follows under the lock, then the enclave is told.
func (s *Service) Freeze(ctx context.Context, r *signerv1.FreezeRequest) (*signerv1.FreezeResponse, error) {
	if err := limits.CheckFreezeReason(r.GetReason()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "reason: %v", err)
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	s.freezeNow(ctx, r.GetReason())
	if !s.tryLockFreeze() {
		// Another change holds the lock, perhaps waiting on a slow store:
		// the enclave is told now, not after it. The push has its own
		// bound (freezePushTimeout), so that a client's short deadline
		// does not cut it off.
		s.tellEnclave(context.WithoutCancel(ctx))
		if err := s.lockFreeze(ctx); err != nil {
			s.log.ErrorContext(ctx, "freeze: another change of the freeze state is in progress; this parent and its enclave are frozen, and the parent writes the freeze at the next poll")
			return nil, errFrozenBusy
		}
	}
	defer s.unlockFreeze()
	was := s.freeze.Load()
	// A service already frozen (here, or by another parent) keeps its
	// first reason and time.
	stored, rerr := s.readFreeze(ctx)
	st := was
	switch {
	case rerr == nil && stored.GetFrozen():
		st = stored
	case !was.GetFrozen():
		// An Unfreeze took the lock after freezeNow: this freeze is the
		// later one.
		st = newFreeze(r.GetReason())
	}
	pending := s.freezePending.Load()
	if rerr == nil {
		rerr = s.writeFreeze(ctx, st)
	}
	// In force already (freezeNow); this makes the stored reason the one
	// in force and tells the enclave, after the store write, so that an
	// enclave that does not answer cannot hold the write up.
	s.setFreeze(ctx, was, st, "freeze")
	if rerr != nil {
		// Kept until a sync writes it: the store's old "not frozen" must
		// not undo it.
		s.freezePending.Store(st)
		s.log.ErrorContext(ctx, "freeze: the key store could not be written; this parent stays frozen and retries every poll", "err", rerr)
		return nil, status.Error(codes.Unavailable,
			"signing is frozen on this parent, but the key store could not be written (see the parent's log), so other parents and a restart do not see it yet; this parent retries the write every poll; retry to be sure")
	}
	s.freezePending.CompareAndSwap(pending, nil)
	return &signerv1.FreezeResponse{State: proto.CloneOf(st)}, nil
}

// newFreeze is a frozen state with reason, changed now.
func newFreeze(reason string) *signerv1.FreezeState {
	return &signerv1.FreezeState{Frozen: true, Reason: reason, ChangedAtUnixMs: time.Now().UnixMilli()}
}

// freezeNow stops signing on this parent at once, without the freeze lock.
// A parent already frozen keeps its state, as a fresh copy: an unfreeze
// that read the state before cannot replace it (see setFreeze). The state
// is pending before it is in force, until a holder of the lock has
// written it to the store: Freeze itself, or, when it cannot take the lock
// in time, the next poll or Unfreeze. Freeze tells the enclave either way:
// before it waits for a busy lock, or after its store write.
func (s *Service) freezeNow(ctx context.Context, reason string) {
	for {
		was := s.freeze.Load()
		st := newFreeze(reason)
		if was.GetFrozen() {
			st = proto.CloneOf(was)
		}
		s.freezePending.Store(st)
		if s.freeze.CompareAndSwap(was, st) {
			if !was.GetFrozen() {
				s.log.WarnContext(ctx, "signing frozen", "reason", st.GetReason(), "from", "freeze")
			}
			return
		}
	}
}

// errFrozenBusy answers a Freeze that froze this parent but could not
// take the freeze lock, to write the store, before its deadline.
var errFrozenBusy = status.Error(codes.Unavailable,
	"signing is frozen on this parent, but another change of the freeze state is in progress (waiting on the key store or the enclave), so other parents and a restart do not see this freeze yet; this parent writes it at the next poll; retry to be sure")

// errFreezeNotStored and errFreezeCrossed answer an Unfreeze that a Freeze
// won over.
var (
	errFreezeNotStored = status.Error(codes.Aborted,
		"a freeze made on this parent had not reached the key store yet; it is written now and signing stays frozen; call Unfreeze again if it is still wanted")
	errFreezeCrossed = status.Error(codes.Aborted,
		"a freeze arrived while unfreezing; signing stays frozen; call Unfreeze again if it is still wanted")
)

// Unfreeze implements signerv1.SignerServiceServer. The store is written
// first: if that fails, signing stays frozen. A Freeze wins over an
// Unfreeze it crosses: one that answered while this call waited for the
// lock (its freeze is not in the store yet), and one that arrives while the
// store is written. Both leave signing frozen, written to the store, and
// answer Aborted.
func (s *Service) Unfreeze(ctx context.Context, _ *signerv1.UnfreezeRequest) (*signerv1.UnfreezeResponse, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if err := s.lockFreeze(ctx); err != nil {
		return nil, errFreezeBusy
	}
	defer s.unlockFreeze()
	was, pending := s.freeze.Load(), s.freezePending.Load()
	if pending != nil {
		stored, err := s.readFreeze(ctx)
		if err == nil && !stored.GetFrozen() {
			if err = s.writeFreeze(ctx, pending); err == nil {
				s.freezePending.CompareAndSwap(pending, nil)
				s.tellEnclave(ctx)
				return nil, errFreezeNotStored
			}
		}
		if err != nil {
			s.log.ErrorContext(ctx, "unfreeze: the key store could not be read or written; signing stays frozen", "err", err)
			return nil, status.Error(codes.Unavailable, "the key store could not be read or written (see the parent's log); signing stays frozen; retry")
		}
		// The store holds a freeze: the one to end.
	}
	st := &signerv1.FreezeState{ChangedAtUnixMs: time.Now().UnixMilli()}
	if err := s.writeFreeze(ctx, st); err != nil {
		s.log.ErrorContext(ctx, "unfreeze: the key store could not be written; signing stays frozen", "err", err)
		return nil, status.Error(codes.Unavailable, "the key store could not be written (see the parent's log); signing stays frozen; retry")
	}
	s.freezeRead.succeeded()
	if !s.setFreeze(ctx, was, st, "unfreeze") {
		// A Freeze came in: put it back in the store now rather than at
		// the next poll, so that other parents do not follow this write.
		if p := s.freezePending.Load(); p != nil && s.writeFreeze(ctx, p) == nil {
			s.freezePending.CompareAndSwap(p, nil)
		}
		s.tellEnclave(ctx)
		return nil, errFreezeCrossed
	}
	s.freezePending.CompareAndSwap(pending, nil)
	return &signerv1.UnfreezeResponse{State: proto.CloneOf(st)}, nil
}

// GetFreezeState implements signerv1.SignerServiceServer: this parent's
// view, at most one poll interval behind the store.
func (s *Service) GetFreezeState(context.Context, *signerv1.GetFreezeStateRequest) (*signerv1.GetFreezeStateResponse, error) {
	f := s.freeze.Load()
	if f == nil {
		return nil, errFreezeUnknown
	}
	return &signerv1.GetFreezeStateResponse{State: proto.CloneOf(f)}, nil
}

// SyncFreeze reads the freeze state from the store and applies it when it
// differs from this parent's. The parent calls it at start and every poll
// interval; until it first succeeds, signing is refused (Unavailable), and
// so it is again while reads fail for longer than FreezeMaxStale. A freeze
// not yet in the store (its write failed, or its Freeze could not take the
// lock) is written first, and is never undone by the store's older "not
// frozen".
func (s *Service) SyncFreeze(ctx context.Context) error {
	if err := s.lockFreeze(ctx); err != nil {
		return err
	}
	defer s.unlockFreeze()
	// Loaded before the store is read: a freeze after these loads is
	// pending and stays in force (setFreeze).
	was, pending := s.freeze.Load(), s.freezePending.Load()
	st, err := s.readFreeze(ctx)
	wrote := false
	if err == nil && pending != nil && !st.GetFrozen() {
		if err = s.writeFreeze(ctx, pending); err == nil {
			s.log.WarnContext(ctx, "freeze written to the key store after an earlier failure")
			st, wrote = pending, true
		}
	}
	if err != nil {
		if s.freezeRead.failed(s.freezeMaxStale) {
			s.log.ErrorContext(ctx, "the freeze state could not be read from the key store for too long; signing is refused until it can",
				"last_read", s.freezeRead.last, "err", err)
		}
		return err
	}
	s.freezePending.CompareAndSwap(pending, nil)
	if s.freezeRead.succeeded() {
		s.log.WarnContext(ctx, "the freeze state can be read from the key store again")
	}
	if wrote || was == nil || !proto.Equal(was, st) {
		s.setFreeze(ctx, was, st, "store")
	}
	return nil
}

// PushFreeze tells the enclave this parent's freeze state, if known; the
// parent calls it on every new connection, since a restarted enclave
// starts unfrozen.
func (s *Service) PushFreeze(ctx context.Context) error { return s.pushFreeze(ctx) }

// pushFreeze tells the enclave the state in force when it gets its turn.
// Pushes take turns (pushLock), and every change of the state is followed
// by a push, so the last push the enclave answers carries the latest
// state: an older state read by a slow push cannot arrive after a newer
// one. It does not need the freeze lock, which a change holds while it
// waits on the store, so a Freeze can tell the enclave while that lock is
// busy.
func (s *Service) pushFreeze(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	select {
	case s.pushLock <- struct{}{}:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-s.pushLock }()
	f := s.freeze.Load()
	if f == nil {
		return nil
	}
	return s.call(ctx, enclavev1.Method_METHOD_SET_FREEZE, &enclavev1.SetFreezeRequest{State: f}, &enclavev1.SetFreezeResponse{})
}

// setFreeze makes st this parent's state and tells the enclave; the caller
// holds the freeze lock and decided on st when the state was was. A frozen
// st always replaces the state in force. An unfrozen one replaces only
// was: a Freeze since then (freezeNow does not wait for the lock) stands,
// and setFreeze reports false.
func (s *Service) setFreeze(ctx context.Context, was, st *signerv1.FreezeState, from string) bool {
	if st.GetFrozen() {
		was = s.freeze.Swap(st)
	} else if !s.freeze.CompareAndSwap(was, st) {
		return false
	}
	switch {
	case st.GetFrozen() && !was.GetFrozen():
		s.log.WarnContext(ctx, "signing frozen", "reason", st.GetReason(), "from", from)
	case !st.GetFrozen() && was.GetFrozen():
		s.log.WarnContext(ctx, "signing unfrozen", "from", from)
	}
	s.tellEnclave(ctx)
	return true
}

// freezePushTimeout bounds telling the enclave a freeze change, so that an
// enclave that does not answer cannot hold up the caller.
const freezePushTimeout = 2 * time.Second

// tellEnclave pushes the state in force to the enclave. An enclave that
// cannot be told now is told when it connects again; until then this
// parent's own check holds.
func (s *Service) tellEnclave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, freezePushTimeout)
	defer cancel()
	if err := s.pushFreeze(ctx); err != nil {
		// An unreachable enclave is told when it connects (and the health
		// watcher already says it is down); anything else is worth a line.
		lvl := slog.LevelWarn
		if status.Code(err) == codes.Unavailable {
			lvl = slog.LevelDebug
		}
		s.log.Log(ctx, lvl, "telling the enclave the freeze state failed; it is told again when it reconnects",
			"frozen", s.freeze.Load().GetFrozen(), "err", err)
	}
}

// readFreeze reads the stored state; no record means never frozen.
func (s *Service) readFreeze(ctx context.Context) (*signerv1.FreezeState, error) {
	b, _, err := s.store.Get(ctx, FreezeName)
	if errors.Is(err, store.ErrNotFound) {
		return &signerv1.FreezeState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", FreezeName, err)
	}
	st := new(signerv1.FreezeState)
	if err := proto.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s is malformed: %w", FreezeName, err)
	}
	if st.GetFrozen() {
		if err := limits.CheckFreezeReason(st.GetReason()); err != nil {
			// Still frozen: a record that says so is never ignored.
			st.Reason = "(stored reason unreadable)"
		}
	} else {
		st.Reason = ""
	}
	return st, nil
}

func (s *Service) writeFreeze(ctx context.Context, st *signerv1.FreezeState) error {
	b, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := s.store.Put(ctx, FreezeName, b, store.Cond{}); err != nil {
		return fmt.Errorf("write %s: %w", FreezeName, err)
	}
	return nil
}
