// Package transport turns address strings into listeners and dialers. It is
// the only package in nitrosigner that knows about VM sockets: the enclave,
// the parent proxy and the tests all name their endpoints with an address
// string and get back a plain [net.Listener] or [net.Conn].
//
// The package is shared by both sides of the enclave boundary and has no
// trust of its own: it moves bytes and makes no security decisions, so
// callers must authenticate what they receive.
//
// # Address forms
//
// [Parse] accepts exactly these forms:
//
//	vsock://CID:PORT    AF_VSOCK; CID and PORT are decimal uint32 values.
//	                    CID may be the word "any" (VMADDR_CID_ANY,
//	                    math.MaxUint32), which is only valid for listening.
//	                    The Nitro parent is CID 3; an enclave's CID is
//	                    assigned by nitro-cli run-enclave.
//	unix:///abs/path    A Unix domain stream socket. The path must be
//	                    absolute; everything after "unix://" is taken
//	                    literally (no percent-decoding).
//	tcp://HOST:PORT     TCP. HOST is a name, an IPv4 literal or an IPv6
//	                    literal in brackets; PORT is decimal, 0 to 65535.
//	HOST:PORT           Shorthand for tcp://HOST:PORT.
//
// Anything else is rejected with an error wrapping [ErrInvalidAddress].
//
// # Unix sockets
//
// [Listen] on a unix address replaces a stale socket file (one nobody accepts
// on), refuses to start if another process is listening on it, and never
// removes a file that is not a socket. The socket file is chmod'ed to 0600
// (see [ListenConfig] to change this) and is removed when the listener is
// closed.
//
// # Platforms
//
// VM sockets exist only on Linux. On other systems the package builds, and
// listening on or dialing a vsock address returns an error wrapping
// [errors.ErrUnsupported]; unix and tcp addresses work everywhere Go
// supports them.
package transport
