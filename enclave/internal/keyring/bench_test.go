package keyring

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"testing"
	"time"
	"unsafe"

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
// enclave restart, and reports the load rate, the KMS calls it took, the
// cache's memory per key (slots-B/key of it the slot array, the rest the
// index) and, with the keys cached, the longest stop-the-world GC pause and
// the longest forced full collection.
//
// The GC figures are taken with the keyring alive (an earlier version let
// it die before measuring) and the input blobs dropped: the blobs are
// transient in the enclave (they arrive over the link), and keeping a
// million of them, with their pointers, would measure their marking instead
// of the cache's.
func BenchmarkColdLoad(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			kms := keyringtest.New(arnA)
			items := sealedSet(b, kms, n, 4)
			var r *Keyring
			var kmsCalls int64
			var perKey float64
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
				for _, err := range errs {
					require.NoError(b, err)
				}
				require.Equal(b, n, r.Len())
				kmsCalls = kms.Decrypted.Load() - before
				perKey = float64(liveHeap()-heapBefore) / float64(n)
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N)), "keys/s")
			b.ReportMetric(float64(kmsCalls), "kms-calls")
			b.ReportMetric(perKey, "B/key")
			b.ReportMetric(float64(len(r.pages)*pageSize)*float64(unsafe.Sizeof(slot{}))/float64(n), "slots-B/key")
			items = nil
			gc := gcWith(20)
			b.ReportMetric(float64(gc.maxPause)/1e3, "max-gc-pause-µs")
			b.ReportMetric(float64(gc.medianPause)/1e3, "p50-gc-pause-µs")
			b.ReportMetric(float64(gc.maxStopping)/1e3, "max-gc-stopping-µs")
			b.ReportMetric(float64(gc.maxCycle)/1e3, "max-gc-cycle-µs")
			require.Equal(b, n, r.Len())
			runtime.KeepAlive(r)
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

// gcStats are the figures of [gcWith].
type gcStats struct {
	// maxPause and medianPause are a cycle's stop-the-world time, both
	// pauses of the cycle together, as the runtime records it.
	maxPause, medianPause time.Duration
	// maxStopping is the longest wait for the world to stop (threads to
	// reach a safe point), part of the pauses: on a shared machine it is
	// mostly the OS not running a thread, not the collector's work.
	maxStopping time.Duration
	// maxCycle is the longest wall time of a whole collection (mark and
	// sweep), which grows with the pointers in the heap.
	maxCycle time.Duration
}

const stoppingMetric = "/sched/pauses/stopping/gc:seconds"

// gcWith forces n full collections and measures them. On a shared 2-core
// VM a single pause can be stretched by the OS descheduling a thread while
// the world is stopped; the median shows the typical pause.
func gcWith(n int) gcStats {
	// Settle first: free the garbage of the load (a million blobs), finish
	// its sweeping and return the freed memory to the OS, so that what
	// follows is the steady state with the keys cached.
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var st debug.GCStats
	debug.ReadGCStats(&st)
	before := st.NumGC
	stop := []metrics.Sample{{Name: stoppingMetric}}
	metrics.Read(stop)
	stop0 := stop[0].Value.Float64Histogram()
	stop0 = &metrics.Float64Histogram{Counts: slices.Clone(stop0.Counts), Buckets: stop0.Buckets}
	var out gcStats
	for range n {
		t := time.Now()
		runtime.GC()
		out.maxCycle = max(out.maxCycle, time.Since(t))
	}
	debug.ReadGCStats(&st)
	metrics.Read(stop)
	stop1 := stop[0].Value.Float64Histogram()
	for i := len(stop1.Counts) - 1; i >= 0; i-- {
		if stop1.Counts[i] > stop0.Counts[i] {
			// The bucket's upper bound: the histogram keeps no exact values.
			out.maxStopping = time.Duration(stop1.Buckets[i+1] * 1e9)
			break
		}
	}
	p := slices.Clone(st.Pause[:min(int(st.NumGC-before), len(st.Pause))])
	slices.Sort(p)
	out.maxPause, out.medianPause = p[len(p)-1], p[len(p)/2]
	return out
}
