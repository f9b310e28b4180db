package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/nitrosigner/nitrosigner/internal/transport"
)

// vsockProbeTimeout bounds each dial of the loopback probe. Without vsock
// loopback a dial to CID 1 hangs until its context ends.
const vsockProbeTimeout = 2 * time.Second

// vsockLoopbackCID finds a CID through which this machine can reach its own
// vsock listeners, trying the local CID (VMADDR_CID_LOCAL, 1) and the
// machine's own CID. It runs once per test binary.
var vsockLoopbackCID = sync.OnceValues(func() (uint32, error) {
	own, err := vsock.ContextID()
	if err != nil {
		return 0, fmt.Errorf("no vsock device: %w", err)
	}
	l, err := transport.Listen(context.Background(), "vsock://any:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	port := l.Addr().(*vsock.Addr).Port

	var errs []error
	for _, cid := range []uint32{own, 1} {
		ctx, cancel := context.WithTimeout(context.Background(), vsockProbeTimeout)
		c, err := transport.Dial(ctx, fmt.Sprintf("vsock://%d:%d", cid, port))
		cancel()
		if err == nil {
			_ = c.Close()
			return cid, nil
		}
		errs = append(errs, err)
	}
	return 0, errors.Join(errs...)
})

// skipWithoutVsockLoopback skips t unless a vsock connection from this
// machine to itself works, and returns the CID to dial.
func skipWithoutVsockLoopback(t *testing.T) uint32 {
	t.Helper()
	cid, err := vsockLoopbackCID()
	if err != nil {
		t.Skipf("skipping, vsock loopback unavailable (needs a kernel with vsock_loopback): %v", err)
	}
	return cid
}

func vsockNetwork(cid uint32) network {
	return network{
		name:       "vsock",
		listenAddr: func(*testing.T) string { return "vsock://any:0" },
		dialAddr: func(_ *testing.T, l net.Listener) string {
			return fmt.Sprintf("vsock://%d:%d", cid, l.Addr().(*vsock.Addr).Port)
		},
	}
}

func TestIntegrationVsockConn(t *testing.T) {
	cid := skipWithoutVsockLoopback(t)
	nettest.TestConn(t, makePipe(t, vsockNetwork(cid)))
}

func TestIntegrationVsockListenDial(t *testing.T) {
	cid := skipWithoutVsockLoopback(t)
	nw := vsockNetwork(cid)
	l := listen(t, nw.listenAddr(t))
	assert.Equal(t, "vsock", l.Addr().Network())

	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err == nil {
			_, _ = c.Write(buf)
		}
	}()
	require.NoError(t, echo(t.Context(), nw.dialAddr(t, l), "hello"))
}

func TestIntegrationVsockDialRefused(t *testing.T) {
	cid := skipWithoutVsockLoopback(t)
	l := listen(t, "vsock://any:0")
	port := l.Addr().(*vsock.Addr).Port
	require.NoError(t, l.Close())

	ctx, cancel := context.WithTimeout(t.Context(), vsockProbeTimeout)
	defer cancel()
	addr := fmt.Sprintf("vsock://%d:%d", cid, port)
	_, err := transport.Dial(ctx, addr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dial "+addr)
}
