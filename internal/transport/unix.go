package transport

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// staleProbeTimeout bounds the connection attempt listenUnix makes to find
// out whether a leftover socket file still has a listener behind it. A live
// listener completes the handshake from its backlog and a stale file is
// refused at once, so this only matters for a wedged peer.
const staleProbeTimeout = time.Second

// listenUnix listens on the unix socket at path and chmods it to mode.
//
// If path already exists: a socket that refuses connections is a leftover
// from a process that exited without closing its listener and is removed; a
// socket that accepts connections belongs to a live listener and makes
// listenUnix fail with syscall.EADDRINUSE; anything else (a regular file, a
// directory, a socket we cannot probe) is left alone and reported. There is a
// window between the probe and the new bind in which another process could
// take the path; the bind then fails with EADDRINUSE, which is safe.
func listenUnix(ctx context.Context, path string, mode fs.FileMode) (net.Listener, error) {
	if err := removeStaleSocket(ctx, path); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	// The *net.UnixListener returned by Listen unlinks path on Close.
	if err := os.Chmod(path, mode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("set socket mode: %w", err)
	}
	return l, nil
}

// removeStaleSocket removes path if it is a unix socket nobody listens on.
// It returns nil if path does not exist or was removed.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (mode %v); refusing to remove it", path, fi.Mode())
	}

	ctx, cancel := context.WithTimeout(ctx, staleProbeTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("another process is listening on %s: %w", path, syscall.EADDRINUSE)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
