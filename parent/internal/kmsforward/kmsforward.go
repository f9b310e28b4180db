// Package kmsforward is the parent's KMS forwarder: it gives the enclave,
// which has no network, a TCP byte pipe to AWS KMS (DESIGN.md §2).
//
// It listens on a transport address (production: vsock://any:8000, the port
// the enclave dials as vsock 3:8000) and, for every connection, dials one
// fixed TCP target such as kms.us-east-1.amazonaws.com:443 and copies bytes
// both ways. It works at layer 4: it does not terminate TLS, look at the
// bytes or pick the destination from them. The enclave runs TLS to KMS
// itself, so the parent, which is untrusted, sees only ciphertext, and a
// compromised forwarder can drop or delay traffic but not read or forge it.
//
// The target must appear, exactly, in an allowlist of host:port entries;
// [Run] and [Serve] refuse to start otherwise. This mirrors vsock-proxy's
// allowlist and guards against a configuration that points the enclave's
// pipe somewhere else (a mis-set target would only yield TLS failures, but
// should not get that far).
//
// # vsock-proxy instead
//
// The enclave needs nothing but a stream on vsock 3:8000 that reaches KMS,
// so AWS's own forwarder works just as well: leave the parent's
// --kms-forward-listen empty and run
//
//	vsock-proxy 8000 kms.REGION.amazonaws.com 443 --config /etc/nitro_enclaves/vsock-proxy.yaml
//
// (the nitro-enclaves-vsock-proxy systemd unit does this). This package
// exists so that a parent without the Nitro CLI packages, and the local
// simulator setup, behave the same way.
//
// # Limits and logs
//
// Every dial is bounded by [Config.DialTimeout]; a connection on which no
// byte moves in either direction for [Config.IdleTimeout] is closed; at most
// [Config.MaxConns] connections are open at once, and any beyond that is
// accepted and closed at once so that the enclave fails fast instead of
// hanging. A
// half-close (EOF in one direction) is passed on with CloseWrite and the
// other direction keeps flowing. Logs record connection opens and closes
// with byte counts, durations and close reasons, never content.
package kmsforward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nitrosigner/nitrosigner/internal/transport"
)

// Defaults for zero [Config] fields.
const (
	DefaultDialTimeout = 10 * time.Second
	DefaultIdleTimeout = 5 * time.Minute
	DefaultMaxConns    = 256
)

// ErrNotAllowed is wrapped by the error [Run] and [Serve] return when the
// target is not on the allowlist.
var ErrNotAllowed = errors.New("target is not on the allowlist")

// Config configures [Run] and [Serve].
type Config struct {
	// Listen is the transport address to accept the enclave's connections
	// on, e.g. vsock://any:8000 (see package transport). Used by Run only.
	Listen string
	// Target is the host:port every connection is forwarded to, e.g.
	// kms.us-east-1.amazonaws.com:443. Required.
	Target string
	// Allow lists the host:port pairs Target may be; Target must match one
	// exactly (host names compare case-insensitively). Required: an empty
	// list allows nothing.
	Allow []string
	// DialTimeout bounds each dial of Target. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// IdleTimeout closes a connection after this long without a byte in
	// either direction (including a write the peer does not read). Default
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxConns is the most connections forwarded at once; more are closed
	// as soon as they are accepted. Default DefaultMaxConns.
	MaxConns int
	// Logger receives connection logs. Default slog.Default().
	Logger *slog.Logger
	// Dial connects to Target; network is "tcp". Default: a net.Dialer.
	// Tests use it to inject failures.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Validate applies defaults and checks c, including that Target is on the
// allowlist (the error then wraps [ErrNotAllowed]).
func (c *Config) Validate() error {
	target, err := normalize(c.Target)
	if err != nil {
		return fmt.Errorf("kmsforward: target: %w", err)
	}
	allowed := false
	for _, a := range c.Allow {
		n, err := normalize(a)
		if err != nil {
			return fmt.Errorf("kmsforward: allowlist: %w", err)
		}
		allowed = allowed || n == target
	}
	if !allowed {
		return fmt.Errorf("kmsforward: %w: %q (allowed: %s)", ErrNotAllowed, c.Target, strings.Join(c.Allow, ", "))
	}
	if c.DialTimeout < 0 || c.IdleTimeout < 0 || c.MaxConns < 0 {
		return errors.New("kmsforward: DialTimeout, IdleTimeout and MaxConns must not be negative")
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	return nil
}

// normalize checks a host:port and returns it with the host in lower case
// and the port in decimal without leading zeros.
func normalize(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("%q: %w", hostport, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if host == "" || err != nil || p == 0 {
		return "", fmt.Errorf("%q is not HOST:PORT with a port from 1 to 65535", hostport)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.FormatUint(p, 10)), nil
}

// Run validates cfg, listens on cfg.Listen and forwards connections until
// ctx is done; it then closes the listener and every connection, waits for
// them and returns nil. It returns an error if cfg is invalid (the target
// not on the allowlist wraps [ErrNotAllowed]; nothing is listened on then),
// if it cannot listen, or if accepting fails for good.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Listen == "" {
		return errors.New("kmsforward: Listen address is required")
	}
	l, err := transport.Listen(ctx, cfg.Listen)
	if err != nil {
		return fmt.Errorf("kmsforward: %w", err)
	}
	cfg.Logger.InfoContext(ctx, "kms forwarder listening", "addr", cfg.Listen, "target", cfg.Target)
	return serve(ctx, l, cfg)
}

// Serve is [Run] on a listener the caller made; cfg.Listen is ignored.
// Serve takes ownership of l and closes it before returning, also when cfg
// is invalid.
func Serve(ctx context.Context, l net.Listener, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		l.Close()
		return err
	}
	return serve(ctx, l, cfg)
}

