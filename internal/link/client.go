package link

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Reconnection backoff after failed dials (and connections that broke
// before the server's preamble arrived).
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// errClientClosed is the reason given to calls ended by [Client.Close].
var errClientClosed = errors.New("client closed")

// ClientConfig configures [NewClient].
type ClientConfig struct {
	// Dial opens a connection to the server. Required. The context
	// bounds one attempt (see DialTimeout) and is cancelled by Close.
	Dial func(ctx context.Context) (net.Conn, error)

	// MaxFrame is the largest frame (header and payload, without the
	// length prefix) sent or accepted. A larger request fails with
	// codes.ResourceExhausted before anything is sent; a larger response
	// breaks the connection. Zero means [DefaultMaxFrame]; it should
	// match the server's.
	MaxFrame int

	// CallTimeout bounds every call: a call ends at its context's
	// deadline or CallTimeout after it starts, whichever comes first, so
	// that callers need no context.WithTimeout (and its allocations) of
	// their own. Zero means 30 seconds.
	CallTimeout time.Duration

	// DialTimeout bounds each dial attempt, independently of the calls
	// waiting for it. Zero means 5 seconds.
	DialTimeout time.Duration

	// WriteTimeout is how long one write may stay blocked (the server
	// has stopped reading) before the connection is declared dead and
	// its calls fail with codes.Unavailable. A call whose request is
	// being written when that happens can outlive its deadline by up to
	// this much. Zero means 10 seconds.
	WriteTimeout time.Duration

	// Logger receives connection events. Nil discards them.
	Logger *slog.Logger

	// OnConnect, if set, runs on its own goroutine after each new
	// connection is established (the first and every reconnect), e.g. to
	// hand a restarted peer state it lost. It may make calls, but must not
	// call Close, which waits for it.
	OnConnect func()

	// OnDisconnect, if set, runs on its own goroutine each time an
	// established connection is lost (not when Close ends it), e.g. to
	// report the peer down at once. It may make calls, but must not call
	// Close, which waits for it.
	OnDisconnect func()
}

// Client is the parent's end of the link: it multiplexes calls from any
// number of goroutines over one connection, identified by call ids.
//
// The connection is dialled on the first call. When it breaks, every call
// in progress on it fails with codes.Unavailable, and the next call dials
// again. A dial failure makes calls fail fast with codes.Unavailable for a
// backoff period (50ms, doubling to 1s, reset by a healthy connection)
// before the next attempt; no call waits longer than its context.
//
// A Client is safe for concurrent use. Close releases it.
type Client struct {
	dial         func(ctx context.Context) (net.Conn, error)
	maxFrame     int
	callTimeout  time.Duration
	dialTimeout  time.Duration
	onConnect    func()
	onDisconnect func()
	writeTimeout time.Duration
	log          *slog.Logger

	nextID    atomic.Uint64
	received  atomic.Uint64              // response frames read, over all connections
	cur       atomic.Pointer[clientConn] // the live connection, if any
	closing   chan struct{}              // closed by Close; aborts dials
	wg        sync.WaitGroup             // dialer, readers, flushers
	closeOnce sync.Once

	mu      sync.Mutex
	closed  bool
	dialing chan struct{} // closed when the running dial ends; nil if none
	backoff time.Duration
	retryAt time.Time // no dial before this time
}

// NewClient returns a client for cfg. It does not connect.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Dial == nil {
		return nil, errors.New("link: ClientConfig.Dial is required")
	}
	c := &Client{
		dial:         cfg.Dial,
		maxFrame:     cfg.MaxFrame,
		callTimeout:  cfg.CallTimeout,
		dialTimeout:  cfg.DialTimeout,
		onConnect:    cfg.OnConnect,
		onDisconnect: cfg.OnDisconnect,
		writeTimeout: cfg.WriteTimeout,
		log:          cfg.Logger,
	}
	if c.maxFrame == 0 {
		c.maxFrame = DefaultMaxFrame
	}
	if c.maxFrame < minMaxFrame {
		return nil, fmt.Errorf("link: ClientConfig.MaxFrame %d is below the minimum %d", c.maxFrame, minMaxFrame)
	}
	if c.callTimeout <= 0 {
		c.callTimeout = 30 * time.Second
	}
	if c.dialTimeout <= 0 {
		c.dialTimeout = 5 * time.Second
	}
	if c.writeTimeout <= 0 {
		c.writeTimeout = defaultWriteTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.closing = make(chan struct{})
	return c, nil
}

