package link

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Wire constants; see the package documentation for the format.
const (
	// Magic is the connection preamble. Each side writes it once, first,
	// and checks that the peer's stream starts with it. The last byte is
	// the protocol version.
	Magic = "NSL2"

	// DefaultMaxFrame is the frame size limit used when a config leaves
	// MaxFrame zero: a 4 MiB message plus room for the wrappers and
	// headers around it. Both ends must use the same limit, since a server
	// drops a connection that sends a larger frame.
	DefaultMaxFrame = 4<<20 + 64<<10

	kindRequest  = 1
	kindResponse = 2

	lenSize       = 4
	reqHeaderLen  = 1 + 2 + 8 + 4 + 1 // kind, method, id, timeout_us, request_id length
	respHeaderLen = 1 + 2 + 8         // kind, code, id

	// minMaxFrame keeps MaxFrame large enough for any header plus a short
	// error message.
	minMaxFrame = 256

	// maxTimeoutMicros is the largest timeout_us value.
	maxTimeoutMicros = 1<<32 - 1

	// readBufferSize is the size of each connection's bufio.Reader.
	// Payloads that fit are decoded in place, without a copy.
	readBufferSize = 64 << 10

	// defaultWriteTimeout is the default for the configs' WriteTimeout.
	defaultWriteTimeout = 10 * time.Second

	// poolMaxCap caps the buffers kept in bufPool, so that one huge frame
	// does not pin its memory for the life of the process.
	poolMaxCap = 64 << 10
)

var errBadPreamble = errors.New("bad preamble: peer does not speak " + Magic)

// bufPool holds byte slices for frames and payloads. It stores *[]byte to
// avoid an allocation on Put.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, minBufCap)
	return &b
}}

// minBufCap is the smallest capacity of a pooled buffer: enough for any
// header, so that callers can slice a header out of a fresh buffer.
const minBufCap = 512

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

// putBuf returns b to the pool, keeping the larger of b and grown (a
// reallocation of b made by append), unless its capacity is outside
// [minBufCap, poolMaxCap].
func putBuf(b *[]byte, grown []byte) {
	if cap(grown) > cap(*b) {
		*b = grown
	}
	if cap(*b) > poolMaxCap || cap(*b) < minBufCap {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// appendRequestID appends the request-id length and the request id of ctx
// (none if it has none) to frame, which holds the length prefix and the
// fixed request header up to, not including, the id's length.
func appendRequestID(frame []byte, ctx context.Context) []byte {
	rid := RequestID(ctx)
	frame = append(frame, byte(len(rid)))
	return append(frame, rid...)
}

// putRequestHeader fills the first lenSize+reqHeaderLen-1 bytes of frame,
// which appendRequestID has extended with the request id and the caller
// with the payload.
func putRequestHeader(frame []byte, method uint16, id uint64, timeoutMicros uint32) {
	_ = frame[lenSize+reqHeaderLen-1]
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-lenSize))
	frame[4] = kindRequest
	binary.BigEndian.PutUint16(frame[5:], method)
	binary.BigEndian.PutUint64(frame[7:], id)
	binary.BigEndian.PutUint32(frame[15:], timeoutMicros)
}

// appendResponseHeader appends the length prefix and response header for a
// payload of payloadLen bytes.
func appendResponseHeader(b []byte, code codes.Code, id uint64, payloadLen int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(respHeaderLen+payloadLen))
	b = append(b, kindResponse)
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	return binary.BigEndian.AppendUint64(b, id)
}

// newWipingReader returns a bufio.Reader of size bytes over r whose buffer
// does not keep what it has handed out, and the wipingReader under it, whose
// wipe the caller defers: see [wipingReader]. The first read from the
// bufio.Reader must be shorter than size (the server's first is the
// preamble). The server reads with it, since requests may carry secrets (AWS
// credentials).
func newWipingReader(r io.Reader, size int) (*bufio.Reader, *wipingReader) {
	w := &wipingReader{r: r, size: size}
	return bufio.NewReaderSize(w, size), w
}

// wipingReader sits under a bufio.Reader of size bytes and, before each
// read into the buffer, clears what earlier reads left in the part about to
// be filled. A bufio.Reader fills the free tail of its buffer, after moving
// any unread bytes to the front, so everything it has handed out is wiped
// the next time it reads; a reader loop that has consumed every frame reads
// again at once, so consumed frames are wiped before it waits for the next.
// Only bytes that reads wrote are cleared: the cost follows the traffic,
// not the buffer's size. [wipingReader.wipe] clears the rest when the
// reader is dropped.
type wipingReader struct {
	r       io.Reader
	size    int    // the bufio.Reader's buffer size
	buf     []byte // that buffer, learnt from the first read
	dirty   int    // end, as an offset in buf, of the bytes reads left
	started bool   // a read has been made
}

