// Package proxy is the parent's client-facing SignerService. It holds no
// secrets and makes no signing decisions: every call is forwarded to the
// enclave over the link with a deadline, and the enclave's status code
// reaches the client unchanged. A link that cannot reach the enclave yields
// codes.Unavailable.
package proxy

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/limits"
	"github.com/nitrosigner/nitrosigner/parent/internal/store"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Caller sends one request to the enclave. It is satisfied by
// *link.Client; every error it returns is a gRPC status error.
//
// A Caller bounds every call itself, also when ctx has a later deadline or
// none ([link.Client] does, with its ClientConfig.CallTimeout): the proxy
// adds no context.WithTimeout of its own on the signing path, whose timer
// and cancellation wiring cost more than the rest of the relay.
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp proto.Message) error
	// CallRaw sends an encoded request; resp gets the encoded answer and
	// must not retain it.
	CallRaw(ctx context.Context, method uint16, req []byte, resp func([]byte) error) error
}

// Size limits enforced by the parent before forwarding, so that oversized
// requests cost the enclave nothing. They mirror the enclave's own checks,
// which remain authoritative.
const (
	MaxBatch       = 256
	MaxNonce       = 512
	MaxMessageSize = limits.Message // SignRequest.message; package limits has the others
)

// Config configures a [Service].
type Config struct {
	// Enclave is the link to the enclave. Required.
	Enclave Caller
	// Store keeps the sealed keys and KEKs. Required.
	Store store.Store
	// CallTimeout bounds work the proxy starts on its own, detached from
	// the client's call (a key load shared by several callers: store reads
	// and LoadKeys). Forwarded calls are bounded by the Enclave caller.
	// Default 10 s.
	CallTimeout time.Duration
	// OnKMSCredentials, if set, is called when the enclave reports that it
	// has no valid AWS credentials (for example after a restart); it should
	// push them. The failed call is then retried once.
	OnKMSCredentials func(ctx context.Context) error
	// FreezeFromStore makes the freeze switch start unknown: signing is
	// refused (Unavailable) until [Service.SyncFreeze] first reads it from
	// the store. Without it the service starts not frozen.
	FreezeFromStore bool
	// FreezeMaxStale, if positive, makes the freeze state unknown again
	// (signing refused, Unavailable) when [Service.SyncFreeze] has not read
	// the store for that long, so that a parent cut off from the store does
	// not miss a freeze made through another. The parent uses three poll
	// intervals.
	FreezeMaxStale time.Duration
	// Logger receives operator logs. Default slog.Default().
	Logger *slog.Logger
}

// Service implements signerv1.SignerServiceServer by forwarding to the
// enclave. It is safe for concurrent use.
type Service struct {
	signerv1.UnimplementedSignerServiceServer
	enclave Caller
	store   store.Store
	timeout time.Duration
	log     *slog.Logger
	keks    kekCache
	loads   singleflight.Group
	onCreds func(ctx context.Context) error
	// freeze is the signing switch (nil: not read from the store yet).
	freeze atomic.Pointer[signerv1.FreezeState]
	// freezeMaxStale is how long reads of the freeze state and of the
	// change log may fail before signing is refused.
	freezeMaxStale time.Duration
	// freezeLock (a one-slot semaphore, so that waiting honours contexts)
	// orders changes of the freeze state and guards freezeRead. Only
	// Freeze's first step (freezeNow) changes the state without it, and
	// only to frozen.
	freezeLock chan struct{}
	// pushLock (a one-slot semaphore) makes pushes of the freeze state to
	// the enclave take turns (pushFreeze).
	pushLock chan struct{}
	// freezeRead is when the store's state was last read; stale while
	// reads failed for longer than freezeMaxStale (the state is then
	// unknown again).
	freezeRead readClock
	// freezePending is a freeze in force here that the store may not
	// hold yet (its write failed, or its Freeze could not take the lock);
	// every sync writes it, and no stored "not frozen" undoes it. Freeze
	// sets it without the lock, before the state it names is in force.
	freezePending atomic.Pointer[signerv1.FreezeState]
	// changes is this parent's view of the key change log (changes.go).
	changes changeLog
	// bg runs background work (pruning the change log) under bgCtx, which
	// Close cancels.
	bg       sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
}

