package link

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// errCongested is returned by writer.send when the queue is full and the
// caller asked not to wait.
var errCongested = errors.New("send queue full")

// writer is the write half of one connection. Many goroutines queue frames
// with send; the frames are copied into one buffer and written with as few
// conn.Write calls as possible:
//
//   - On an idle link (the sender's call or request is the only one in
//     flight, and nobody is writing), the sender writes its frame itself:
//     no goroutine hand-off, lowest latency.
//   - Otherwise the sender appends to the queue and, if nobody is writing,
//     wakes the flusher goroutine. The flusher first yields the processor
//     (runtime.Gosched), so that the goroutines already runnable, typically
//     other callers or handlers about to send, queue their frames too; it
//     then writes the whole queue in one Write, and repeats until the queue
//     is empty. Under load, frames thus go out in batches, without timers,
//     and the link is flushed exactly when the queue runs dry. Measured on
//     2 cores with 32 callers, this writes about three frames per syscall
//     and halves the CPU per call compared with writing each frame.
//
// A watchdog goroutine fails the writer when one Write has been blocked for
// longer than the write timeout (the peer stopped reading), so that a
// sender writing inline is not stuck for good.
//
// The first error (from Write, the watchdog or stop) is sticky: later sends
// return it. onError is called once, outside the lock, when the writer
// fails before the owner called stop; the owner must then close the
// connection.
type writer struct {
	conn    net.Conn
	maxBuf  int // queue length beyond which send waits or fails
	onError func(error)

	started  atomic.Uint64 // Write calls started
	finished atomic.Uint64 // Write calls returned

	mu      sync.Mutex
	space   sync.Cond // signalled when the queue shrinks
	waiters int       // goroutines waiting on space
	buf     []byte    // queued frames, not yet handed to Write
	spare   []byte    // the other half of the double buffer
	busy    bool      // a goroutine owns conn.Write
	err     error
	stopped bool
	kick    chan struct{} // wakes the flusher; capacity 1
	done    chan struct{} // closed by stop
}

// maxSpare bounds the buffer kept between writes.
const maxSpare = 1 << 20

// newWriter returns a writer for conn whose queue starts with preamble, and
// starts its flusher and watchdog goroutines. run must start a goroutine
// (so that its owner can track it); onError is called once with the first
// error.
func newWriter(conn net.Conn, maxBuf int, timeout time.Duration, preamble string, run func(func()), onError func(error)) *writer {
	w := &writer{
		conn:    conn,
		maxBuf:  maxBuf,
		onError: onError,
		buf:     append(make([]byte, 0, 4<<10), preamble...),
		spare:   make([]byte, 0, 4<<10),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	w.space.L = &w.mu
	run(w.flusher)
	run(func() { w.watchdog(timeout) })
	return w
}

// send queues hdr followed by payload. If the queue holds more than maxBuf
// bytes, send waits for it to drain when wait is true and returns
// errCongested otherwise. When idle is true and nobody is writing, send
// writes the queue itself; pass idle only when no other frame is expected
// soon. It returns an error only when the frame was not queued (or its
// inline write failed); a nil error does not mean the peer received it.
func (w *writer) send(hdr, payload []byte, wait, idle bool) error {
	w.mu.Lock()
	for w.err == nil && len(w.buf) > w.maxBuf {
		if !wait {
			w.mu.Unlock()
			return errCongested
		}
		w.waiters++
		w.space.Wait()
		w.waiters--
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.buf = append(w.buf, hdr...)
	w.buf = append(w.buf, payload...)
	if w.busy {
		w.mu.Unlock()
		return nil
	}
	w.busy = true
	if !idle {
		w.mu.Unlock()
		w.kick <- struct{}{} // never blocks: only the busy owner kicks
		return nil
	}
	err := w.writeOnceLocked()
	if err == nil && len(w.buf) > 0 {
		// More frames arrived during the write: hand over to the
		// flusher, which keeps busy set.
		w.mu.Unlock()
		select {
		case w.kick <- struct{}{}:
		default:
		}
		return nil
	}
	w.busy = false
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
	}
	return err
}

// writeOnceLocked writes the queue with one Write call, releasing the lock
// during the call. It must be called with busy set and w.mu held.
func (w *writer) writeOnceLocked() error {
	b := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	w.started.Add(1)
	_, err := w.conn.Write(b)
	w.finished.Add(1)
	// What was written may hold secrets (the AWS credentials the parent
	// hands the enclave); the buffer is reused, so it is wiped first.
	clear(b)
	w.mu.Lock()
	if cap(b) <= maxSpare {
		w.spare = b[:0]
	}
	if w.waiters > 0 {
		w.space.Broadcast()
	}
	if err != nil && w.err == nil {
		w.err = err
		return err
	}
	return w.err
}

// flusher writes the queue whenever a sender hands over to it.
func (w *writer) flusher() {
	for {
		select {
		case <-w.kick:
		case <-w.done:
			return
		}
		// Let the goroutines that are about to send queue their frames.
		runtime.Gosched()
		w.mu.Lock()
		var err error
		for err == nil && len(w.buf) > 0 {
			err = w.writeOnceLocked()
		}
		w.busy = false
		w.mu.Unlock()
		if err != nil {
			w.fail(err)
			return
		}
	}
}

// watchdog fails the writer if the same Write is seen in progress at five
// consecutive ticks, a quarter of timeout apart (at least a millisecond:
// a timeout of a few nanoseconds must not make a zero tick).
func (w *writer) watchdog(timeout time.Duration) {
	t := time.NewTicker(max(timeout/4, time.Millisecond))
	defer t.Stop()
	var last uint64
	n := 0
	for {
		select {
		case <-t.C:
		case <-w.done:
			return
		}
		// Load finished first: a write counted in started but not in
		// finished is then certainly in progress.
		f := w.finished.Load()
		s := w.started.Load()
		if s != f && s == last {
			n++
		} else {
			n = 0
		}
		last = s
		if n >= 4 {
			w.fail(fmt.Errorf("write blocked for more than %v", timeout))
			return
		}
	}
}

// failure returns the error that stopped the writer, or nil.
func (w *writer) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// fail stops the writer with err and calls onError if this was the first
// stop.
func (w *writer) fail(err error) {
	if w.stop(err) && w.onError != nil {
		w.onError(err)
	}
}

// stop makes every later send fail with err (or the earlier error), wakes
// waiting senders and ends the flusher. It does not close the connection.
// It reports whether this call stopped the writer.
func (w *writer) stop(err error) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	// Frames still queued are never sent; wipe them, as every written one is.
	clear(w.buf)
	w.buf = w.buf[:0]
	w.space.Broadcast()
	if w.stopped {
		return false
	}
	w.stopped = true
	close(w.done)
	return true
}
