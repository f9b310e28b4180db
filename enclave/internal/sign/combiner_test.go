package sign_test

import (
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/sign"
)

// fakeBatcher "signs" a job as its digest with the key appended, records
// batch sizes and the most batches in flight at once, and can hold every
// batch until released.
type fakeBatcher struct {
	hold    chan struct{} // nil: do not hold
	entered chan int      // gets each batch's size on entry, if not nil
	mu      sync.Mutex
	sizes   []int
	in, max atomic.Int32
}

func (f *fakeBatcher) SignDigests(jobs []sign.DigestJob, pause func()) {
	if pause != nil {
		pause()
	}
	n := f.in.Add(1)
	for {
		m := f.max.Load()
		if n <= m || f.max.CompareAndSwap(m, n) {
			break
		}
	}
	if f.entered != nil {
		f.entered <- len(jobs)
	}
	if f.hold != nil {
		<-f.hold
	}
	f.mu.Lock()
	f.sizes = append(f.sizes, len(jobs))
	f.mu.Unlock()
	for i := range jobs {
		if len(jobs[i].Digest) == 0 {
			jobs[i].Err = sign.ErrInvalidPayload
			continue
		}
		jobs[i].Sig = append(append([]byte{}, jobs[i].Digest...), jobs[i].Priv...)
	}
	f.in.Add(-1)
}

// A lone call is signed at once, alone.
func TestCombinerLoneCall(t *testing.T) {
	f := &fakeBatcher{}
	c := sign.NewCombiner(f, 2, nil)
	sig, err := c.SignDigest([]byte("k"), []byte("d"))
	require.NoError(t, err)
	assert.Equal(t, "dk", string(sig))
	_, err = c.SignDigest([]byte("k"), nil)
	require.ErrorIs(t, err, sign.ErrInvalidPayload)
	assert.Equal(t, []int{1, 1}, f.sizes)
}

// Calls that find every batch slot busy queue up and go in the next batch
// together, each getting its own result, and no more batches run at once
// than configured; every batch is given the combiner's pause.
func TestCombinerBatchesQueuedCalls(t *testing.T) {
	f := &fakeBatcher{hold: make(chan struct{}), entered: make(chan int, 100)}
	var pauses atomic.Int32
	c := sign.NewCombiner(f, 1, func() { pauses.Add(1) })
	type res struct {
		i   int
		sig []byte
		err error
	}
	out := make(chan res, 100)
	call := func(i int) {
		sig, err := c.SignDigest([]byte{byte(i)}, []byte(fmt.Sprint("d", i)))
		out <- res{i, sig, err}
	}
	go call(0)
	require.Equal(t, 1, <-f.entered) // call 0 signs alone, held
	const queued = 40
	for i := 1; i <= queued; i++ {
		go call(i)
	}
	// Wait until all 40 are queued: nothing else can be signing.
	require.Eventually(t, func() bool { return c.Queued() == queued }, 5*time.Second, time.Millisecond)
	close(f.hold)
	got := map[int][]byte{}
	for range queued + 1 {
		r := <-out
		require.NoError(t, r.err)
		got[r.i] = r.sig
	}
	for i := 0; i <= queued; i++ {
		assert.Equal(t, fmt.Sprint("d", i)+string([]byte{byte(i)}), string(got[i]))
	}
	// 1 alone, then the 40 queued in batches of at most MaxDigestBatch.
	assert.Equal(t, []int{1, sign.MaxDigestBatch, queued - sign.MaxDigestBatch}, f.sizes)
	assert.EqualValues(t, 1, f.max.Load())
	assert.Zero(t, c.Queued())
	batches, calls := c.Stats()
	assert.EqualValues(t, 3, batches)
	assert.EqualValues(t, queued+1, calls)
	assert.EqualValues(t, 3, pauses.Load(), "every batch gets the combiner's pause")
}

// Many concurrent callers of the real scheme get exactly the signatures
// SignDigest gives.
func TestCombinerSecp256k1Concurrent(t *testing.T) {
	s := secp256k1Scheme(t)
	cs, c := sign.Combined(s, 2, nil)
	require.NotNil(t, c)
	_, isBatch := cs.(sign.BatchSigner)
	assert.False(t, isBatch)
	keys := make([][]byte, 4)
	for i := range keys {
		priv, _, err := s.Generate()
		require.NoError(t, err)
		keys[i] = priv
	}
	const callers, each = 32, 8
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for g := range callers {
		wg.Go(func() {
			for n := range each {
				priv := keys[(g+n)%len(keys)]
				d := make([]byte, 32)
				_, _ = rand.Read(d)
				got, err := cs.SignDigest(priv, d)
				if err != nil {
					errs <- err
					continue
				}
				want, _ := s.SignDigest(priv, d)
				if string(got) != string(want) {
					errs <- fmt.Errorf("caller %d call %d: batched signature differs", g, n)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	batches, calls := c.Stats()
	assert.EqualValues(t, callers*each, calls)
	assert.LessOrEqual(t, batches, calls)
	assert.NotZero(t, batches)
}

// Schemes that cannot batch are returned as they are.
func TestCombinedLeavesOtherSchemes(t *testing.T) {
	for _, name := range []string{"ed25519", "p256"} {
		s, ok := sign.ByName(name)
		require.True(t, ok, name)
		cs, c := sign.Combined(s, 2, nil)
		assert.Equal(t, s, cs, name)
		assert.Nil(t, c, name)
	}
}