var _ signerv1.SignerServiceServer = (*Service)(nil)

// New returns a service for cfg.
func New(cfg Config) *Service {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		enclave: cfg.Enclave, store: cfg.Store, timeout: cfg.CallTimeout, log: cfg.Logger,
		keks: kekCache{blobs: map[string][]byte{}}, onCreds: cfg.OnKMSCredentials,
		freezeLock: make(chan struct{}, 1), pushLock: make(chan struct{}, 1), freezeMaxStale: cfg.FreezeMaxStale,
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.changes.appending = make(chan struct{}, 1)
	s.changes.lim = changeLimits{keep: changeKeep, pruneEvery: changePruneEvery, catchUp: changeCatchUp}
	// A parent whose store cannot list the log from the start goes stale
	// like one that lost it later.
	s.changes.read.start()
	if !cfg.FreezeFromStore {
		s.freeze.Store(&signerv1.FreezeState{})
	}
	return s
}

// readClock tracks when something was last read from the store, and turns
// stale when reads keep failing for longer than a limit. Its user
// serializes the calls; stale may be read at any time.
type readClock struct {
	last  time.Time // zero: never read, which the clock does not judge
	stale atomic.Bool
}

// start counts the time until the first read as time without one.
func (c *readClock) start() { c.last = time.Now() }

// succeeded notes a read, and reports whether the clock was stale.
func (c *readClock) succeeded() (wasStale bool) {
	c.last = time.Now()
	return c.stale.Swap(false)
}

// failed notes a failed read, and reports whether it made the clock stale:
// the last read is older than max (max 0: never).
func (c *readClock) failed(max time.Duration) (nowStale bool) {
	return max > 0 && !c.last.IsZero() && time.Since(c.last) > max && !c.stale.Swap(true)
}

// Close stops the service's background work and waits for it.
func (s *Service) Close() {
	s.bgCancel()
	s.bg.Wait()
}

// bounded gives a key-management or freeze call the parent's own deadline
// (CallTimeout, or the client's if sooner) for all of its store and enclave
// work: a client without a deadline must not hold a call open forever on a
// store that stopped answering.
func (s *Service) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

func (s *Service) call(ctx context.Context, m enclavev1.Method, req, resp proto.Message) error {
	err := s.callOnce(ctx, m, req, resp)
	if s.needsCredentials(ctx, err) {
		err = s.callOnce(ctx, m, req, resp)
	}
	return err
}

func (s *Service) callOnce(ctx context.Context, m enclavev1.Method, req, resp proto.Message) error {
	return s.enclave.Call(ctx, uint16(m), req, resp)
}

// needsCredentials reports whether err says the enclave lacks AWS
// credentials, and if so pushes them; true means "retry".
func (s *Service) needsCredentials(ctx context.Context, err error) bool {
	if s.onCreds == nil || err == nil {
		return false
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no valid AWS credentials") {
		return false
	}
	if perr := s.onCreds(ctx); perr != nil {
		s.log.WarnContext(ctx, "pushing AWS credentials to the enclave failed", "err", perr)
		return false
	}
	return true
}

// SignBatch implements signerv1.SignerServiceServer.
func (s *Service) SignBatch(ctx context.Context, r *signerv1.SignBatchRequest) (*signerv1.SignBatchResponse, error) {
	if err := s.frozenErr(); err != nil {
		return nil, err
	}
	if n := len(r.GetRequests()); n == 0 || n > MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "requests: must hold 1..%d items, got %d", MaxBatch, n)
	}
	// An item over a size limit fails on its own, as the enclave would
	// fail it, but here: it is not forwarded.
	var refused []*signerv1.SignResult
	for i, x := range r.GetRequests() {
		if err := checkDecodedSize(x); err != nil {
			if refused == nil {
				refused = make([]*signerv1.SignResult, len(r.GetRequests()))
			}
			refused[i] = errorResult(err)
		}
	}
	if refused == nil {
		return s.signBatch(ctx, r)
	}
	fwd := &signerv1.SignBatchRequest{}
	var at []int
	for i, x := range r.GetRequests() {
		if refused[i] == nil {
			fwd.Requests = append(fwd.Requests, x)
			at = append(at, i)
		}
	}
	if len(at) == 0 {
		return &signerv1.SignBatchResponse{Results: refused}, nil
	}
	out, err := s.signBatch(ctx, fwd)
	if err != nil {
		return nil, err
	}
	for j, i := range at {
		refused[i] = out.GetResults()[j]
	}
	out.Results = refused
	return out, nil
}

