// Command bench measures nitrosigner's signing path (run it with `make bench`).
//
// It prints, in one run:
//   - raw in-process secp256k1 signing throughput with 2 goroutines (the
//     enclave's own sign package, through `go test -bench`);
//   - end-to-end signs/s through parent → enclave with 1 and with N
//     concurrent clients, with p50/p99 latency, using the real binaries as
//     separate processes (parent on TCP loopback, enclave over a unix socket);
//   - the CPU time the parent and the enclave processes spent per signature,
//     read from the kernel's accounting of each process (/proc/PID/stat utime
//   - stime, the figures getrusage reports), not the load generator's;
//   - the same with SignBatch (16 signatures per call).
//
// Targets (issue 2): efficiency = raw CPU per signature / service CPU per
// signature ≥ 0.7; throughput at 64 clients ≥ 0.5 × raw; added p50 latency
// at one client ≤ 100 µs.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	bin      string
	duration time.Duration
	clients  int
	conns    int
	batch    int
	// GOMAXPROCS for the parent and enclave processes; 0 = Go's default.
	parentProcs, enclaveProcs int
	parentArgs                string
}

func run() error {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory holding the enclave and parent binaries")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time per phase")
	flag.IntVar(&o.clients, "clients", 64, "concurrent clients in the loaded phase")
	flag.IntVar(&o.conns, "conns", 1, "gRPC connections the clients share (a gRPC channel multiplexes calls; 0 = one per client)")
	flag.IntVar(&o.batch, "batch", 16, "signatures per SignBatch call")
	flag.IntVar(&o.parentProcs, "parent-procs", 0, "GOMAXPROCS of the parent process (0 = default)")
	flag.StringVar(&o.parentArgs, "parent-args", "", "extra flags for the parent, space-separated (e.g. --call-timeout=5s)")
	flag.IntVar(&o.enclaveProcs, "enclave-procs", 0, "GOMAXPROCS of the enclave process (0 = default)")
	flag.Parse()
	if o.conns <= 0 || o.conns > o.clients {
		o.conns = o.clients
	}

	fmt.Println("nitrosigner bench: secp256k1 digest signing")
	raw, single, err := rawSign()
	if err != nil {
		return err
	}
	// With 2 goroutines on 2 cores, each signature costs 2× the wall time per
	// op in CPU.
	rawRate := 1e9 / raw
	rawCPU := 2 * raw
	fmt.Printf("raw in-process (2 goroutines): %8.0f signs/s   %6.1f µs CPU/sign   (one signature alone: %.1f µs)\n", rawRate, rawCPU/1e3, single/1e3)

	st, err := startStack(o)
	if err != nil {
		return err
	}
	defer st.stop()

	ctx := context.Background()
	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		c, err := grpc.NewClient(st.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	cl := signerv1.NewSignerServiceClient(conns[0])
	var key *signerv1.CreateKeyResponse
	for range 100 {
		key, err = cl.CreateKey(ctx, &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	id := key.GetKey().GetKeyId()

	phases := []struct {
		name    string
		clients int
		batch   int
	}{
		{"1 client", 1, 1},
		{fmt.Sprintf("%d clients", o.clients), o.clients, 1},
		{fmt.Sprintf("%d clients, SignBatch×%d", o.clients, o.batch), o.clients, o.batch},
	}
	fmt.Printf("end to end (%s per phase, %d gRPC connections):\n", o.duration, o.conns)
	var p50one float64
	for i, p := range phases {
		r, err := load(ctx, conns, id, p.clients, p.batch, o.duration, st)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		cpu := (r.parentCPU + r.enclaveCPU) / float64(r.signs)
		fmt.Printf("  %-26s %8.0f signs/s (%.2f of raw)  p50 %7.1f µs  p99 %7.1f µs  CPU/sign parent %5.1f µs + enclave %5.1f µs = %5.1f µs (efficiency %.2f)  [load generator %5.1f µs]\n",
			p.name, r.rate, r.rate/rawRate, r.p50/1e3, r.p99/1e3,
			r.parentCPU/float64(r.signs)/1e3, r.enclaveCPU/float64(r.signs)/1e3, cpu/1e3, rawCPU/cpu, r.loadCPU/float64(r.signs)/1e3)
		if i == 0 {
			p50one = r.p50
		}
	}
	fmt.Printf("added latency at 1 client (p50 end to end − one signature alone): %.1f µs\n", (p50one-single)/1e3)
	return nil
}

var (
	parallelLine = regexp.MustCompile(`BenchmarkRawSignParallel-2\s+\d+\s+([0-9.]+) ns/op`)
	singleLine   = regexp.MustCompile(`BenchmarkSignDigestSecp256k1-2\s+\d+\s+([0-9.]+) ns/op`)
)

// rawSign runs the sign package's benchmarks and returns ns/op with 2
// goroutines (throughput) and of one signature alone (latency).
func rawSign() (parallel, single float64, err error) {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^(BenchmarkRawSignParallel|BenchmarkSignDigestSecp256k1)$", "-cpu", "2", "-benchtime", "3s", "./enclave/internal/sign/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("raw benchmark: %v\n%s", err, out)
	}
	m1, m2 := parallelLine.FindSubmatch(out), singleLine.FindSubmatch(out)
	if m1 == nil || m2 == nil {
		return 0, 0, fmt.Errorf("raw benchmark: no result in\n%s", out)
	}
	parallel, err1 := strconv.ParseFloat(string(m1[1]), 64)
	single, err2 := strconv.ParseFloat(string(m2[1]), 64)
	return parallel, single, errors.Join(err1, err2)
}

type stack struct {
	addr, metrics  string
	dir            string
	enclave, proxy *exec.Cmd
}

func startStack(o options) (*stack, error) {
	bin := o.bin
	dir, err := os.MkdirTemp("", "nsbench")
	if err != nil {
		return nil, err
	}
	st := &stack{addr: "127.0.0.1:50151", metrics: "127.0.0.1:50152", dir: dir}
	sock := "unix://" + filepath.Join(dir, "enclave.sock")
	st.enclave = exec.Command(filepath.Join(bin, "enclave"), "--nsm=sim", "--listen", sock, "--log-level", "warn")
	st.proxy = exec.Command(filepath.Join(bin, "parent"), append([]string{"--listen", "tcp://" + st.addr, "--enclave", sock,
		"--metrics-listen", "tcp://" + st.metrics, "--log-level", "error"}, strings.Fields(o.parentArgs)...)...)
	for c, procs := range map[*exec.Cmd]int{st.enclave: o.enclaveProcs, st.proxy: o.parentProcs} {
		c.Stderr = os.Stderr
		c.Env = os.Environ()
		if procs > 0 {
			c.Env = append(c.Env, fmt.Sprintf("GOMAXPROCS=%d", procs))
		}
		if err := c.Start(); err != nil {
			st.stop()
			return nil, err
		}
	}
	return st, nil
}

func (st *stack) stop() {
	for _, c := range []*exec.Cmd{st.proxy, st.enclave} {
		if c != nil && c.Process != nil {
			_ = c.Process.Signal(syscall.SIGTERM)
			_, _ = c.Process.Wait()
		}
	}
	os.RemoveAll(st.dir)
}

// cpu scrapes the parent's /metrics and returns the CPU time, in
// nanoseconds, that the parent and the enclave report for themselves.
func (st *stack) cpu() (parent, enclave float64, err error) {
	resp, err := http.Get("http://" + st.metrics + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var gotP, gotE bool
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_cpu_seconds_total":
			parent, gotP = v*1e9, true
		case strings.HasPrefix(name, "nitrosigner_enclave_cpu_seconds_total{"):
			enclave += v * 1e9
			gotE = true
		}
	}
	if !gotP || !gotE {
		return 0, 0, fmt.Errorf("metrics: no CPU figures (parent %v, enclave %v)", gotP, gotE)
	}
	return parent, enclave, sc.Err()
}

