package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// batcher forwards unary Sign calls to the enclave, batching them under
// load. While fewer than maxInFlight enclave calls are running, a Sign goes
// out at once on its own, so a lightly loaded service adds no waiting. Past
// that, calls queue, and whenever an enclave call finishes, everything queued
// (up to maxBatch) leaves as one SignBatch: the enclave then pays its
// per-frame cost once for many signatures (group commit).
//
// Each caller keeps its own deadline: a caller whose context ends while
// queued is dropped from the next batch; one whose context ends while its
// batch runs gets its context error at once.
type batcher struct {
	enclave     Caller
	timeout     time.Duration
	maxInFlight int
	maxBatch    int

	mu       sync.Mutex
	inFlight int
	queue    []*waiter
}

type waiter struct {
	ctx       context.Context
	req       *signerv1.SignRequest
	abandoned atomic.Bool
	// resp and err are written before done is closed.
	resp *signerv1.SignResponse
	err  error
	done chan struct{}
}

func (b *batcher) sign(ctx context.Context, r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	b.mu.Lock()
	if b.inFlight < b.maxInFlight {
		b.inFlight++
		b.mu.Unlock()
		resp, err := b.single(ctx, r)
		b.release()
		return resp, err
	}
	w := &waiter{ctx: ctx, req: r, done: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	select {
	case <-w.done:
		return w.resp, w.err
	case <-ctx.Done():
		w.abandoned.Store(true)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (b *batcher) single(ctx context.Context, r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
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
	n := min(len(b.queue), b.maxBatch)
	batch := make([]*waiter, n)
	copy(batch, b.queue)
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

	// The batch may run as long as its most patient caller allows.
	deadline := time.Now().Add(b.timeout)
	latest := time.Time{}
	reqs := make([]*signerv1.SignRequest, len(live))
	for i, w := range live {
		reqs[i] = w.req
		if d, ok := w.ctx.Deadline(); ok && d.After(latest) {
			latest = d
		} else if !ok {
			latest = deadline
		}
	}
	if latest.After(deadline) {
		latest = deadline
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
		switch {
		case err != nil:
			w.err = err
		case results[i].GetError() != nil:
			e := results[i].GetError()
			w.err = status.Error(codes.Code(e.GetCode()), e.GetMessage())
		default:
			w.resp = results[i].GetResponse()
		}
		close(w.done)
	}
}