func serve(ctx context.Context, l net.Listener, cfg Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var (
		wg    sync.WaitGroup
		slots = make(chan struct{}, cfg.MaxConns)
		id    uint64
		delay time.Duration // backoff after a failed Accept
	)
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("kmsforward: listener closed: %w", err)
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			cfg.Logger.WarnContext(ctx, "kms forwarder accept failed", "error", err, "retry_in", delay)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		id++
		select {
		case slots <- struct{}{}:
		default:
			cfg.Logger.WarnContext(ctx, "kms connection refused: limit reached", "conn", id, "max_conns", cfg.MaxConns)
			c.Close()
			continue
		}
		connID := id
		wg.Go(func() {
			defer func() { <-slots }()
			forward(ctx, cfg, connID, c)
		})
	}
}

// Close reasons in logs.
const (
	reasonEOF      = "eof"
	reasonIdle     = "idle"
	reasonShutdown = "shutdown"
	reasonError    = "error"
)

var errIdle = errors.New("idle timeout")

// forward dials the target for client and copies bytes until both
// directions end, one fails, the connection idles out or ctx is done.
func forward(ctx context.Context, cfg Config, id uint64, client net.Conn) {
	defer client.Close()
	remote := ""
	if a := client.RemoteAddr(); a != nil {
		remote = a.String()
	}
	log := cfg.Logger.With("conn", id, "remote", remote, "target", cfg.Target)
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	target, err := cfg.Dial(dctx, "tcp", cfg.Target)
	cancel()
	if err != nil {
		log.WarnContext(ctx, "kms connection dial failed", "error", err, "duration", time.Since(start))
		return
	}
	defer target.Close()
	log.InfoContext(ctx, "kms connection open")
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		target.Close()
	})
	defer stop()

	p := pipe{idle: cfg.IdleTimeout}
	p.touch()
	var up, down int64
	var upErr, downErr error
	var wg sync.WaitGroup
	wg.Go(func() { up, upErr = p.copy(target, client) })
	wg.Go(func() { down, downErr = p.copy(client, target) })
	wg.Wait()

	reason, err := reasonEOF, errors.Join(upErr, downErr)
	switch {
	case ctx.Err() != nil:
		reason, err = reasonShutdown, nil
	case errors.Is(err, errIdle):
		reason, err = reasonIdle, nil
	case err != nil:
		reason = reasonError
	}
	attrs := []any{"bytes_up", up, "bytes_down", down, "duration", time.Since(start), "reason", reason}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	log.InfoContext(ctx, "kms connection closed", attrs...)
}

// pipe holds what both copy directions of one connection share.
type pipe struct {
	idle time.Duration
	last atomic.Int64 // time of the last byte moved, UnixNano
}

func (p *pipe) touch() { p.last.Store(time.Now().UnixNano()) }

// deadline is when the connection idles out if nothing moves.
func (p *pipe) deadline() time.Time { return time.Unix(0, p.last.Load()).Add(p.idle) }

// copy copies src to dst. On EOF from src it half-closes dst and returns
// nil; on any other end (error, idle timeout) it closes both connections,
// which also stops the other direction.
func (p *pipe) copy(dst, src net.Conn) (n int64, err error) {
	buf := make([]byte, 32<<10)
	for {
		_ = src.SetReadDeadline(p.deadline())
		nr, rerr := src.Read(buf)
		if nr > 0 {
			p.touch()
			_ = dst.SetWriteDeadline(p.deadline())
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				if errors.Is(werr, net.ErrClosed) {
					return n, nil
				}
				if errors.Is(werr, os.ErrDeadlineExceeded) {
					werr = errIdle
				}
				return n, p.abort(dst, src, fmt.Errorf("write: %w", werr))
			}
			p.touch()
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, net.ErrClosed):
			return n, nil // closed by the other direction or on shutdown
		case errors.Is(rerr, io.EOF):
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err == nil {
					return n, nil
				}
			}
			// Cannot half-close: end the whole connection.
			return n, p.abort(dst, src, nil)
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			if time.Now().Before(p.deadline()) {
				continue // the other direction moved bytes meanwhile
			}
			return n, p.abort(dst, src, errIdle)
		default:
			return n, p.abort(dst, src, fmt.Errorf("read: %w", rerr))
		}
	}
}

func (p *pipe) abort(a, b net.Conn, err error) error {
	a.Close()
	b.Close()
	return err
}