// Call sends req to the server's handler for method and decodes the
// response into resp. req and resp must be non-nil; resp is reset first.
//
// Every error is a status error (google.golang.org/grpc/status):
//   - the server's code and message, unchanged;
//   - codes.Unavailable ("enclave unavailable", with no OS detail) when the connection
//     cannot be made or breaks before the response arrives;
//   - codes.DeadlineExceeded or codes.Canceled when ctx ends first, and
//     codes.DeadlineExceeded after ClientConfig.CallTimeout;
//   - codes.ResourceExhausted when the request exceeds MaxFrame;
//   - codes.Internal when req cannot be encoded or the response cannot be
//     decoded;
//   - codes.Canceled after Close.
//
// If ctx ends first, the request may still run on the server; its late
// response is dropped.
func (c *Client) Call(ctx context.Context, method uint16, req, resp proto.Message) error {
	b := getBuf()
	frame := appendRequestID((*b)[:lenSize+reqHeaderLen-1], ctx)
	frame, err := proto.MarshalOptions{}.MarshalAppend(frame, req)
	if err != nil {
		// A failed encoding may have written part of req into the buffer,
		// or into a larger one it grew and returned (releaseFrame wipes
		// that); should it return nothing, the buffer is wiped whole.
		clear((*b)[:cap(*b)])
		releaseFrame(b, frame)
		return status.Errorf(codes.Internal, "encode request: %v", err)
	}
	e := getCall()
	e.msg = resp
	err = c.roundTrip(ctx, method, frame, e)
	putCall(e)
	releaseFrame(b, frame)
	return err
}

// CallRaw is [Client.Call] for an already encoded request, which is copied
// before CallRaw returns. On success it calls resp with the encoded response
// and returns resp's error unchanged.
// resp runs on the connection's read goroutine: it must be quick, must not
// block and must not retain its argument. Other errors are as for Call.
func (c *Client) CallRaw(ctx context.Context, method uint16, req []byte, resp func([]byte) error) error {
	b := getBuf()
	frame := append(appendRequestID((*b)[:lenSize+reqHeaderLen-1], ctx), req...)
	e := getCall()
	e.raw = resp
	err := c.roundTrip(ctx, method, frame, e)
	putCall(e)
	releaseFrame(b, frame)
	return err
}

// releaseFrame wipes a sent request frame, which may hold secrets (the
// credentials the parent hands the enclave), and returns its buffer b to
// the pool. frame is b's memory or, if the request outgrew it, a larger
// allocation that replaces it.
func releaseFrame(b *[]byte, frame []byte) {
	clear(frame)
	putFrame(b, frame)
}

// putFrame is putBuf for request frames; tests replace it to see what a
// call leaves in its buffer.
var putFrame = putBuf

// roundTrip sends frame (header space followed by the payload) and waits
// for e to be completed.
func (c *Client) roundTrip(ctx context.Context, method uint16, frame []byte, e *call) error {
	if n := len(frame) - lenSize; n > c.maxFrame {
		return status.Errorf(codes.ResourceExhausted, "request of %d bytes exceeds the %d-byte frame limit", n, c.maxFrame)
	}
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	deadline := time.Now().Add(c.callTimeout)
	var expired <-chan time.Time
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		deadline = d // ctx.Done() ends the call
	} else {
		if e.timer == nil {
			e.timer = time.NewTimer(c.callTimeout)
		} else {
			e.timer.Reset(c.callTimeout)
		}
		defer e.timer.Stop()
		expired = e.timer.C
	}

	for attempt := 0; ; attempt++ {
		cc, err := c.conn(ctx, expired)
		if err != nil {
			return err
		}
		timeout := time.Until(deadline) / time.Microsecond
		if timeout <= 0 {
			return ctxError(context.DeadlineExceeded)
		}
		id := c.nextID.Add(1)
		putRequestHeader(frame, method, id, uint32(min(timeout, maxTimeoutMicros)))
		pending := cc.register(id, e)
		if pending == 0 {
			// The connection broke before the request was queued:
			// sending it on a new one is safe, once.
			if attempt == 0 {
				continue
			}
			return cc.failure()
		}
		if err := cc.w.send(frame, nil, false, pending == 1); err != nil {
			if cc.unregister(id) {
				if errors.Is(err, errCongested) {
					return status.Error(codes.Unavailable, "enclave unavailable: link congested")
				}
				return unavailable()
			}
			<-e.done
			return e.err
		}
		select {
		case <-e.done:
			return e.err
		case <-ctx.Done():
			err = ctxError(ctx.Err())
		case <-expired:
			err = ctxError(context.DeadlineExceeded)
		}
		if cc.unregister(id) {
			return err
		}
		// The read loop has claimed the call and is completing it.
		<-e.done
		return e.err
	}
}