type result struct {
	signs                 int
	rate                  float64
	p50, p99              float64
	parentCPU, enclaveCPU float64
	loadCPU               float64 // this process: the load generator
}

// selfCPU returns this process's user+system CPU time in nanoseconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano() + ru.Stime.Nano())
}

func load(ctx context.Context, conns []*grpc.ClientConn, keyID string, clients, batch int, d time.Duration, st *stack) (result, error) {
	// Warm up for a second, then measure.
	if _, err := drive(ctx, conns, keyID, clients, batch, time.Second); err != nil {
		return result{}, err
	}
	p0, e0, err1 := st.cpu()
	l0 := selfCPU()
	start := time.Now()
	lat, err := drive(ctx, conns, keyID, clients, batch, d)
	elapsed := time.Since(start)
	l1 := selfCPU()
	p1, e1, err2 := st.cpu()
	if err := errors.Join(err, err1, err2); err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	signs := len(lat) * batch
	return result{
		signs:      signs,
		rate:       float64(signs) / elapsed.Seconds(),
		p50:        float64(lat[len(lat)/2]),
		p99:        float64(lat[len(lat)*99/100]),
		parentCPU:  p1 - p0,
		enclaveCPU: e1 - e0,
		loadCPU:    l1 - l0,
	}, nil
}

// drive runs clients loops for d and returns every call's latency.
func drive(ctx context.Context, conns []*grpc.ClientConn, keyID string, clients, batch int, d time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			cl := signerv1.NewSignerServiceClient(conns[c%len(conns)])
			lat := make([]time.Duration, 0, 1<<14)
			var n uint64
			digest := func() []byte {
				n++
				var b [8]byte
				binary.BigEndian.PutUint64(b[:], uint64(c)<<40|n)
				s := sha256.Sum256(b[:])
				return s[:]
			}
			var err error
			for time.Now().Before(deadline) {
				t := time.Now()
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if batch == 1 {
					_, err = cl.Sign(cctx, &signerv1.SignRequest{KeyId: keyID, Payload: &signerv1.SignRequest_Digest{Digest: digest()}})
				} else {
					reqs := make([]*signerv1.SignRequest, batch)
					for i := range reqs {
						reqs[i] = &signerv1.SignRequest{KeyId: keyID, Payload: &signerv1.SignRequest_Digest{Digest: digest()}}
					}
					var r *signerv1.SignBatchResponse
					r, err = cl.SignBatch(cctx, &signerv1.SignBatchRequest{Requests: reqs})
					if err == nil {
						for _, x := range r.GetResults() {
							if x.GetError() != nil {
								err = fmt.Errorf("batch item: %s", x.GetError().GetMessage())
							}
						}
					}
				}
				cancel()
				if err != nil {
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
