package keyring

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/keyring/keyringtest"
	"github.com/nitrosigner/nitrosigner/enclave/internal/seal"
	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// sealedSet builds n sealed keys in memory under kekCount KEKs. One key pair
// is generated and sealed under n different ids: loading does not derive
// public keys (that happens on first use), so this measures exactly the
// load path, without minutes of key generation.
func sealedSet(tb testing.TB, kms *keyringtest.FakeKMS, n, kekCount int) []Blobs {
	tb.Helper()
	r := newRing(tb, kms)
	sc, _ := sign.Lookup(signerv1.Algorithm_ALGORITHM_SECP256K1)
	priv, pub, err := sc.Generate()
	require.NoError(tb, err)
	defer clear(priv)
	keks := make([]*kek, kekCount)
	for i := range keks {
		keks[i], err = r.makeKEK(context.Background(), arnA)
		require.NoError(tb, err)
	}
	out := make([]Blobs, n)
	for i := range out {
		k := keks[i%kekCount]
		id, err := seal.NewID(seal.KeyIDPrefix)
		require.NoError(tb, err)
		hdr := &sealedv1.SealedKeyHeader{
			KeyId: id, Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1, PublicKey: pub,
			KekId: seal.FormatID(seal.KEKIDPrefix, k.id), State: signerv1.KeyState_KEY_STATE_ENABLED,
			CreatedAtUnixMs: 1, SealedAtUnixMs: 1, Generation: 1,
		}
		blob, err := seal.SealKey(k.aead, hdr, priv)
		require.NoError(tb, err)
		out[i] = Blobs{KeyID: id, SealedKey: blob, SealedKEK: k.blob}
	}
	return out
}

// BenchmarkColdLoad loads n sealed keys into a fresh keyring, as after an
// enclave restart, and reports the KMS calls it took, the cache's memory
// per key and the longest GC pause with the keys cached.
func BenchmarkColdLoad(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			kms := keyringtest.New(arnA)
			items := sealedSet(b, kms, n, 4)
			var r *Keyring
			var kmsCalls int64
			var perKey float64
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				if r != nil {
					_ = r.Close()
					r = nil
				}
				heapBefore := liveHeap()
				before := kms.Decrypted.Load()
				var err error
				r, err = New(Config{KMS: kms, KMSKeys: []string{arnA}, Logger: slog.New(slog.DiscardHandler)})
				require.NoError(b, err)
				b.StartTimer()
				errs := r.Load(context.Background(), items)
				b.StopTimer()
				require.NoError(b, errs[0])
				require.Equal(b, n, r.Len())
				kmsCalls = kms.Decrypted.Load() - before
				perKey = float64(liveHeap()-heapBefore) / float64(n)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N)), "keys/s")
			b.ReportMetric(float64(kmsCalls), "kms-calls")
			b.ReportMetric(perKey, "B/key")
			b.ReportMetric(float64(maxGCPause(5).Microseconds()), "max-gc-pause-µs")
			runtime.KeepAlive(items)
		})
	}
}

// liveHeap collects garbage and returns the bytes of live heap objects.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// maxGCPause forces n collections and returns the longest stop-the-world
// pause among them.
func maxGCPause(n int) time.Duration {
	var st debug.GCStats
	debug.ReadGCStats(&st)
	before := st.NumGC
	for range n {
		runtime.GC()
	}
	st = debug.GCStats{PauseQuantiles: make([]time.Duration, 0)}
	debug.ReadGCStats(&st)
	got := int(st.NumGC - before)
	return slices.Max(st.Pause[:min(got, len(st.Pause))])
}
