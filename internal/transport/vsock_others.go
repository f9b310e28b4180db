//go:build !linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
)

var errVsockUnsupported = fmt.Errorf("vsock is not available on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func listenVsock(_, _ uint32) (net.Listener, error) { return nil, errVsockUnsupported }

func dialVsock(_ context.Context, _, _ uint32) (net.Conn, error) { return nil, errVsockUnsupported }
