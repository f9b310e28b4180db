package link

import (
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
	"unicode/utf8"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc/codes"
)

// Handler serves one request. It runs on a goroutine of its own for the
// duration of the call (from a pool of workers), concurrently with other
// requests of the same and other connections.
//
// ctx is cancelled when the request's deadline (timeout_us) passes, when the
// connection ends or when [Serve] stops. method is the request's method
// number; unknown methods should return a codes.Unimplemented status. req is
// the encoded request and is valid only until Handler returns. resp is an
// empty pooled buffer that the handler may append the encoded response to
// (for example with proto.MarshalOptions{}.MarshalAppend(resp, msg)),
// avoiding an allocation; resp must not be used after Handler returns. The
// returned slice, resp's or any other, is copied before it is written and
// is not retained.
//
// A returned error is sent instead of the response: a status error
// (google.golang.org/grpc/status) keeps its code and message (if it is
// wrapped, the status's own message is sent, not the wrapping text);
// context.DeadlineExceeded and context.Canceled map to those
// codes; any other error becomes codes.Internal with the message "internal
// error" and is logged, never sent. A panic is not recovered.
type Handler func(ctx context.Context, method uint16, req []byte, resp []byte) ([]byte, error)

// ServerConfig configures [Serve].
type ServerConfig struct {
	// Handler serves requests. Required.
	Handler Handler

	// Inline, if set, picks requests (by method and payload size) that are
	// always quick: no I/O, no waiting, a bounded amount of work (e.g. a
	// raw signature with a cached key). Such a request that is alone on its
	// connection is handled on the connection's reader instead of being
	// handed to a worker, which saves a goroutine wake-up on the latency
	// path; while it runs, the connection reads nothing else. Never pick a
	// request that can block or run long.
	Inline func(method uint16, size int) bool

	// Urgent, if set, picks methods handled on the connection's reader as
	// soon as they are read, even while other requests are in flight: a
	// health ping, so that a busy server still answers it at once and a
	// client can tell a busy server from a stalled one. Never pick a method
	// whose handler does more than answer.
	Urgent func(method uint16) bool

	// MaxFrame is the largest frame (header and payload, without the
	// length prefix) accepted from or sent to a client. A client that
	// announces a larger frame is disconnected before anything is
	// allocated for it; a larger response is replaced by a
	// codes.ResourceExhausted error. Zero means [DefaultMaxFrame].
	MaxFrame int

	// MaxConcurrent is the number of requests one connection may have in
	// progress; excess requests are answered with
	// codes.ResourceExhausted without running Handler. Zero means 1024.
	// Requests are also refused that way while the payloads in progress,
	// over all connections, exceed 64 MiB (or MaxFrame, if larger): the
	// reader never waits, so that it always reads the next frame.
	MaxConcurrent int

	// WriteTimeout is how long one write may stay blocked (the client
	// has stopped reading) before the connection is closed. Zero means
	// 10 seconds.
	WriteTimeout time.Duration

	// Logger receives connection events and handler errors that are not
	// sent to the client. Nil discards them.
	Logger *slog.Logger

	// YieldCPU, if set, makes a worker give its thread's CPU to other
	// runnable threads (sched_yield on Linux; nothing elsewhere) after each
	// request it served. Set it when the server shares its CPUs with the
	// processes that send it requests. Left to the OS, a busy server's
	// threads run out their time slice while the process relaying its
	// answers and requests waits for a CPU; the requests then travel as a
	// convoy, and the CPUs idle while it passes through the relay.
	// Requests handled on the reader (Inline) do not yield.
	YieldCPU bool
}

