package link

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// reqCtx is the context of a request with a deadline. It behaves like
// context.WithDeadline(parent, deadline) whose cancel function is release,
// but builds that context (a timer and a registration with the parent)
// only when Done is first called: most handlers, such as signing, never
// call it, and the eager version costs about a tenth of the link's CPU.
// Until then Err is computed from the parent and the clock.
type reqCtx struct {
	parent   context.Context
	deadline time.Time
	rid      requestID // the request id, if the request carried one

	inner atomic.Pointer[context.Context] // the real context, once built

	mu       sync.Mutex
	cancel   context.CancelFunc
	released bool
}

var _ context.Context = (*reqCtx)(nil)

func newReqCtx(parent context.Context, deadline time.Time, rid requestID) *reqCtx {
	return &reqCtx{parent: parent, deadline: deadline, rid: rid}
}

func (c *reqCtx) Deadline() (time.Time, bool) {
	if pd, ok := c.parent.Deadline(); ok && pd.Before(c.deadline) {
		return pd, true
	}
	return c.deadline, true
}

func (c *reqCtx) Done() <-chan struct{} { return c.build().Done() }

func (c *reqCtx) Err() error {
	if inner := c.inner.Load(); inner != nil {
		return (*inner).Err()
	}
	c.mu.Lock()
	released := c.released
	c.mu.Unlock()
	if err := c.parent.Err(); err != nil {
		return err
	}
	if released {
		return context.Canceled
	}
	if !time.Now().Before(c.deadline) {
		// Build the real context so that Done agrees from now on.
		return c.build().Err()
	}
	return nil
}

func (c *reqCtx) Value(key any) any {
	if _, ok := key.(requestIDKey); ok && c.rid.n > 0 {
		return c.rid.String()
	}
	if inner := c.inner.Load(); inner != nil {
		return (*inner).Value(key)
	}
	return c.parent.Value(key)
}

// build returns the real context, creating it on first use.
func (c *reqCtx) build() context.Context {
	if inner := c.inner.Load(); inner != nil {
		return *inner
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if inner := c.inner.Load(); inner != nil {
		return *inner
	}
	ctx, cancel := context.WithDeadline(c.parent, c.deadline)
	if c.released {
		cancel()
	}
	c.cancel = cancel
	c.inner.Store(&ctx)
	return ctx
}

// release cancels the context and frees its timer, like the cancel
// function of context.WithDeadline.
func (c *reqCtx) release() {
	c.mu.Lock()
	c.released = true
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// MaxRequestIDLen is the longest request id a request frame carries.
const MaxRequestIDLen = 64

type requestIDKey struct{}

// requestID holds a request id read from a frame without allocating: the
// string is made only when a handler asks for it (a log line).
type requestID struct {
	b [MaxRequestIDLen]byte
	n uint8
}

func (r *requestID) String() string { return string(r.b[:r.n]) }

// WithRequestID returns ctx carrying id as its request id: the name of one
// client call in the logs of both ends. A call made with the returned
// context sends id with its request, and the server's handler finds it in
// its context with [RequestID]. An id that is not 1 to [MaxRequestIDLen]
// bytes of printable ASCII (0x21–0x7e) is not sent.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id of ctx (see [WithRequestID]) if it is a
// valid one, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	if !ValidRequestID(id) {
		return ""
	}
	return id
}

// ValidRequestID reports whether id is 1 to [MaxRequestIDLen] bytes of
// printable ASCII (0x21–0x7e): no spaces, no control characters, nothing
// that could forge a log line.
func ValidRequestID[T string | []byte](id T) bool {
	if len(id) == 0 || len(id) > MaxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
