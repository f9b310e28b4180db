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

	inner atomic.Pointer[context.Context] // the real context, once built

	mu       sync.Mutex
	cancel   context.CancelFunc
	released bool
}

var _ context.Context = (*reqCtx)(nil)

func newReqCtx(parent context.Context, deadline time.Time) *reqCtx {
	return &reqCtx{parent: parent, deadline: deadline}
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