// Serve accepts link connections on l and serves each on its own
// goroutines until ctx is cancelled or l fails.
//
// When ctx is cancelled, Serve closes l and every connection, cancels the
// handlers' contexts, waits for all handlers to return and returns nil.
// Responses that were not yet written are dropped. If l.Accept fails with a
// non-temporary error, Serve shuts down the same way and returns that error.
// Serve returns an error at once if cfg is invalid. Serve always closes l.
//
// Request payloads held at once, across all connections, are limited to 64
// MiB (or MaxFrame, if larger); beyond that, Serve reads no further request
// until handlers return.
//
// A connection is closed, with a log line, when its preamble is not
// [Magic], when it sends a frame that is malformed, of an unknown kind or
// larger than MaxFrame, or when a read or write fails.
func Serve(ctx context.Context, l net.Listener, cfg ServerConfig) error {
	s, err := newServer(cfg)
	if err != nil {
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var retry time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
			} else if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				retry = min(max(2*retry, 5*time.Millisecond), time.Second)
				s.log.WarnContext(ctx, "link: accept failed, retrying", "error", err, "duration", retry)
				select {
				case <-time.After(retry):
					continue
				case <-ctx.Done():
					err = nil
				}
			} else {
				err = fmt.Errorf("link: accept: %w", err)
			}
			l.Close()
			cancel()
			s.conns.Wait()
			close(s.work) // no reader is left to send on it
			s.workers.Wait()
			return err
		}
		retry = 0
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.serveConn(ctx, conn)
		}()
	}
}

// server holds what the connections of one Serve call share.
type server struct {
	handler       Handler
	maxFrame      int
	maxConcurrent int
	inline        func(method uint16, size int) bool
	urgent        func(method uint16) bool
	yield         func() // after each request a worker served; nil: none
	writeTimeout  time.Duration
	log           *slog.Logger
	conns         sync.WaitGroup // connection goroutines (reader, flusher, watchdog)
	workers       sync.WaitGroup

	// mem bounds the request payloads held at once, across connections,
	// so that a hostile client cannot exhaust the enclave's memory by
	// announcing many large frames. A request over it is refused with
	// codes.ResourceExhausted.
	mem *semaphore.Weighted

	// Requests go to idle workers through work; when none is idle, a
	// new worker starts. Reusing goroutines keeps their grown stacks,
	// which saves a stack copy per request (handlers such as signing use
	// more than a new goroutine's stack). Serve closes work once all
	// connections are gone, which ends the idle workers.
	work chan request
	idle atomic.Int32 // workers waiting on work
}

// requestMemory is the budget for request payloads held at once (or
// MaxFrame, if larger). A variable for tests.
var requestMemory = 64 << 20

// maxIdleWorkers bounds the workers kept waiting for requests.
const maxIdleWorkers = 128

// request is one request on its way to a worker.
type request struct {
	ctx      context.Context // the connection's
	sc       *serverConn
	method   uint16
	id       uint64
	rid      requestID // the request id, if any
	deadline time.Time // zero if none
	req      *[]byte
}

// dispatch hands r to an idle worker or starts a new one.
func (s *server) dispatch(r request) {
	select {
	case s.work <- r:
	default:
		s.workers.Add(1)
		go s.worker(r)
	}
}

// worker serves r, then further requests until maxIdleWorkers others are
// idle when it becomes idle, or Serve stops.
func (s *server) worker(r request) {
	defer s.workers.Done()
	for {
		r.sc.handle(r)
		if s.yield != nil {
			s.yield()
		}
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		var ok bool
		r, ok = <-s.work
		s.idle.Add(-1)
		if !ok {
			return
		}
	}
}

