package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
)

// defaultUnixSocketMode is the mode given to unix socket files when
// [ListenConfig.UnixSocketMode] is zero.
const defaultUnixSocketMode fs.FileMode = 0o600

// ListenConfig holds options for [ListenConfig.Listen]. The zero value is
// ready to use and is what [Listen] uses.
type ListenConfig struct {
	// UnixSocketMode is the permission mode a unix listener's socket file is
	// given right after it is created. Zero means 0600: only the user the
	// process runs as (and root) may connect. Whoever can connect can send
	// requests, so widen this only for a trusted group. Only permission bits
	// (0777) are allowed. The file briefly has the mode the umask gives it
	// before the chmod, so keep the socket in a directory that only trusted
	// users can traverse. Ignored for vsock and tcp.
	UnixSocketMode fs.FileMode
}

// Listen listens on addr, which is parsed with [Parse], using the zero
// [ListenConfig]. See [ListenConfig.Listen].
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	return ListenConfig{}.Listen(ctx, addr)
}

// Listen listens on addr, which is parsed with [Parse]. The caller must
// Close the returned listener; for a unix address that also removes the
// socket file.
//
// ctx bounds the setup only (host name resolution, probing a leftover unix
// socket); once Listen returns, cancelling ctx does not affect the listener.
// vsock://any:PORT binds every local context ID and port 0 picks a free
// port for both vsock and tcp; read it back from the listener's Addr.
//
// Errors: a malformed address wraps [ErrInvalidAddress]; a unix path that is
// held by a live listener wraps syscall.EADDRINUSE, and one occupied by a
// file that is not a socket is left untouched and reported; vsock on a
// system other than Linux wraps [errors.ErrUnsupported]. All other errors
// start with "listen ADDR:" and wrap the underlying error (usually a
// [*net.OpError]).
func (lc ListenConfig) Listen(ctx context.Context, addr string) (net.Listener, error) {
	a, err := Parse(addr)
	if err != nil {
		return nil, err
	}
	mode := lc.UnixSocketMode
	if mode == 0 {
		mode = defaultUnixSocketMode
	}
	if mode&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("listen %s: unix socket mode %v has bits other than permissions", a, mode)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}

	var l net.Listener
	switch a.Network {
	case NetworkVsock:
		l, err = listenVsock(a.CID, a.Port)
	case NetworkUnix:
		l, err = listenUnix(ctx, a.Path, mode)
	case NetworkTCP:
		var nlc net.ListenConfig
		l, err = nlc.Listen(ctx, "tcp", a.HostPort)
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", a, err)
	}
	return l, nil
}

// Dial connects to addr, which is parsed with [Parse]. ctx bounds the whole
// connection attempt for every network, including vsock; once Dial returns,
// cancelling ctx does not affect the connection. The caller must Close the
// returned connection. Use [Dialer] instead when dialing the same address
// repeatedly.
//
// Errors: a malformed address, or a vsock address with CID "any", wraps
// [ErrInvalidAddress]; if ctx is cancelled or its deadline passes before
// the connection is made, the error wraps ctx.Err(); vsock on a system
// other than Linux wraps [errors.ErrUnsupported]. All other errors start
// with "dial ADDR:" and wrap the underlying error (usually a
// [*net.OpError]).
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	a, err := parseDial(addr)
	if err != nil {
		return nil, err
	}
	return dial(ctx, a)
}

// Dialer parses addr once and returns a function that dials it like [Dial].
// The function ignores its string argument, so it can be passed directly to
// grpc.WithContextDialer together with a "passthrough:///" target. It is
// safe for concurrent use. Dialer's own errors are those of [Parse], plus
// [ErrInvalidAddress] for a vsock address with CID "any".
func Dialer(addr string) (func(ctx context.Context, _ string) (net.Conn, error), error) {
	a, err := parseDial(addr)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, _ string) (net.Conn, error) {
		return dial(ctx, a)
	}, nil
}

// parseDial is Parse plus the checks that only apply to dialing.
func parseDial(addr string) (Addr, error) {
	a, err := Parse(addr)
	if err != nil {
		return Addr{}, err
	}
	if a.Network == NetworkVsock && a.CID == CIDAny {
		return Addr{}, invalid(addr, "CID \"any\" can only be listened on, not dialed")
	}
	return a, nil
}

func dial(ctx context.Context, a Addr) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	var (
		c   net.Conn
		err error
	)
	switch a.Network {
	case NetworkVsock:
		c, err = dialVsock(ctx, a.CID, a.Port)
	case NetworkUnix:
		var d net.Dialer
		c, err = d.DialContext(ctx, "unix", a.Path)
	case NetworkTCP:
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", a.HostPort)
	default:
		err = fmt.Errorf("%w: unknown network %q", ErrInvalidAddress, a.Network)
	}
	if err != nil {
		// Make the context error visible to errors.Is whatever form the
		// network code reported it in.
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return nil, fmt.Errorf("dial %s: %w: %w", a, cerr, err)
		}
		return nil, fmt.Errorf("dial %s: %w", a, err)
	}
	return c, nil
}
