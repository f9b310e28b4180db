package sign

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Combiner gathers the SignDigest calls that concurrent goroutines make on
// one [BatchSigner] and signs them in batches, so that under load each
// signature costs less CPU (see Secp256k1.SignDigests). It never waits for
// a batch to fill: a call signs at once while fewer than the configured
// number of batches are being signed (one per core), and only calls that
// find every such slot busy queue up. The next batch takes everything
// queued, up to MaxDigestBatch. A lone call therefore costs what
// SignDigest costs, and a call under load waits for at most the batch in
// front of it.
//
// The caller's key and digest are read by whichever goroutine signs the
// batch, while the caller is blocked in SignDigest; they are not kept
// after it returns.
type Combiner struct {
	bs      BatchSigner
	leaders int
	pause   func()

	mu     sync.Mutex
	active int       // batches being signed
	queue  []*waiter // calls waiting for a batch, oldest first

	batches, signed atomic.Uint64
}

// waiter is one queued call. wake receives true once its job is signed,
// or false when it is to sign the next batch itself.
type waiter struct {
	job  DigestJob
	wake chan bool
}

var waiters = sync.Pool{New: func() any { return &waiter{wake: make(chan bool, 1)} }}

// NewCombiner returns a Combiner over bs that signs up to leaders batches
// at once (at least one); the CPU count is the natural value. pause, if not
// nil, is passed to bs.SignDigests: it runs between the signatures of a
// batch. Where the signer shares its CPUs with the processes that bring it
// requests, a pause that yields the CPU (sched_yield) lets them run during
// a long batch instead of after it.
func NewCombiner(bs BatchSigner, leaders int, pause func()) *Combiner {
	return &Combiner{bs: bs, leaders: max(1, leaders), pause: pause}
}

// SignDigest signs digest with priv, as part of a batch when other calls
// are waiting. The result is what bs gives for the job alone.
func (c *Combiner) SignDigest(priv, digest []byte) ([]byte, error) {
	w := waiters.Get().(*waiter)
	w.job = DigestJob{Priv: priv, Digest: digest}
	c.mu.Lock()
	if c.active < c.leaders {
		c.active++
		c.mu.Unlock()
		// A signature holds its thread for tens of microseconds without
		// a scheduling point, so calls already handed to goroutines on
		// this P could not queue behind it. Let them reach the queue
		// first; with nothing else runnable this costs well under a
		// microsecond.
		runtime.Gosched()
		c.mu.Lock()
		c.lead(w)
	} else {
		c.queue = append(c.queue, w)
		c.mu.Unlock()
		if signed := <-w.wake; !signed {
			c.mu.Lock()
			c.lead(w)
		}
	}
	sig, err := w.job.Sig, w.job.Err
	w.job = DigestJob{}
	waiters.Put(w)
	return sig, err
}

// Queued is the number of calls waiting for a batch.
func (c *Combiner) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Stats returns the batches signed so far and the calls they held; their
// ratio is the mean batch size.
func (c *Combiner) Stats() (batches, calls uint64) {
	return c.batches.Load(), c.signed.Load()
}

// lead is called with c.mu held and a batch slot taken. It signs w's job
// with up to MaxDigestBatch-1 queued ones, wakes their callers, and hands
// the slot to the oldest call still queued, or frees it.
func (c *Combiner) lead(w *waiter) {
	var batch [MaxDigestBatch]*waiter
	var jobs [MaxDigestBatch]DigestJob
	ws := append(batch[:0], w)
	take := min(len(c.queue), MaxDigestBatch-1)
	ws = append(ws, c.queue[:take]...)
	c.dequeue(take)
	c.mu.Unlock()

	for i, x := range ws {
		jobs[i] = x.job
	}
	c.bs.SignDigests(jobs[:len(ws)], c.pause)
	c.batches.Add(1)
	c.signed.Add(uint64(len(ws)))
	for i, x := range ws {
		x.job.Sig, x.job.Err = jobs[i].Sig, jobs[i].Err
	}
	clear(jobs[:len(ws)])
	for _, x := range ws[1:] {
		x.wake <- true
	}

	c.mu.Lock()
	if len(c.queue) == 0 {
		c.active--
		c.mu.Unlock()
		return
	}
	next := c.queue[0]
	c.dequeue(1)
	c.mu.Unlock()
	next.wake <- false
}

// dequeue drops the n oldest waiters from the queue; c.mu is held.
func (c *Combiner) dequeue(n int) {
	if n == 0 {
		return
	}
	k := copy(c.queue, c.queue[n:])
	clear(c.queue[k:])
	c.queue = c.queue[:k]
}

// combined is a scheme whose SignDigest goes through a Combiner.
type combined struct {
	Scheme
	c *Combiner
}

func (s combined) SignDigest(priv, digest []byte) ([]byte, error) {
	return s.c.SignDigest(priv, digest)
}

// Combined returns s with its SignDigest going through a new Combiner of
// leaders batches and pause (see [NewCombiner]), and that Combiner, when s
// is a [BatchSigner]; otherwise s itself and nil.
func Combined(s Scheme, leaders int, pause func()) (Scheme, *Combiner) {
	bs, ok := s.(BatchSigner)
	if !ok {
		return s, nil
	}
	c := NewCombiner(bs, leaders, pause)
	return combined{Scheme: s, c: c}, c
}