func newServer(cfg ServerConfig) (*server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("link: ServerConfig.Handler is required")
	}
	s := &server{
		handler:       cfg.Handler,
		inline:        cfg.Inline,
		urgent:        cfg.Urgent,
		maxFrame:      cfg.MaxFrame,
		maxConcurrent: cfg.MaxConcurrent,
		writeTimeout:  cfg.WriteTimeout,
		log:           cfg.Logger,
		work:          make(chan request),
	}
	if cfg.YieldCPU {
		s.yield = yieldCPU
	}
	if s.maxFrame == 0 {
		s.maxFrame = DefaultMaxFrame
	}
	if s.maxFrame < minMaxFrame {
		return nil, fmt.Errorf("link: ServerConfig.MaxFrame %d is below the minimum %d", s.maxFrame, minMaxFrame)
	}
	if s.maxConcurrent == 0 {
		s.maxConcurrent = 1024
	}
	if s.maxConcurrent < 0 {
		return nil, fmt.Errorf("link: ServerConfig.MaxConcurrent %d is negative", s.maxConcurrent)
	}
	s.mem = semaphore.NewWeighted(int64(max(s.maxFrame, requestMemory)))
	if s.writeTimeout <= 0 {
		s.writeTimeout = defaultWriteTimeout
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// serverConn is one accepted connection.
type serverConn struct {
	s        *server
	conn     net.Conn
	w        *writer
	inflight atomic.Int64
}

// serveConn reads requests from conn until it fails or ctx is cancelled,
// then closes conn and cancels the handlers' context.
func (s *server) serveConn(serveCtx context.Context, conn net.Conn) {
	// The handlers' context is cancelled only after the connection and its
	// writer are closed, so that no response races the shutdown: the
	// client sees the connection fail, not a Canceled reply.
	ctx, cancel := context.WithCancel(context.WithoutCancel(serveCtx))
	sc := &serverConn{s: s, conn: conn}
	shutdown := sync.OnceFunc(func() {
		conn.Close()
		sc.w.stop(net.ErrClosed)
		cancel()
	})
	sc.w = newWriter(conn, 2*s.maxFrame+64<<10, s.writeTimeout, Magic, func(f func()) {
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			f()
		}()
	}, func(error) { shutdown() })
	stop := context.AfterFunc(serveCtx, shutdown)
	// Send the preamble at once, so that the client learns early that it
	// reached a link server.
	_ = sc.w.send(nil, nil, true, true)
	err := sc.readLoop(ctx)
	stop()
	shutdown()
	// When the writer failed first (the peer stopped reading), it closed
	// the connection, and the read loop then failed with net.ErrClosed, or
	// with the cancelled context if it was waiting for memory held by the
	// blocked responses: report the writer's reason. A read loop that
	// failed on its own (a protocol error) keeps its reason.
	closedUnderIt := errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled)
	if werr := sc.w.failure(); closedUnderIt && werr != nil && !errors.Is(werr, net.ErrClosed) {
		err = werr
	}

	remote := addrString(conn.RemoteAddr())
	switch {
	case err == nil || serveCtx.Err() != nil:
		s.log.DebugContext(serveCtx, "link: connection closed", "remote", remote, "error", err)
	case errors.Is(err, errProtocol) || errors.Is(err, errBadPreamble):
		s.log.WarnContext(serveCtx, "link: closing connection", "remote", remote, "error", err)
	default:
		s.log.InfoContext(serveCtx, "link: connection failed", "remote", remote, "error", err)
	}
}

// readLoop reads frames and dispatches each request to a worker.
// It returns nil at a clean end of stream.
func (sc *serverConn) readLoop(ctx context.Context) error {
	s := sc.s
	br, wr := newWipingReader(sc.conn, readBufferSize)
	// However the loop ends (a protocol error, say), requests read with
	// the last read must not stay in the dropped buffer.
	defer wr.wipe()
	if err := readPreamble(br); err != nil {
		return err
	}
	for {
		h, n, err := peekHeader(br, kindRequest, reqHeaderLen, s.maxFrame)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		method := binary.BigEndian.Uint16(h[5:])
		id := binary.BigEndian.Uint64(h[7:])
		timeout := binary.BigEndian.Uint32(h[15:])
		ridLen := int(h[19])
		br.Discard(len(h)) //nolint:errcheck // cannot fail after Peek
		if ridLen > MaxRequestIDLen || ridLen > n {
			return fmt.Errorf("%w: request id of %d bytes (at most %d, within the frame)", errProtocol, ridLen, MaxRequestIDLen)
		}
		var rid requestID
		if ridLen > 0 {
			b, err := br.Peek(ridLen)
			if err != nil {
				return fmt.Errorf("read request id: %w", unexpectedEOF(err))
			}
			if !ValidRequestID(b) {
				return fmt.Errorf("%w: request id is not printable ASCII", errProtocol)
			}
			rid.n = uint8(copy(rid.b[:], b))
			br.Discard(ridLen) //nolint:errcheck // cannot fail after Peek
			n -= ridLen
		}

		// Hold the payload's size against the server's budget before
		// allocating it. Over budget, the request is refused rather than
		// waited for: a reader that waits reads nothing else, not even a
		// health ping, and a busy server would look stalled.
		if !s.mem.TryAcquire(int64(n)) {
			if _, err := br.Discard(n); err != nil {
				return fmt.Errorf("read frame payload: %w", err)
			}
			sc.reply(id, nil, codes.ResourceExhausted, "server busy: too much request data in progress, retry later")
			continue
		}
		req := getBuf()
		if cap(*req) < n {
			*req = make([]byte, n)
		}
		*req = (*req)[:n]
		if _, err := io.ReadFull(br, *req); err != nil {
			s.releaseReq(req)
			return fmt.Errorf("read frame payload: %w", err)
		}

		if sc.inflight.Add(1) > int64(s.maxConcurrent) {
			s.releaseReq(req)
			sc.reply(id, nil, codes.ResourceExhausted, "too many concurrent requests")
			sc.inflight.Add(-1)
			continue
		}
		var deadline time.Time
		if timeout != 0 {
			deadline = time.Now().Add(time.Duration(timeout) * time.Microsecond)
		}
		r := request{ctx: ctx, sc: sc, method: method, id: id, rid: rid, deadline: deadline, req: req}
		if s.urgent != nil && s.urgent(method) {
			sc.handle(r)
			continue
		}
		if s.inline != nil && s.inline(method, n) && sc.inflight.Load() == 1 && br.Buffered() == 0 {
			// Alone on the connection with nothing else read: handle it
			// here. Handing it to a worker costs a goroutine wake-up on
			// the latency path of every lone request; a request that
			// arrives meanwhile waits for this one (handlers are short)
			// and, finding company, goes to a worker.
			sc.handle(r)
			continue
		}
		s.dispatch(r)
	}
}

