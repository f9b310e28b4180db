// Package link is the lean RPC link between the parent (client side) and the
// enclave (server side): length-prefixed protobuf messages multiplexed by
// call id over one long-lived stream connection (vsock in production,
// unix or TCP sockets in tests and local runs).
//
// Both ends are shared code: the enclave runs [Serve] and the parent a
// [Client]. The package imports no vsock or address code; callers supply a
// net.Listener or a dial function (see the transport package). The parent is
// untrusted, so the server treats every byte it reads as hostile: sizes are
// checked before anything is allocated and any malformed input closes the
// connection.
//
// # Wire format
//
// All integers are big-endian. A connection starts with a 4-byte preamble
// from each side, the ASCII bytes "NSL2" ([Magic]; the final byte is the
// protocol version). The client sends its preamble before its first request
// and the server as soon as it accepts the connection; each checks the
// peer's preamble before reading frames. After the preamble, each direction
// is a sequence of frames:
//
//	frame           = length:u32 | header | payload
//	request header  = kind:u8 (1) | method:u16 | id:u64 | timeout_us:u32 | rid_len:u8 | rid
//	response header = kind:u8 (2) | code:u16 | id:u64
//
// length counts the bytes after the length field (header and payload) and
// must not exceed the receiver's MaxFrame ([DefaultMaxFrame], 4 MiB + 64 KiB, unless
// configured); a receiver checks it before allocating. Clients send only
// requests and servers only responses.
//
// method selects the handler's operation (the Method enum of the enclave
// protobuf API). id, the call id (link_id in logs), is chosen by the client, unique among its calls in
// progress on the connection; the server copies it into the response.
// Responses may come in any order. timeout_us is the time the client will
// still wait, in microseconds, measured when the request was queued; 0 means
// no deadline. The server runs the request with a context that expires
// timeout_us after it read the frame.
//
// rid is the caller's request id ([WithRequestID]), rid_len bytes of
// printable ASCII (0x21–0x7e), at most [MaxRequestIDLen]; rid_len is 0 when
// the call has none. It names the call in both ends' logs and is nothing
// the server acts on; a server closes the connection on a longer or
// unprintable one. (Version 1, "NSL1", had no rid.)
//
// code is a gRPC status code (google.golang.org/grpc/codes; 0 is OK). On a
// request, and on a response with code 0, payload is the protobuf encoding
// of the message; on a response with another code it is the status message
// in UTF-8. Status details are not carried.
//
// A receiver closes the connection on a bad preamble, a length that is too
// short for the header or above its MaxFrame, an unexpected kind, or (a
// server) a rid_len over [MaxRequestIDLen] or past the frame's end, or an
// unprintable rid. There
// is no cancellation frame: a client that gives up drops the late response,
// whose id it no longer knows. Either side may close the connection at any
// time; the client then fails all calls in progress with codes.Unavailable.
//
// # Liveness
//
// There are no keepalive frames. A connection fails when a read or write
// fails, when the peer closes it, or when one write stays blocked for longer
// than WriteTimeout because the peer stopped reading. The client then fails
// all its calls in progress with codes.Unavailable and dials again on the
// next call; the server cancels the contexts of that connection's
// handlers.
//
// A peer that stops answering but keeps the connection open (hung, or
// stopped by a signal) is found by the user of the client: a server
// answers the methods in ServerConfig.Urgent (a health ping) on its reader
// at once, however busy it is, so a ping unanswered while
// [Client.Received] does not move either means a stalled peer, and
// [Client.Reset] then fails the calls waiting on it. The parent does this
// with its health pings.
//
// # Secrets in buffers
//
// A request may carry secrets (the AWS credentials the parent hands the
// enclave). The client's request buffers, the server's request buffers and
// the write queues are wiped before they are reused or dropped. The
// server's 64 KiB read buffer wipes what it has handed out before each
// read, so a consumed request leaves no copy there once the reader waits
// for the next. The client's read buffer holds only responses and is not
// wiped.
//
// # Performance
//
// Each connection has one read goroutine with a bufio.Reader and one write
// queue: a sender whose frame finds the link idle writes it itself; frames
// queued meanwhile go out together in one write by a flusher goroutine,
// which flushes whenever the queue runs dry. Under load, frames are thus
// batched without any timer. Buffers and call records are pooled, responses
// are decoded straight from the read buffer, requests run on reused worker
// goroutines (whose stacks are already grown), and a request's context
// creates its deadline timer only if the handler asks for Done. A call
// costs two allocations on the success path: the request context and
// whatever decoding the response allocates.
package link
