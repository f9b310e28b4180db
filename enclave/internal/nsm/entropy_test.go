//go:build linux && !nosim

package nsm_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/nsm"
)

func TestSeedKernelEntropyErrors(t *testing.T) {
	tests := []struct {
		name    string
		r       io.Reader
		n       int
		path    func(t *testing.T) string
		wantErr error
		errText string
		written []byte // expected content of the target file, if it exists
	}{
		{
			name:    "zero size",
			r:       bytes.NewReader(make([]byte, 10)),
			n:       0,
			errText: "not in [1,",
		},
		{
			name:    "too large",
			r:       bytes.NewReader(nil),
			n:       1<<20 + 1,
			errText: "not in [1,",
		},
		{
			name:    "short reader",
			r:       bytes.NewReader(make([]byte, 10)),
			n:       11,
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name: "missing target",
			r:    bytes.NewReader(make([]byte, 16)),
			n:    16,
			path: func(t *testing.T) string {
				return filepath.Join(t.TempDir(), "missing")
			},
			wantErr: os.ErrNotExist,
		},
		{
			// A regular file takes the write but not the ioctl.
			name: "target is not a random device",
			r:    bytes.NewReader(bytes.Repeat([]byte{0x5a}, 16)),
			n:    16,
			path: func(t *testing.T) string {
				p := filepath.Join(t.TempDir(), "random")
				require.NoError(t, os.WriteFile(p, nil, 0o600))
				return p
			},
			wantErr: syscall.ENOTTY,
			written: bytes.Repeat([]byte{0x5a}, 16),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "untouched")
			if tt.path != nil {
				path = tt.path(t)
			}
			err := nsm.SeedKernelEntropyTo(tt.r, tt.n, path)
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			if tt.errText != "" {
				require.ErrorContains(t, err, tt.errText)
			}
			if tt.written != nil {
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				assert.Equal(t, tt.written, got)
			}
		})
	}
}

// TestSeedKernelEntropy exercises the real /dev/random path with simulated
// NSM randomness. Writing random bytes into the pool is harmless; crediting
// needs CAP_SYS_ADMIN, so the test skips when that is refused.
func TestSeedKernelEntropy(t *testing.T) {
	if _, err := os.Stat("/dev/random"); err != nil {
		t.Skipf("no /dev/random: %v", err)
	}
	d, _ := newDevice(t, nil)
	err := nsm.SeedKernelEntropy(d, nsm.EntropySeedSize)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("not permitted to seed the kernel pool: %v", err)
	}
	require.NoError(t, err)
}
