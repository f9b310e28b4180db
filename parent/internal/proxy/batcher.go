package proxy

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

const (
	// maxBatchBytes bounds the encoded requests of one batch, far below the
	// link's frame limit, so that a batch never exceeds it whatever mix of
	// requests it holds.
	maxBatchBytes = 1 << 20
	// maxQueue bounds the calls waiting for a batch; beyond it Sign answers
	// ResourceExhausted at once (backpressure instead of unbounded memory).
	maxQueue = 4096
)

// batcher forwards unary Sign calls to the enclave, batching them under
// load. While fewer than maxInFlight enclave calls are running, a Sign goes
// out at once on its own, so a lightly loaded service adds no waiting. Past
// that, calls queue, and whenever an enclave call finishes, the oldest queued
// calls (up to maxBatch requests and maxBatchBytes) leave as one SignBatch:
// the enclave pays its per-frame cost once for many signatures (group
// commit).
//
// Every call is bounded by timeout, queueing included, and keeps its own
// deadline: a caller whose context ends while queued leaves the queue; one
// whose context ends while its batch runs gets its context error at once.
type batcher struct {
	enclave       Caller
	timeout       time.Duration
	maxInFlight   int
	maxBatch      int
	maxBatchBytes int
	maxQueue      int

	mu       sync.Mutex
	inFlight int
	queue    []*waiter
}

type waiter struct {
	ctx       context.Context
	req       *signerv1.SignRequest
	size      int
	abandoned atomic.Bool
	// resp and err are written before done is closed.
	resp *signerv1.SignResponse
	err  error
	done chan struct{}
}

func (b *batcher) sign(ctx context.Context, r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	b.mu.Lock()
	if b.inFlight < b.maxInFlight {
		b.inFlight++
		b.mu.Unlock()
		resp, err := b.single(ctx, r)
		b.release()
		return resp, err
	}
	if len(b.queue) >= b.maxQueue {
		b.mu.Unlock()
		return nil, status.Error(codes.ResourceExhausted, "too many signing requests waiting for the enclave; retry later")
	}
	w := &waiter{ctx: ctx, req: r, size: proto.Size(r), done: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	select {
	case <-w.done:
		return w.resp, w.err
	case <-ctx.Done():
		w.abandoned.Store(true)
		b.mu.Lock()
		if i := slices.Index(b.queue, w); i >= 0 {
			b.queue = slices.Delete(b.queue, i, i+1)
		}
		b.mu.Unlock()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (b *batcher) single(ctx context.Context, r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	var out enclavev1.SignResponse
	if err := b.enclave.Call(ctx, uint16(enclavev1.Method_METHOD_SIGN), &enclavev1.SignRequest{Request: r}, &out); err != nil {
		return nil, err
	}
	return out.GetResponse(), nil
}

// release ends one enclave call and, if callers are queued, starts the next
// batch in its place.
func (b *batcher) release() {
	b.mu.Lock()
	b.inFlight--
	if len(b.queue) == 0 {
		b.mu.Unlock()
		return
	}
	n, bytes := 0, 0
	for n < len(b.queue) && n < b.maxBatch && (n == 0 || bytes+b.queue[n].size <= b.maxBatchBytes) {
		bytes += b.queue[n].size
		n++
	}
	batch := slices.Clone(b.queue[:n])
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	b.inFlight++
	b.mu.Unlock()
	go b.send(batch)
}

func (b *batcher) send(batch []*waiter) {
	defer b.release()
	live := batch[:0]
	for _, w := range batch {
		if !w.abandoned.Load() && w.ctx.Err() == nil {
			live = append(live, w)
		}
	}
	switch len(live) {
	case 0:
		return
	case 1:
		w := live[0]
		w.resp, w.err = b.single(w.ctx, w.req)
		close(w.done)
		return
	}

	// The batch may run as long as its most patient caller; every caller's
	// context is already bounded by timeout.
	var latest time.Time
	reqs := make([]*signerv1.SignRequest, len(live))
	for i, w := range live {
		reqs[i] = w.req
		if d, _ := w.ctx.Deadline(); d.After(latest) {
			latest = d
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), latest)
	defer cancel()
	var out enclavev1.SignBatchResponse
	err := b.enclave.Call(ctx, uint16(enclavev1.Method_METHOD_SIGN_BATCH),
		&enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{Requests: reqs}}, &out)
	results := out.GetResponse().GetResults()
	if err == nil && len(results) != len(live) {
		err = status.Errorf(codes.Internal, "enclave answered %d results for %d requests", len(results), len(live))
	}
	for i, w := range live {
		w.resp, w.err = result(err, results, i)
		close(w.done)
	}
}

// result picks item i's answer out of a batch reply.
func result(callErr error, results []*signerv1.SignResult, i int) (*signerv1.SignResponse, error) {
	if callErr != nil {
		return nil, callErr
	}
	if e := results[i].GetError(); e != nil {
		if codes.Code(e.GetCode()) == codes.OK {
			return nil, status.Error(codes.Internal, "enclave answered an error without a code")
		}
		return nil, status.Error(codes.Code(e.GetCode()), e.GetMessage())
	}
	if r := results[i].GetResponse(); r != nil {
		return r, nil
	}
	return nil, status.Error(codes.Internal, "enclave answered an empty result")
}