func (w *wipingReader) Read(p []byte) (int, error) {
	// A bufio.Reader reads into its own buffer's tail, or, for a read at
	// least as large as its buffer, straight into the caller's slice. Its
	// first read for a short read is into its whole, empty buffer. Reads
	// ending elsewhere than that buffer's end are into the caller's slice,
	// which is about to be overwritten anyway.
	if !w.started {
		w.started = true
		if len(p) == w.size && cap(p) == w.size {
			w.buf = p
		}
	}
	if w.buf == nil || cap(p) == 0 || &p[:cap(p)][cap(p)-1] != &w.buf[len(w.buf)-1] {
		return w.r.Read(p)
	}
	off := w.size - len(p)
	if w.dirty > off {
		clear(p[:w.dirty-off])
	}
	n, err := w.r.Read(p)
	w.dirty = off + n
	return n, err
}

// wipe clears everything reads left in the buffer, read or not; the
// bufio.Reader must not be used afterwards.
func (w *wipingReader) wipe() {
	if w.buf != nil {
		clear(w.buf[:w.dirty])
		w.dirty = 0
	}
}

// readPreamble reads the peer's preamble from r.
func readPreamble(r io.Reader) error {
	var m [len(Magic)]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return fmt.Errorf("read preamble: %w", err)
	}
	if string(m[:]) != Magic {
		// Name another version of this protocol (a parent and an enclave
		// from different releases); show nothing else of a stranger's
		// bytes.
		if string(m[:3]) == Magic[:3] && m[3] >= '0' && m[3] <= '9' {
			return fmt.Errorf("%w (it speaks %s): the parent and the enclave image are from different releases", errBadPreamble, m[:])
		}
		return errBadPreamble
	}
	return nil
}

// errProtocol marks a malformed stream.
var errProtocol = errors.New("protocol error")

// peekHeader returns the next frame's length prefix and header, of kind and
// hdrLen bytes, and the length of the payload that follows. It checks the
// length as soon as the prefix has arrived. The caller must Discard
// lenSize+hdrLen bytes after parsing the header. At a clean end of stream
// it returns io.EOF.
func peekHeader(br *bufio.Reader, kind byte, hdrLen, maxFrame int) (h []byte, payloadLen int, err error) {
	h, err = br.Peek(lenSize)
	if err != nil {
		if errors.Is(err, io.EOF) && len(h) == 0 {
			return nil, 0, io.EOF
		}
		return nil, 0, fmt.Errorf("read frame header: %w", unexpectedEOF(err))
	}
	n := int(binary.BigEndian.Uint32(h))
	switch {
	case n < hdrLen:
		return nil, 0, fmt.Errorf("%w: frame length %d is shorter than the %d-byte header", errProtocol, n, hdrLen)
	case n > maxFrame:
		return nil, 0, fmt.Errorf("%w: frame length %d exceeds the limit %d", errProtocol, n, maxFrame)
	}
	h, err = br.Peek(lenSize + hdrLen)
	if err != nil {
		return nil, 0, fmt.Errorf("read frame header: %w", unexpectedEOF(err))
	}
	if h[lenSize] != kind {
		return nil, 0, fmt.Errorf("%w: frame kind %d, want %d", errProtocol, h[lenSize], kind)
	}
	return h, n - hdrLen, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// errorStatus turns a handler error into the code and message sent on the
// wire. Status errors keep their code and message (for a wrapped status,
// the status's own message, not the wrapping text); context errors map to
// DeadlineExceeded and Canceled; anything else becomes Internal with a
// generic message, so that internal detail never reaches the peer.
// unexpected reports the last case, which deserves a log line.
func errorStatus(err error) (code codes.Code, msg string, unexpected bool) {
	type grpcStatus interface{ GRPCStatus() *status.Status }
	var gs grpcStatus
	if errors.As(err, &gs) {
		if s := gs.GRPCStatus(); s != nil && s.Code() != codes.OK {
			return s.Code(), s.Message(), false
		}
		return codes.Internal, "internal error", true
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, "deadline exceeded", false
	case errors.Is(err, context.Canceled):
		return codes.Canceled, "canceled", false
	}
	return codes.Internal, "internal error", true
}

// ctxError converts a context error into a status error.
func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.DeadlineExceeded, "enclave call: deadline exceeded")
	}
	return status.Error(codes.Canceled, "enclave call: canceled")
}

// unavailable returns the Unavailable status error for a transport failure.
// unavailable is what callers see when the connection cannot be made or
// breaks. The reason (socket paths, OS errors) stays in the link's own log
// lines and never reaches clients.
func unavailable() error {
	return status.Error(codes.Unavailable, "enclave unavailable")
}
