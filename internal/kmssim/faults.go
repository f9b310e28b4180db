//go:build !nosim

package kmssim

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Fault is a failure the simulator can inject instead of answering a
// request.
type Fault int

// Faults that can be injected. Each happens before the request is
// authenticated, so it applies to any request.
const (
	// NoFault processes the request normally.
	NoFault Fault = iota
	// Throttle answers HTTP 400 ThrottlingException "Rate exceeded", as KMS
	// does when a request quota is exceeded. The SDK retries it.
	Throttle
	// InternalError answers HTTP 500 KMSInternalException. The SDK retries
	// it.
	InternalError
	// Unavailable answers HTTP 503 ServiceUnavailableException. The SDK
	// retries it.
	Unavailable
	// Drop closes the connection without an answer ([Server.Serve] speaks
	// HTTP/1.1; over HTTP/2 the stream would be reset). The SDK retries it
	// as a connection error.
	Drop
)

// String returns the fault's name.
func (f Fault) String() string {
	switch f {
	case NoFault:
		return "none"
	case Throttle:
		return "throttle"
	case InternalError:
		return "internal-error"
	case Unavailable:
		return "unavailable"
	case Drop:
		return "drop"
	}
	return "unknown"
}

// Faults injects latency and failures into a [Server]'s answers, for tests.
// Get it with [Server.Faults]. The zero configuration injects nothing.
// Methods are safe for concurrent use and take effect for the next request.
//
// For each request the server first waits for the configured latency (or
// until the request is cancelled), then consults, in order, the hook, the
// queue of injected faults and the rate limit; the first one that returns a
// fault wins.
type Faults struct {
	now func() time.Time

	mu      sync.Mutex
	latency time.Duration
	hook    func(op string) Fault
	queue   []injection
	// Token bucket: rate tokens per second, up to burst.
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// injection is a fault for the next n requests of the given operations
// (all operations if ops is empty).
type injection struct {
	fault Fault
	n     int
	ops   []string
}

// SetLatency delays every answer by d (0 disables). A delayed request
// still ends early when the client gives up or the server shuts down.
func (f *Faults) SetLatency(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = d
}

// Inject makes the next n requests for any of ops (operation names such as
// "Decrypt"; all operations when ops is empty) fail with fault. Injections
// queue up: a request takes the first one that matches it.
func (f *Faults) Inject(fault Fault, n int, ops ...string) {
	if n <= 0 || fault == NoFault {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, injection{fault: fault, n: n, ops: slices.Clone(ops)})
}

// SetHook installs a function called with the operation name of every
// request; a result other than [NoFault] is injected. nil removes it. The
// hook runs with the Faults locked, so it must not call Faults methods.
func (f *Faults) SetHook(hook func(op string) Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = hook
}

// SetRateLimit throttles requests beyond perSecond requests per second,
// allowing bursts of up to burst requests, like a KMS request quota.
// perSecond <= 0 disables the limit. The bucket starts full and uses the
// server's clock ([Config.Now]).
func (f *Faults) SetRateLimit(perSecond float64, burst int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rate = max(perSecond, 0)
	f.burst = float64(max(burst, 1))
	f.tokens = f.burst
	f.last = f.now()
}

// Reset removes every latency, hook, queued injection and rate limit.
func (f *Faults) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = 0
	f.hook = nil
	f.queue = nil
	f.rate = 0
}

// delay waits for the configured latency. It returns false when ctx ends
// first.
func (f *Faults) delay(ctx context.Context) bool {
	f.mu.Lock()
	d := f.latency
	f.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// next returns the fault to inject into a request for op.
func (f *Faults) next(op string) Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hook != nil {
		if fault := f.hook(op); fault != NoFault {
			return fault
		}
	}
	for i := range f.queue {
		in := &f.queue[i]
		if len(in.ops) > 0 && !slices.Contains(in.ops, op) {
			continue
		}
		fault := in.fault
		if in.n--; in.n == 0 {
			f.queue = slices.Delete(f.queue, i, i+1)
		}
		return fault
	}
	if f.rate > 0 {
		now := f.now()
		f.tokens = min(f.burst, f.tokens+now.Sub(f.last).Seconds()*f.rate)
		f.last = now
		if f.tokens < 1 {
			return Throttle
		}
		f.tokens--
	}
	return NoFault
}

// faultError is the answer for an injected fault other than Drop.
func faultError(fault Fault) *apiError {
	switch fault {
	case Throttle:
		return newAPIError(http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
	case InternalError:
		return errInternal()
	default:
		return newAPIError(http.StatusServiceUnavailable, "ServiceUnavailableException", "Service is unavailable. Please retry.")
	}
}
