//go:build !nosim

package nsmsim_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

func TestStateDirSharesRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s1 := newSim(t, nsmsim.Config{StateDir: dir})

	key, err := os.Stat(filepath.Join(dir, nsmsim.RootKeyFile))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), key.Mode().Perm())
	cert, err := os.Stat(filepath.Join(dir, nsmsim.RootCertFile))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o644), cert.Mode().Perm())

	loaded, err := nsmsim.LoadRoot(dir)
	require.NoError(t, err)
	assert.Equal(t, s1.Root().Raw, loaded.Raw)

	// A restarted simulator (different instance, different image) keeps
	// the root, so documents verify against the root saved before.
	require.NoError(t, s1.Close())
	s2 := newSim(t, nsmsim.Config{StateDir: dir, Image: []byte("other image")})
	assert.Equal(t, loaded.Raw, s2.Root().Raw)
	assert.NotEqual(t, s1.ModuleID(), s2.ModuleID())
	doc, err := s2.Attest(t.Context(), nil, nil, nil)
	require.NoError(t, err)
	_, err = verify(t, doc, loaded, time.Now())
	require.NoError(t, err)

	// An in-memory simulator has its own root.
	s3 := newSim(t, nsmsim.Config{})
	assert.NotEqual(t, loaded.Raw, s3.Root().Raw)
	_, err = verify(t, doc, s3.Root(), time.Now())
	require.Error(t, err)
}

func TestStateDirConcurrentCreation(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	roots := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := nsmsim.New(nsmsim.Config{Image: testImage, StateDir: dir, DevicePath: filepath.Join(dir, "no-nsm")})
			if !assert.NoError(t, err) {
				return
			}
			roots[i] = s.Root().Raw
			s.Close()
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		assert.Equal(t, roots[0], roots[i], "simulator %d", i)
	}
}

func TestStateDirErrors(t *testing.T) {
	other := t.TempDir()
	newSim(t, nsmsim.Config{StateDir: other})
	otherKey, err := os.ReadFile(filepath.Join(other, nsmsim.RootKeyFile))
	require.NoError(t, err)

	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		errText string
	}{
		{
			name: "certificate without key",
			setup: func(t *testing.T, dir string) {
				require.NoError(t, os.Remove(filepath.Join(dir, nsmsim.RootKeyFile)))
			},
			errText: "only one of",
		},
		{
			name: "key readable by others",
			setup: func(t *testing.T, dir string) {
				require.NoError(t, os.Chmod(filepath.Join(dir, nsmsim.RootKeyFile), 0o644))
			},
			errText: "must not be accessible",
		},
		{
			name: "key of another root",
			setup: func(t *testing.T, dir string) {
				require.NoError(t, os.WriteFile(filepath.Join(dir, nsmsim.RootKeyFile), otherKey, 0o600))
			},
			errText: "does not match",
		},
		{
			name: "garbage certificate",
			setup: func(t *testing.T, dir string) {
				require.NoError(t, os.WriteFile(filepath.Join(dir, nsmsim.RootCertFile), []byte("junk"), 0o644))
			},
			errText: "no CERTIFICATE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newSim(t, nsmsim.Config{StateDir: dir})
			require.NoError(t, s.Close())
			tt.setup(t, dir)
			_, err := nsmsim.New(nsmsim.Config{Image: testImage, StateDir: dir, DevicePath: absentDevice(t)})
			require.ErrorContains(t, err, tt.errText)
		})
	}
}

func TestLoadRootMissing(t *testing.T) {
	_, err := nsmsim.LoadRoot(t.TempDir())
	require.ErrorIs(t, err, fs.ErrNotExist)
}
