//go:build linux

package transport

import (
	"context"
	"net"

	"github.com/mdlayher/vsock"
)

// listenVsock and dialVsock return untyped nils on error so that callers
// never see a non-nil interface holding a nil pointer.

func listenVsock(cid, port uint32) (net.Listener, error) {
	l, err := vsock.ListenContextID(cid, port, nil)
	if err != nil {
		return nil, err
	}
	return l, nil
}

func dialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	c, err := vsock.DialContext(ctx, cid, port, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}
