package proxy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/parent/internal/proxy"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// fakeEnclave answers Sign and SignBatch; the signature echoes the key id.
// Key id "bad" fails with NotFound. While gate is non-nil, calls wait on it.
type fakeEnclave struct {
	mu      sync.Mutex
	gate    chan struct{}
	started chan struct{}
	methods []enclavev1.Method
	sizes   []int
	fail    error
}

func (f *fakeEnclave) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	f.mu.Lock()
	f.methods = append(f.methods, enclavev1.Method(method))
	gate := f.gate
	f.mu.Unlock()
	if f.started != nil {
		f.started <- struct{}{}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		return fail
	}
	answer := func(r *signerv1.SignRequest) (*signerv1.SignResponse, error) {
		if r.GetKeyId() == "bad" {
			return nil, status.Error(codes.NotFound, "key not found")
		}
		return &signerv1.SignResponse{KeyId: r.GetKeyId(), Signature: []byte(r.GetKeyId())}, nil
	}
	switch m := enclavev1.Method(method); m {
	case enclavev1.Method_METHOD_SIGN:
		r, err := answer(req.(*enclavev1.SignRequest).GetRequest())
		if err != nil {
			return err
		}
		resp.(*enclavev1.SignResponse).Response = r
	case enclavev1.Method_METHOD_SIGN_BATCH:
		reqs := req.(*enclavev1.SignBatchRequest).GetRequest().GetRequests()
		f.mu.Lock()
		f.sizes = append(f.sizes, len(reqs))
		f.mu.Unlock()
		out := &signerv1.SignBatchResponse{}
		for _, r := range reqs {
			switch r.GetKeyId() {
			case "codeless":
				out.Results = append(out.Results, &signerv1.SignResult{Result: &signerv1.SignResult_Error{Error: &signerv1.Status{}}})
				continue
			case "empty":
				out.Results = append(out.Results, &signerv1.SignResult{})
				continue
			}
			a, err := answer(r)
			if err != nil {
				st := status.Convert(err)
				out.Results = append(out.Results, &signerv1.SignResult{Result: &signerv1.SignResult_Error{
					Error: &signerv1.Status{Code: int32(st.Code()), Message: st.Message()}}})
				continue
			}
			out.Results = append(out.Results, &signerv1.SignResult{Result: &signerv1.SignResult_Response{Response: a}})
		}
		resp.(*enclavev1.SignBatchResponse).Response = out
	default:
		return status.Errorf(codes.Unimplemented, "method %v", m)
	}
	return nil
}

func signReq(id string) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}
}

func TestSignAloneWhenIdle(t *testing.T) {
	f := &fakeEnclave{}
	s := proxy.New(proxy.Config{Enclave: f})
	for range 3 {
		r, err := s.Sign(context.Background(), signReq("k1"))
		require.NoError(t, err)
		assert.Equal(t, []byte("k1"), r.GetSignature())
	}
	assert.Equal(t, []enclavev1.Method{enclavev1.Method_METHOD_SIGN, enclavev1.Method_METHOD_SIGN, enclavev1.Method_METHOD_SIGN}, f.methods)
}

// startBlocked fills the single in-flight slot with a call held at the gate.
func startBlocked(t *testing.T, f *fakeEnclave, s *proxy.Service) chan error {
	t.Helper()
	first := make(chan error, 1)
	go func() {
		_, err := s.Sign(context.Background(), signReq("first"))
		first <- err
	}()
	<-f.started
	return first
}

func TestBatchesUnderLoad(t *testing.T) {
	f := &fakeEnclave{gate: make(chan struct{}), started: make(chan struct{}, 16)}
	s := proxy.New(proxy.Config{Enclave: f, SignInFlight: 1})
	first := startBlocked(t, f, s)

	ids := []string{"a", "b", "bad", "c", "d"}
	type res struct {
		id  string
		sig []byte
		err error
	}
	results := make(chan res, len(ids))
	for _, id := range ids {
		go func() {
			r, err := s.Sign(context.Background(), signReq(id))
			results <- res{id, r.GetSignature(), err}
		}()
	}
	// Let all five queue behind the blocked call, then open the gate.
	time.Sleep(100 * time.Millisecond)
	close(f.gate)
	require.NoError(t, <-first)
	for range ids {
		r := <-results
		if r.id == "bad" {
			assert.Equal(t, codes.NotFound, status.Code(r.err))
			continue
		}
		require.NoError(t, r.err, r.id)
		assert.Equal(t, []byte(r.id), r.sig, "each caller gets its own answer")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, []int{5}, f.sizes, "the queued calls went out as one batch")
}