// conn returns the live connection, dialling if needed.
func (c *Client) conn(ctx context.Context, expired <-chan time.Time) (*clientConn, error) {
	if cc := c.cur.Load(); cc != nil {
		return cc, nil
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, closedError()
		}
		if cc := c.cur.Load(); cc != nil {
			c.mu.Unlock()
			return cc, nil
		}
		if c.dialing == nil {
			if time.Now().Before(c.retryAt) {
				c.mu.Unlock()
				return nil, unavailable()
			}
			c.dialing = make(chan struct{})
			c.wg.Add(1)
			go c.dialOnce(c.dialing)
		}
		dialing := c.dialing
		c.mu.Unlock()
		select {
		case <-dialing:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil, ctxError(ctx.Err())
			}
			return nil, status.Error(codes.Unavailable, "enclave unavailable: still connecting at the deadline")
		case <-expired:
			return nil, status.Error(codes.Unavailable, "enclave unavailable: still connecting at the deadline")
		}
	}
}

// dialOnce makes one connection attempt and closes done when it is over.
func (c *Client) dialOnce(done chan struct{}) {
	defer c.wg.Done()
	defer close(done)
	// The attempt is bounded by DialTimeout and aborted by Close, not by
	// the contexts of the calls waiting for it.
	ctx, cancel := context.WithTimeout(context.Background(), c.dialTimeout)
	go func() {
		select {
		case <-c.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := c.dial(ctx)
	cancel()
	if err != nil {
		err = fmt.Errorf("dial: %w", err)
		c.log.WarnContext(ctx, "link: dial failed", "error", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.dialing = nil
	if err == nil && c.closed {
		conn.Close()
		err = errClientClosed
	}
	if err != nil {
		c.setFailureLocked()
		return
	}
	cc := &clientConn{c: c, conn: conn, calls: make(map[uint64]*call)}
	cc.w = newWriter(conn, 2*c.maxFrame+64<<10, c.writeTimeout, Magic, c.goTracked, cc.fail)
	c.cur.Store(cc)
	c.goTracked(cc.readLoop)
	if c.onConnect != nil {
		c.goTracked(c.onConnect)
	}
}

// setFailureLocked records a failed dial and schedules the next attempt.
// The reason was logged where it happened; callers only see Unavailable.
func (c *Client) setFailureLocked() {
	c.backoff = min(max(2*c.backoff, minBackoff), maxBackoff)
	c.retryAt = time.Now().Add(c.backoff)
}

// goTracked runs f on a goroutine that Close waits for.
func (c *Client) goTracked(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// Received returns how many responses the client has read so far, over
// all its connections. A peer that has stalled sends none; a busy one
// keeps sending them.
func (c *Client) Received() uint64 { return c.received.Load() }

// Reset drops the live connection, if any: its calls in progress fail
// with codes.Unavailable and the next call dials again. It is for a peer
// that has stopped answering without closing the connection (a health
// ping went unanswered and [Client.Received] did not move meanwhile),
// which the connection cannot tell from a slow peer by itself.
func (c *Client) Reset(reason string) {
	if cc := c.cur.Load(); cc != nil {
		cc.fail(errors.New(reason))
	}
}

// Close fails every call in progress with codes.Canceled, closes the
// connection and waits for the client's goroutines to end. Calls made
// after Close fail with codes.Canceled. Close always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		cc := c.cur.Load()
		c.mu.Unlock()
		close(c.closing)
		if cc != nil {
			cc.fail(errClientClosed)
		}
		c.wg.Wait()
	})
	return nil
}

func closedError() error {
	return status.Error(codes.Canceled, "link: client closed")
}

// call is one call in progress. It is pooled: whoever removes it from
// clientConn.calls (the read loop, a connection failure or the caller
// giving up) owns it and, unless it is the caller, completes it by setting
// err and sending on done exactly once.
type call struct {
	done  chan struct{} // capacity 1
	msg   proto.Message // Call: decode the response into msg
	raw   func([]byte) error
	err   error
	timer *time.Timer // for calls bounded by CallTimeout rather than ctx
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func getCall() *call { return callPool.Get().(*call) }

func putCall(e *call) {
	e.msg, e.raw, e.err = nil, nil, nil
	callPool.Put(e)
}

// clientConn is one connection of a Client.
type clientConn struct {
	c    *Client
	conn net.Conn
	w    *writer

	mu    sync.Mutex
	calls map[uint64]*call
	err   error // why the connection failed; calls is nil once set
}

// register adds e under id and returns the number of calls in progress,
// or 0 if the connection has failed.
func (cc *clientConn) register(id uint64, e *call) int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.calls == nil {
		return 0
	}
	cc.calls[id] = e
	return len(cc.calls)
}

// unregister removes the call under id and reports whether it was there,
// in which case the caller owns it.
func (cc *clientConn) unregister(id uint64) bool {
	return cc.claim(id) != nil
}

// claim removes and returns the call under id, or nil.
func (cc *clientConn) claim(id uint64) *call {
	cc.mu.Lock()
	e := cc.calls[id]
	if e != nil {
		delete(cc.calls, id)
	}
	cc.mu.Unlock()
	return e
}

// failure returns the status error for calls ended by the connection's
// failure.
func (cc *clientConn) failure() error {
	cc.mu.Lock()
	err := cc.err
	cc.mu.Unlock()
	if errors.Is(err, errClientClosed) {
		return closedError()
	}
	return unavailable()
}

// fail ends the connection: it closes it, completes every pending call
// with a status error for err and makes the client dial again. Only the
// first call has an effect.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.calls == nil {
		cc.mu.Unlock()
		return
	}
	// Stop handing out this connection before a call can find it failed
	// (register sees calls == nil), so that the call gets a new one when
	// it retries. Only the fail that gets here reports the loss.
	lost := cc.c.cur.CompareAndSwap(cc, nil) && !errors.Is(err, errClientClosed)
	cc.err = err
	calls := cc.calls
	cc.calls = nil
	cc.mu.Unlock()

	if lost && cc.c.onDisconnect != nil {
		// Under c.mu, unless Close has begun: Close sets closed under
		// c.mu before it waits for the tracked goroutines, so this Add
		// never races with that Wait.
		cc.c.mu.Lock()
		if !cc.c.closed {
			cc.c.goTracked(cc.c.onDisconnect)
		}
		cc.c.mu.Unlock()
	}
	cc.conn.Close()
	cc.w.stop(err)
	if lost {
		cc.c.log.Warn("link: connection lost", "error", err, "pending", len(calls))
	}

	serr := cc.failure()
	for _, e := range calls {
		e.err = serr
		e.done <- struct{}{}
	}
}

