package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// callTimeout bounds every call the load generator makes.
const callTimeout = 10 * time.Second

// op makes one call for client c; n counts that client's calls from 1.
type op func(ctx context.Context, cl signerv1.SignerServiceClient, c int, n uint64) error

// latencies are call latencies, sorted by [summarise].
type latencies []time.Duration

func (l latencies) pct(p int) float64 { return float64(l[(len(l)-1)*p/100]) }

type result struct {
	calls, signs          int
	rate                  float64 // signatures per second
	p50, p99              float64 // per call, ns
	parentCPU, enclaveCPU float64 // ns, the whole phase
	loadCPU               float64 // this process: the load generator
	idle                  float64 // share of the machine's CPU time left idle during the phase
	batched, batches      float64 // the enclave's batching counters' increase
}

// meanBatch is the mean size of the enclave's digest-signing batches in
// the phase, or "-" when it made none.
func (r result) meanBatch() string {
	if r.batches == 0 {
		return "-"
	}
	return strconv.FormatFloat(r.batched/r.batches, 'f', 1, 64)
}

// measured fills in r's service figures from the counters before and
// after its phase.
func (r *result) measured(c0, c1 counters) {
	r.parentCPU, r.enclaveCPU = c1.parentCPU-c0.parentCPU, c1.enclaveCPU-c0.enclaveCPU
	r.batched, r.batches = c1.batched-c0.batched, c1.batches-c0.batches
}

// cpuTimes is the machine's CPU time from /proc/stat, in clock ticks.
type cpuTimes struct{ idle, total uint64 }

// machineCPU reads the machine-wide CPU times; zero where /proc/stat is
// missing, which makes [cpuTimes.idleSince] report nothing.
func machineCPU() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPUTimes(line)
}

// parseCPUTimes reads the "cpu" line of /proc/stat: user, nice, system,
// idle, iowait, irq, softirq and steal make the total (guest time is
// already counted in user and nice); idle and iowait are idle.
func parseCPUTimes(line string) cpuTimes {
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var t cpuTimes
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}
		}
		t.total += v
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	return t
}

// idleSince returns the share of CPU time the machine left idle between
// t0 and t, or -1 when it is unknown.
func (t cpuTimes) idleSince(t0 cpuTimes) float64 {
	if t.total <= t0.total {
		return -1
	}
	return float64(t.idle-t0.idle) / float64(t.total-t0.total)
}

// selfCPU returns this process's user+system CPU time in nanoseconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano() + ru.Stime.Nano())
}

// load warms up for a second, then runs f from clients concurrent clients
// for d and measures throughput, latency and the CPU each process spent.
// Every call makes perCall signatures.
func load(ctx context.Context, st *stack, conns []*grpc.ClientConn, clients, perCall int, d time.Duration, f op) (result, error) {
	if _, err := drive(ctx, conns, clients, time.Second, f); err != nil {
		return result{}, err
	}
	c0, err1 := st.counters()
	l0, m0 := selfCPU(), machineCPU()
	start := time.Now()
	lat, err := drive(ctx, conns, clients, d, f)
	elapsed := time.Since(start)
	l1, m1 := selfCPU(), machineCPU()
	c1, err2 := st.counters()
	if err := errors.Join(err, err1, err2); err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	signs := len(lat) * perCall
	r := result{
		calls:   len(lat),
		signs:   signs,
		rate:    float64(signs) / elapsed.Seconds(),
		p50:     lat.pct(50),
		p99:     lat.pct(99),
		loadCPU: l1 - l0,
		idle:    m1.idleSince(m0),
	}
	r.measured(c0, c1)
	return r, nil
}

// drive runs clients loops of f for d and returns every call's latency.
func drive(ctx context.Context, conns []*grpc.ClientConn, clients int, d time.Duration, f op) (latencies, error) {
	deadline := time.Now().Add(d)
	return spread(ctx, conns, clients, func(ctx context.Context, cl signerv1.SignerServiceClient, c int, n uint64) (bool, error) {
		if !time.Now().Before(deadline) {
			return false, nil
		}
		return true, f(ctx, cl, c, n)
	})
}

// each calls f once for every i in [0, n), spread over clients concurrent
// clients, and returns every call's latency.
func each(ctx context.Context, conns []*grpc.ClientConn, clients, n int, f func(ctx context.Context, cl signerv1.SignerServiceClient, i int) error) (latencies, error) {
	var next atomic.Int64
	return spread(ctx, conns, clients, func(ctx context.Context, cl signerv1.SignerServiceClient, _ int, _ uint64) (bool, error) {
		i := int(next.Add(1) - 1)
		if i >= n {
			return false, nil
		}
		return true, f(ctx, cl, i)
	})
}

// spread runs clients loops calling f until f reports that it made no call
// or an error, and returns the latency of every call made. The clients
// share the connections round-robin.
func spread(ctx context.Context, conns []*grpc.ClientConn, clients int, f func(ctx context.Context, cl signerv1.SignerServiceClient, c int, n uint64) (bool, error)) (latencies, error) {
	var mu sync.Mutex
	var all latencies
	var firstErr error
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			cl := signerv1.NewSignerServiceClient(conns[c%len(conns)])
			lat := make(latencies, 0, 1<<12)
			var err error
			for n := uint64(1); ; n++ {
				t := time.Now()
				cctx, cancel := context.WithTimeout(ctx, callTimeout)
				var called bool
				called, err = f(cctx, cl, c, n)
				cancel()
				if !called || err != nil {
					break
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if len(all) == 0 {
		return nil, errors.New("no call completed")
	}
	return all, nil
}

// signDigests returns an op that signs fresh 32-byte digests with keyID,
// batch per call (batch 1: unary Sign; more: SignBatch).
func signDigests(keyID string, batch int) op {
	return func(ctx context.Context, cl signerv1.SignerServiceClient, c int, n uint64) error {
		if batch == 1 {
			_, err := cl.Sign(ctx, digestRequest(keyID, uint64(c)<<40|n))
			return err
		}
		reqs := make([]*signerv1.SignRequest, batch)
		for i := range reqs {
			reqs[i] = digestRequest(keyID, uint64(c)<<40|n<<8|uint64(i))
		}
		r, err := cl.SignBatch(ctx, &signerv1.SignBatchRequest{Requests: reqs})
		if err != nil {
			return err
		}
		for _, x := range r.GetResults() {
			if x.GetError() != nil {
				return fmt.Errorf("batch item: %s", x.GetError().GetMessage())
			}
		}
		return nil
	}
}

// digestRequest asks for a signature over SHA-256(seed).
func digestRequest(keyID string, seed uint64) *signerv1.SignRequest {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	s := sha256.Sum256(b[:])
	return &signerv1.SignRequest{KeyId: keyID, Payload: &signerv1.SignRequest_Digest{Digest: s[:]}}
}

// hopFloor measures, from one client for d, the p50 latency of a gRPC
// health Check, which the parent answers itself: the cost of the client →
// parent hop alone, without the enclave.
func hopFloor(ctx context.Context, conn *grpc.ClientConn, d time.Duration) (float64, error) {
	h := healthpb.NewHealthClient(conn)
	var lat latencies
	for end := time.Now().Add(d); time.Now().Before(end); {
		t := time.Now()
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			return 0, fmt.Errorf("health check: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	return lat.pct(50), nil
}
