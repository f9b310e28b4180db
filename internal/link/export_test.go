package link

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// NewRequestContext exposes the lazy request context for tests.
func NewRequestContext(parent context.Context, deadline time.Time) (context.Context, func()) {
	c := newReqCtx(parent, deadline, requestID{})
	return c, c.release
}

// CountYields makes servers started from now on count their workers'
// yields instead of making them, until the test ends.
func CountYields(t interface{ Cleanup(func()) }) *atomic.Int64 {
	var n atomic.Int64
	old := yieldCPU
	yieldCPU = func() { n.Add(1) }
	t.Cleanup(func() { yieldCPU = old })
	return &n
}

// SetRequestBudget makes servers started from now on hold at most n bytes
// of request payloads at once (or MaxFrame, if larger), until the test ends.
func SetRequestBudget(t interface{ Cleanup(func()) }, n int) {
	old := requestMemory
	requestMemory = n
	t.Cleanup(func() { requestMemory = old })
}

// WrittenQueue sends hdr and payload through a writer and returns the
// writer's queue, which it reuses, once the write is done.
func WrittenQueue(hdr, payload []byte) ([]byte, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go io.Copy(io.Discard, b) //nolint:errcheck // ends when the pipe closes
	w := newWriter(a, 1<<20, time.Second, "", func(f func()) { go f() }, func(error) {})
	defer w.stop(nil)
	if err := w.send(hdr, payload, false, true); err != nil {
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.spare[:cap(w.spare)], nil
}

// ReleasedRequest has a server release a served request's buffer holding
// payload and returns that buffer's memory.
func ReleasedRequest(payload []byte) ([]byte, error) {
	s, err := newServer(ServerConfig{Handler: func(context.Context, uint16, []byte, []byte) ([]byte, error) { return nil, nil }})
	if err != nil {
		return nil, err
	}
	if err := s.mem.Acquire(context.Background(), int64(len(payload))); err != nil {
		return nil, err
	}
	req := append(make([]byte, 0, 2*minBufCap), payload...)
	mem := req[:cap(req)]
	s.releaseReq(&req)
	return mem, nil
}

// WatchFrameBuffers makes clients keep, until the test ends, the buffers
// of the request frames they release instead of pooling them, and returns
// a function listing those buffers' whole memory.
func WatchFrameBuffers(t interface{ Cleanup(func()) }) func() [][]byte {
	var mu sync.Mutex
	var kept [][]byte
	old := putFrame
	putFrame = func(b *[]byte, grown []byte) {
		mu.Lock()
		defer mu.Unlock()
		kept = append(kept, (*b)[:cap(*b)])
		if grown != nil && cap(grown) > cap(*b) {
			kept = append(kept, grown[:cap(grown)])
		}
	}
	t.Cleanup(func() { putFrame = old })
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(kept)
	}
}