// errorResult is a batch item's failure with err's status.
func errorResult(err error) *signerv1.SignResult {
	st := status.Convert(err)
	return &signerv1.SignResult{Result: &signerv1.SignResult_Error{Error: &signerv1.Status{Code: int32(st.Code()), Message: st.Message()}}}
}

// signBatch forwards a batch and loads, once, the keys of the items the
// enclave had not loaded; it answers one result per item of r.
func (s *Service) signBatch(ctx context.Context, r *signerv1.SignBatchRequest) (*signerv1.SignBatchResponse, error) {
	var out enclavev1.SignBatchResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: r}, &out); err != nil {
		return nil, err
	}
	res := out.GetResponse().GetResults()
	if len(res) != len(r.GetRequests()) {
		return nil, status.Error(codes.Internal, "malformed enclave answer: SignBatch result count")
	}
	// Items whose key the enclave has not loaded: load those keys and sign
	// those items again, once.
	var retry []int
	var ids []string
	seen := map[string]bool{}
	for i, x := range res {
		if e := x.GetError(); e != nil && codes.Code(e.GetCode()) == codes.FailedPrecondition && e.GetMessage() == enclavev1.KeyNotLoaded {
			id := r.GetRequests()[i].GetKeyId()
			// As in Sign: an id that cannot name a key is the client's
			// mistake, not a name to look up in the store.
			if err := validKeyID(id); err != nil {
				res[i] = errorResult(err)
				continue
			}
			retry = append(retry, i)
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if len(retry) == 0 {
		return out.GetResponse(), nil
	}
	loadErr := map[string]error{}
	for i, err := range s.load(ctx, ids) {
		if err != nil {
			loadErr[ids[i]] = err
		}
	}
	again := &signerv1.SignBatchRequest{}
	var at []int
	for _, i := range retry {
		id := r.GetRequests()[i].GetKeyId()
		if err := loadErr[id]; err != nil {
			res[i] = errorResult(err)
			continue
		}
		again.Requests = append(again.Requests, r.GetRequests()[i])
		at = append(at, i)
	}
	if len(at) > 0 {
		// As in Sign: a freeze answered during the loads holds here too.
		if err := s.frozenErr(); err != nil {
			return nil, err
		}
		var out2 enclavev1.SignBatchResponse
		if err := s.call(ctx, enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: again}, &out2); err != nil {
			return nil, err
		}
		if len(out2.GetResponse().GetResults()) != len(at) {
			return nil, status.Error(codes.Internal, "malformed enclave answer: SignBatch result count")
		}
		for j, i := range at {
			res[i] = out2.GetResponse().GetResults()[j]
		}
	}
	return out.GetResponse(), nil
}

// GetAttestation implements signerv1.SignerServiceServer.
func (s *Service) GetAttestation(ctx context.Context, r *signerv1.GetAttestationRequest) (*signerv1.GetAttestationResponse, error) {
	if n := len(r.GetNonce()); n == 0 || n > MaxNonce {
		return nil, status.Errorf(codes.InvalidArgument, "nonce: must be 1..%d bytes, got %d", MaxNonce, n)
	}
	var out enclavev1.GetAttestationResponse
	if err := s.call(ctx, enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: r.GetNonce()}, &out); err != nil {
		return nil, err
	}
	return out.GetResponse(), nil
}

// Ping checks that the enclave answers.
func (s *Service) Ping(ctx context.Context) error {
	return s.call(ctx, enclavev1.Method_METHOD_PING, &enclavev1.PingRequest{}, &enclavev1.PingResponse{})
}
