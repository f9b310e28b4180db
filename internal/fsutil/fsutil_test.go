package fsutil_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/fsutil"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	require.NoError(t, fsutil.WriteFileAtomic(p, []byte("one"), 0o600))
	require.NoError(t, fsutil.WriteFileAtomic(p, []byte("two"), 0o644))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "two", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left")
	require.Error(t, fsutil.WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600))
}

func TestLock(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	p := filepath.Join(t.TempDir(), ".lock")
	unlock, err := fsutil.Lock(p, false)
	require.NoError(t, err)
	_, err = fsutil.Lock(p, false)
	require.ErrorIs(t, err, fsutil.ErrLocked)
	unlock()
	unlock2, err := fsutil.Lock(p, true)
	require.NoError(t, err)
	unlock2()
}