// handle runs the handler for r and queues its response.
func (sc *serverConn) handle(r request) {
	s := sc.s
	defer sc.inflight.Add(-1)
	ctx, method, id := r.ctx, r.method, r.id
	if !r.deadline.IsZero() {
		rc := newReqCtx(ctx, r.deadline, r.rid)
		defer rc.release()
		ctx = rc
	} else if r.rid.n > 0 {
		ctx = WithRequestID(ctx, r.rid.String())
	}
	resp := getBuf()
	out, err := s.handler(ctx, method, *r.req, (*resp)[:0])
	s.releaseReq(r.req)
	switch {
	case err != nil:
		code, msg, unexpected := errorStatus(err)
		if unexpected {
			s.log.ErrorContext(ctx, "link: handler failed", "method", method, "link_id", id, "code", code, "error", err)
		}
		sc.reply(id, nil, code, msg)
	case respHeaderLen+len(out) > s.maxFrame:
		s.log.ErrorContext(ctx, "link: response too large", "method", method, "link_id", id, "size", len(out))
		sc.reply(id, nil, codes.ResourceExhausted, "response exceeds the frame limit")
	default:
		sc.reply(id, out, codes.OK, "")
	}
	// out is not adopted into the pool: the handler may have returned a
	// slice it keeps.
	putBuf(resp, nil)
}

// releaseReq returns a request payload's buffer, wiped (a request may hold
// secrets, such as AWS credentials), and its budget.
func (s *server) releaseReq(req *[]byte) {
	clear(*req)
	s.mem.Release(int64(len(*req)))
	putBuf(req, nil)
}

// reply queues a response frame: payload when code is OK, msg otherwise.
func (sc *serverConn) reply(id uint64, payload []byte, code codes.Code, msg string) {
	if code != codes.OK {
		payload = errorPayload(msg, sc.s.maxFrame-respHeaderLen)
	}
	var hdr [lenSize + respHeaderLen]byte
	// Write inline only if no other response is being prepared. A failed
	// send means the connection is gone; the read loop ends it.
	idle := sc.inflight.Load() <= 1
	_ = sc.w.send(appendResponseHeader(hdr[:0], code, id, len(payload)), payload, true, idle)
}

// errorPayload returns msg as valid UTF-8 of at most limit bytes.
func errorPayload(msg string, limit int) []byte {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > limit {
		n := limit
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n]
	}
	return []byte(msg)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// YieldCPU gives the calling thread's CPU to another runnable thread, if
// its CPU has one waiting (sched_yield on Linux; nothing elsewhere), as
// [ServerConfig].YieldCPU does after each request. For handlers that run
// long steps and share their CPUs with the processes that send requests.
func YieldCPU() { yieldCPU() }
