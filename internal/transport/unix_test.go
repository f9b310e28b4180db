package transport_test

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/transport"
)

// staleSocket leaves a socket file at path with nothing listening on it, as
// a crashed process would.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	requireSocket(t, path)
}

func requireSocket(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSocket, fi.Mode().Type(), "%s is not a socket", path)
}

// requireServes checks that a connection to path is accepted by l.
func requireServes(t *testing.T, l net.Listener, path string) {
	t.Helper()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.Close()
		}
		accepted <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, "unix://"+path)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, <-accepted)
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	path := sockPath(t)
	staleSocket(t, path)

	_, err := transport.Dial(t.Context(), "unix://"+path)
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "precondition: socket must be stale")

	l := listen(t, "unix://"+path)
	requireServes(t, l, path)
}

func TestListenUnixRefusesLiveSocket(t *testing.T) {
	path := sockPath(t)
	first := listen(t, "unix://"+path)

	second, err := transport.Listen(t.Context(), "unix://"+path)
	if second != nil {
		_ = second.Close()
	}
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	assert.Contains(t, err.Error(), "another process is listening on "+path)
	assert.Contains(t, err.Error(), "listen unix://"+path)

	// The live listener's socket is untouched and still serves.
	requireSocket(t, path)
	requireServes(t, first, path)
}

func TestListenUnixNeverRemovesOtherFiles(t *testing.T) {
	tests := []struct {
		name   string
		create func(t *testing.T, path string)
		// check verifies that what create made is still there.
		check func(t *testing.T, path string)
	}{
		{
			name: "regular file",
			create: func(t *testing.T, path string) {
				require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o600))
			},
			check: func(t *testing.T, path string) {
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, "keep me", string(got))
			},
		},
		{
			name: "empty regular file",
			create: func(t *testing.T, path string) {
				require.NoError(t, os.WriteFile(path, nil, 0o600))
			},
			check: func(t *testing.T, path string) {
				fi, err := os.Lstat(path)
				require.NoError(t, err)
				assert.True(t, fi.Mode().IsRegular())
			},
		},
		{
			name: "directory",
			create: func(t *testing.T, path string) {
				require.NoError(t, os.Mkdir(path, 0o700))
			},
			check: func(t *testing.T, path string) {
				fi, err := os.Lstat(path)
				require.NoError(t, err)
				assert.True(t, fi.IsDir())
			},
		},
		{
			name: "symlink to stale socket",
			create: func(t *testing.T, path string) {
				staleSocket(t, path+".target")
				require.NoError(t, os.Symlink(path+".target", path))
			},
			check: func(t *testing.T, path string) {
				fi, err := os.Lstat(path)
				require.NoError(t, err)
				assert.Equal(t, fs.ModeSymlink, fi.Mode().Type())
				requireSocket(t, path+".target")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortDir(t), "x.sock")
			tt.create(t, path)

			l, err := transport.Listen(t.Context(), "unix://"+path)
			if l != nil {
				_ = l.Close()
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), path+" exists and is not a socket")
			tt.check(t, path)
		})
	}
}

func TestListenUnixSocketMode(t *testing.T) {
	tests := []struct {
		name string
		cfg  transport.ListenConfig
		want fs.FileMode
	}{
		{name: "default", want: 0o600},
		{name: "group", cfg: transport.ListenConfig{UnixSocketMode: 0o660}, want: 0o660},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			l, err := tt.cfg.Listen(t.Context(), "unix://"+path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = l.Close() })

			fi, err := os.Stat(path)
			require.NoError(t, err)
			assert.Equal(t, fs.ModeSocket, fi.Mode().Type())
			assert.Equal(t, tt.want, fi.Mode().Perm())
		})
	}
}

func TestListenUnixCloseRemovesSocket(t *testing.T) {
	path := sockPath(t)
	l, err := transport.Listen(t.Context(), "unix://"+path)
	require.NoError(t, err)
	requireSocket(t, path)

	require.NoError(t, l.Close())
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}