// readLoop reads responses and completes their calls until the connection
// fails.
func (cc *clientConn) readLoop() {
	cc.fail(cc.read())
}

func (cc *clientConn) read() error {
	c := cc.c
	br := bufio.NewReaderSize(cc.conn, readBufferSize)
	// A peer that accepts but never greets (wrong port, hung enclave) must
	// not hold the connection: it gets DialTimeout to send the preamble.
	_ = cc.conn.SetReadDeadline(time.Now().Add(c.dialTimeout))
	err := readPreamble(br)
	_ = cc.conn.SetReadDeadline(time.Time{})
	if err != nil {
		c.mu.Lock()
		c.setFailureLocked()
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	c.backoff, c.retryAt = 0, time.Time{}
	c.mu.Unlock()

	for {
		h, n, err := peekHeader(br, kindResponse, respHeaderLen, c.maxFrame)
		if err != nil {
			if err == io.EOF {
				return errors.New("connection closed by peer")
			}
			return err
		}
		code := codes.Code(binary.BigEndian.Uint16(h[5:]))
		id := binary.BigEndian.Uint64(h[7:])
		br.Discard(len(h)) //nolint:errcheck // cannot fail after Peek
		c.received.Add(1)

		var payload []byte
		var big *[]byte
		if n <= br.Size() {
			payload, err = br.Peek(n)
		} else {
			big = getBuf()
			if cap(*big) < n {
				*big = make([]byte, n)
			}
			payload = (*big)[:n]
			_, err = io.ReadFull(br, payload)
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if e := cc.claim(id); e != nil {
			e.err = decode(e, code, payload)
			e.done <- struct{}{}
		}
		if big != nil {
			putBuf(big, nil)
		} else {
			br.Discard(n) //nolint:errcheck // cannot fail after Peek
		}
	}
}

// decode turns a response into the call's result.
func decode(e *call, code codes.Code, payload []byte) error {
	if code != codes.OK {
		return status.Error(code, strings.ToValidUTF8(string(payload), "\uFFFD"))
	}
	if e.raw != nil {
		return e.raw(payload)
	}
	if err := proto.Unmarshal(payload, e.msg); err != nil {
		return status.Errorf(codes.Internal, "decode response: %v", err)
	}
	return nil
}