func TestQueuedCallerDeadline(t *testing.T) {
	f := &fakeEnclave{gate: make(chan struct{}), started: make(chan struct{}, 16)}
	s := proxy.New(proxy.Config{Enclave: f, SignInFlight: 1})
	first := startBlocked(t, f, s)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Sign(ctx, signReq("late"))
	assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
	assert.Less(t, time.Since(start), time.Second)

	close(f.gate)
	require.NoError(t, <-first)
	// The abandoned caller was dropped: nothing more reached the enclave.
	time.Sleep(50 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Len(t, f.methods, 1)
}

func TestBatchTransportFailure(t *testing.T) {
	f := &fakeEnclave{gate: make(chan struct{}), started: make(chan struct{}, 16)}
	s := proxy.New(proxy.Config{Enclave: f, SignInFlight: 1})
	first := startBlocked(t, f, s)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := s.Sign(context.Background(), signReq("x"))
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond)
	f.mu.Lock()
	f.fail = status.Error(codes.Unavailable, "enclave unavailable: gone")
	f.mu.Unlock()
	close(f.gate)
	assert.Equal(t, codes.Unavailable, status.Code(<-first))
	for range 3 {
		assert.Equal(t, codes.Unavailable, status.Code(<-errs))
	}
}

func TestParentSideLimits(t *testing.T) {
	s := proxy.New(proxy.Config{Enclave: &fakeEnclave{}})
	_, err := s.SignBatch(context.Background(), &signerv1.SignBatchRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = s.GetAttestation(context.Background(), &signerv1.GetAttestationRequest{Nonce: make([]byte, proxy.MaxNonce+1)})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
}

func msgReq(id string, n int) *signerv1.SignRequest {
	return &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Message{Message: make([]byte, n)}}
}

// queueBehindGate fills the single slot, queues reqs, opens the gate and
// returns each queued call's error.
func queueBehindGate(t *testing.T, f *fakeEnclave, s *proxy.Service, reqs []*signerv1.SignRequest) []error {
	t.Helper()
	first := startBlocked(t, f, s)
	errs := make(chan error, len(reqs))
	for _, r := range reqs {
		go func() {
			_, err := s.Sign(context.Background(), r)
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond)
	close(f.gate)
	require.NoError(t, <-first)
	out := make([]error, len(reqs))
	for i := range reqs {
		out[i] = <-errs
	}
	return out
}

func TestBatchByteBudget(t *testing.T) {
	f := &fakeEnclave{gate: make(chan struct{}), started: make(chan struct{}, 64)}
	s := proxy.New(proxy.Config{Enclave: f, SignInFlight: 1})
	s.SetBatchLimits(4096, 200<<10) // 200 KiB per batch
	var reqs []*signerv1.SignRequest
	for range 12 {
		reqs = append(reqs, msgReq("k", 60<<10))
	}
	for _, err := range queueBehindGate(t, f, s, reqs) {
		require.NoError(t, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.sizes {
		assert.LessOrEqual(t, n, 3, "a batch holds at most 200 KiB of 60 KiB requests")
		total += n
	}
	singles := 0
	for _, m := range f.methods {
		if m == enclavev1.Method_METHOD_SIGN {
			singles++
		}
	}
	assert.Equal(t, 12, total+singles-1, "every queued request was sent exactly once")
}

func TestQueueFull(t *testing.T) {
	f := &fakeEnclave{gate: make(chan struct{}), started: make(chan struct{}, 64)}
	s := proxy.New(proxy.Config{Enclave: f, SignInFlight: 1})
	s.SetBatchLimits(3, 1<<20)
	reqs := []*signerv1.SignRequest{signReq("a"), signReq("b"), signReq("c"), signReq("d"), signReq("e")}
	exhausted := 0
	for _, err := range queueBehindGate(t, f, s, reqs) {
		if status.Code(err) == codes.ResourceExhausted {
			exhausted++
			continue
		}
		require.NoError(t, err)
	}
	assert.Equal(t, 2, exhausted, "calls beyond the queue limit are refused at once")
}

func TestMalformedBatchResults(t *testing.T) {
	f := &fakeEnclave{gate: make(chan struct{}), started: make(chan struct{}, 64)}
	s := proxy.New(proxy.Config{Enclave: f, SignInFlight: 1})
	errs := queueBehindGate(t, f, s, []*signerv1.SignRequest{signReq("codeless"), signReq("empty"), signReq("ok")})
	codesSeen := map[codes.Code]int{}
	for _, err := range errs {
		codesSeen[status.Code(err)]++
	}
	assert.Equal(t, map[codes.Code]int{codes.Internal: 2, codes.OK: 1}, codesSeen,
		"a code-less error or an empty result is never a success; the good item is unaffected")
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, []int{3}, f.sizes)
}

func TestMessageLimitAtParent(t *testing.T) {
	f := &fakeEnclave{}
	s := proxy.New(proxy.Config{Enclave: f})
	_, err := s.Sign(context.Background(), msgReq("k", proxy.MaxMessageSize+1))
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Empty(t, f.methods, "refused before reaching the enclave")
}
