package store_test

// A Put that died between link(2) or before rename(2) and its deferred
// os.Remove leaves the sealed blob under a temporary name; the next NewDir
// removes it, so that Delete still shreds every copy.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/parent/internal/store"
)

func TestDirRemovesLeftoverTempFiles(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d, err := store.NewDir(root)
	require.NoError(t, err)
	blob := []byte("sealed key blob")
	_, err = d.Put(ctx, "keys/key_1", blob, store.Cond{IfAbsent: true})
	require.NoError(t, err)
	// The state a crash right after commit's os.Link leaves: the temporary
	// name is a second hard link to the blob.
	require.NoError(t, os.Link(filepath.Join(root, "keys/key_1"), filepath.Join(root, "keys/.tmp-4242")))
	// A fresh temporary file may be another process's Put in progress.
	require.NoError(t, os.WriteFile(filepath.Join(root, "keys/.tmp-fresh"), []byte("in progress"), 0o600))
	old := time.Now().Add(-2 * time.Minute)
	require.NoError(t, os.Chtimes(filepath.Join(root, "keys/.tmp-4242"), old, old))

	// The parent restarts, then the key is deleted.
	d, err = store.NewDir(root)
	require.NoError(t, err)
	require.NoError(t, d.Delete(ctx, "keys/key_1"))

	var copies []string
	require.NoError(t, filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if b, rerr := os.ReadFile(p); rerr == nil && bytes.Equal(b, blob) {
			copies = append(copies, p)
		}
		return nil
	}))
	assert.Empty(t, copies, "a deleted (crypto-shredded) key's sealed blob is still on disk")
	assert.FileExists(t, filepath.Join(root, "keys/.tmp-fresh"))
}
