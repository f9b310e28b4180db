package keyring

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring/keyringtest"
	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
)

func parseKeyID(id string) ([16]byte, bool) { return seal.ParseID(seal.KeyIDPrefix, id) }

// EvictKey{deleted: true} records a deletion mark for any well-formed key
// id, also one this enclave never loaded. The parent can send it without
// limit, so the marks are bounded (maxMarks) rather than kept for the
// enclave's life.
func TestDeletionMarksBounded(t *testing.T) {
	const maxKeys, calls = 1024, 200_000
	r, err := New(Config{KMS: keyringtest.New(arnA), KMSKeys: []string{arnA}, MaxKeys: maxKeys, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var b [16]byte
	for range calls {
		_, _ = rand.Read(b[:])
		r.Evict(seal.KeyIDPrefix+hex.EncodeToString(b[:]), true)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	r.mu.RLock()
	n := len(r.floor)
	r.mu.RUnlock()
	t.Logf("%d EvictKey(deleted) calls for never-loaded ids: %d floor entries, heap +%d bytes (%.0f B/call)",
		calls, n, int64(after.HeapAlloc)-int64(before.HeapAlloc), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/calls)
	require.LessOrEqual(t, n, maxMarks, "deletion marks for keys the enclave never held grow without bound")
}
