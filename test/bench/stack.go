package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// Development identities of the KMS simulator, as scripts/run-local.sh uses
// them; nothing here reaches AWS.
const (
	region    = "us-east-1"
	accessKey = "AKIDNITROSIGNERBENCH"
	secretKey = "nitrosigner-bench-development-secret"
	principal = "arn:aws:iam::111122223333:role/nitrosigner-parent"
	adminARN  = "arn:aws:iam::111122223333:role/nitrosigner-key-admin"
)

// statsMaxAge is how long the parent serves one enclave GetStats answer to
// /metrics scrapes (parent/internal/proxy); a scrape sooner than this after
// the previous one would read old enclave figures.
const statsMaxAge = time.Second

// stack is the whole service as `make run` starts it: kmssim, the enclave
// with the simulated NSM and the parent with a blob directory, each its own
// process. The enclave reaches KMS through the parent's forwarder.
type stack struct {
	addr, metrics string
	// sock, if set, is the unix socket the parent serves clients on
	// instead of addr (-client-net unix).
	sock string
	dir  string
	bin  string

	kmssim, enclave, proxy *exec.Cmd
	enclaveArgs            []string
	enclaveProcs           int

	lastScrape time.Time
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startStack(o options) (_ *stack, err error) {
	dir, err := os.MkdirTemp("", "nsbench")
	if err != nil {
		return nil, err
	}
	st := &stack{dir: dir, bin: o.bin, enclaveProcs: o.enclaveProcs}
	if o.clientNet == "unix" {
		st.sock = filepath.Join(dir, "parent.sock")
	}
	defer func() {
		if err != nil {
			st.stop()
		}
	}()
	var kms string
	for _, a := range []*string{&st.addr, &st.metrics, &kms} {
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"nsmsim", "kmssim", "blobs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}

	// The KMS key admits only this enclave image run by this parent role,
	// as with `make run`.
	meas, err := exec.Command(st.path("enclave"), "--sim-measurements").Output()
	if err != nil {
		return nil, fmt.Errorf("enclave --sim-measurements: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "measurements.json"), meas, 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.Command(st.path("nitrosigner"), "kms-policy", "--role-arn", principal, "--admin-arn", adminARN,
		"--pcrs", filepath.Join(dir, "measurements.json"), "--out", filepath.Join(dir, "kms-policy.json")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nitrosigner kms-policy: %w\n%s", err, out)
	}

	kmsLog, err := os.Create(filepath.Join(dir, "kmssim.log"))
	if err != nil {
		return nil, err
	}
	defer kmsLog.Close()
	st.kmssim = exec.Command(st.path("kmssim"), "--listen", kms, "--state", filepath.Join(dir, "kmssim"),
		"--nsm-state", filepath.Join(dir, "nsmsim"), "--access-key-id", accessKey, "--principal", principal,
		"--region", region, "--create-key", "nitrosigner", "--policy", filepath.Join(dir, "kms-policy.json"))
	st.kmssim.Env = append(os.Environ(), "KMSSIM_SECRET_ACCESS_KEY="+secretKey)
	st.kmssim.Stderr = kmsLog
	if err := st.kmssim.Start(); err != nil {
		return nil, err
	}
	keyARN, err := waitKMS(kms, filepath.Join(dir, "kmssim", "key-arn"))
	if err != nil {
		log, _ := os.ReadFile(kmsLog.Name())
		return nil, fmt.Errorf("kmssim: %w\n%s", err, log)
	}

	sock := "unix://" + filepath.Join(dir, "enclave.sock")
	kmsSock := "unix://" + filepath.Join(dir, "kms.sock")
	_, kmsPort, _ := net.SplitHostPort(kms)
	st.enclaveArgs = []string{"--nsm=sim", "--sim-state", filepath.Join(dir, "nsmsim"), "--sim-role-arn", principal,
		"--listen", sock, "--log-level", "warn", "--region", region,
		"--kms-endpoint", "https://localhost:" + kmsPort, "--kms-dial", kmsSock, "--kms-key-id", keyARN,
		"--kms-sim-ca", filepath.Join(dir, "kmssim", "ca.pem"), "--kek-max-keys", strconv.Itoa(o.kekMaxKeys)}
	st.enclaveArgs = append(st.enclaveArgs, strings.Fields(o.enclaveArgs)...)
	if err := st.startEnclave(); err != nil {
		return nil, err
	}

	st.proxy = exec.Command(st.path("parent"), append([]string{"--listen", st.listenURL(), "--enclave", sock,
		"--metrics-listen", "tcp://" + st.metrics, "--log-level", "error", "--store", "dir://" + filepath.Join(dir, "blobs"),
		"--kms-forward-listen", kmsSock, "--kms-forward-target", kms, "--credentials", "aws"}, strings.Fields(o.parentArgs)...)...)
	st.proxy.Stderr = os.Stderr
	// The parent takes the simulator's credentials from the environment
	// and pushes them to the enclave; nothing from ~/.aws is read.
	st.proxy.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+accessKey, "AWS_SECRET_ACCESS_KEY="+secretKey,
		"AWS_REGION="+region, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	if o.parentProcs > 0 {
		st.proxy.Env = append(st.proxy.Env, fmt.Sprintf("GOMAXPROCS=%d", o.parentProcs))
	}
	if err := st.proxy.Start(); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *stack) path(name string) string { return filepath.Join(st.bin, name) }

// waitFor polls ok every 10 ms until it reports true or limit has passed.
func waitFor(limit time.Duration, ok func() bool) error {
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		if ok() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", limit)
		}
	}
}

// waitKMS waits until kmssim has written its key's ARN and accepts
// connections, and returns the ARN.
func waitKMS(addr, arnFile string) (string, error) {
	var arn []byte
	err := waitFor(30*time.Second, func() bool {
		b, err := os.ReadFile(arnFile)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			return false
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		arn = bytes.TrimSpace(b)
		return true
	})
	if err != nil {
		return "", errors.New("did not come up within 30 s")
	}
	return string(arn), nil
}

func (st *stack) startEnclave() error {
	st.enclave = exec.Command(st.path("enclave"), st.enclaveArgs...)
	st.enclave.Stderr = os.Stderr
	st.enclave.Env = os.Environ()
	if st.enclaveProcs > 0 {
		st.enclave.Env = append(st.enclave.Env, fmt.Sprintf("GOMAXPROCS=%d", st.enclaveProcs))
	}
	return st.enclave.Start()
}

// restartEnclave stops the enclave process and starts a new one with the
// same flags, as after a crash or an upgrade; the parent stays up. As with a
// real enclave, which is down for longer than the parent's health interval,
// it waits until the parent has seen the enclave go (its gRPC health turns
// NOT_SERVING) and come back (SERVING): on the way up the parent pushes the
// new enclave its AWS credentials. It returns when the new enclave answers
// GetAttestation through the parent.
func (st *stack) restartEnclave(ctx context.Context, conn *grpc.ClientConn) error {
	terminate(st.enclave)
	if err := waitHealth(ctx, conn, healthpb.HealthCheckResponse_NOT_SERVING); err != nil {
		return err
	}
	if err := st.startEnclave(); err != nil {
		return err
	}
	if err := waitHealth(ctx, conn, healthpb.HealthCheckResponse_SERVING); err != nil {
		return err
	}
	if err := waitReady(ctx, conn); err != nil {
		return err
	}
	// The parent reports SERVING just before it pushes the credentials, and
	// nothing shows when the push has landed. It takes about a millisecond;
	// a first KMS call before it would fail in the enclave, count as a KMS
	// call there and make the parent push on demand.
	time.Sleep(pushGrace)
	return nil
}

// pushGrace is how long restartEnclave leaves the parent to push AWS
// credentials after it reported the enclave SERVING.
const pushGrace = 500 * time.Millisecond

// waitHealth polls the parent's gRPC health until it reports want.
func waitHealth(ctx context.Context, conn *grpc.ClientConn, want healthpb.HealthCheckResponse_ServingStatus) error {
	cl := healthpb.NewHealthClient(conn)
	err := waitFor(30*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		r, err := cl.Check(cctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == want
	})
	if err != nil {
		return fmt.Errorf("the parent's health did not turn %v within 30 s", want)
	}
	return nil
}

// waitReady polls GetAttestation through the parent until it succeeds.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	cl := signerv1.NewSignerServiceClient(conn)
	var err error
	if waitFor(30*time.Second, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err = cl.GetAttestation(cctx, &signerv1.GetAttestationRequest{Nonce: []byte("nitrosigner bench")})
		return err == nil
	}) != nil {
		return fmt.Errorf("the stack did not answer GetAttestation within 30 s: %w", err)
	}
	return nil
}

func terminate(c *exec.Cmd) {
	if c != nil && c.Process != nil {
		_ = c.Process.Signal(syscall.SIGTERM)
		_, _ = c.Process.Wait()
	}
}

// stop ends the processes and removes the state; it may be called again.
func (st *stack) stop() {
	for _, c := range []*exec.Cmd{st.proxy, st.enclave, st.kmssim} {
		terminate(c)
	}
	st.proxy, st.enclave, st.kmssim = nil, nil, nil
	os.RemoveAll(st.dir)
}

// listenURL is the parent's client address, as its --listen takes it.
func (st *stack) listenURL() string {
	if st.sock != "" {
		return "unix://" + st.sock
	}
	return "tcp://" + st.addr
}

// dial returns n gRPC connections to the parent.
func (st *stack) dial(n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		target := st.addr
		if st.sock != "" {
			target = "unix://" + st.sock
		}
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		conns[i] = c
	}
	return conns, nil
}

// series are the samples of one /metrics scrape: series name with its
// labels → value.
type series map[string]float64

// sum adds the values of every series of the metric name, whatever its
// labels; ok is false if there is none.
func (s series) sum(name string) (v float64, ok bool) {
	for k, x := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			v += x
			ok = true
		}
	}
	return v, ok
}

// scrape reads the parent's /metrics, first waiting out the parent's cache
// of the enclave's figures so that they are current.
func (st *stack) scrape() (series, error) {
	if wait := time.Until(st.lastScrape.Add(statsMaxAge + 50*time.Millisecond)); wait > 0 {
		time.Sleep(wait)
	}
	defer func() { st.lastScrape = time.Now() }()
	resp, err := http.Get("http://" + st.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := series{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if up, _ := out.sum("nitrosigner_enclave_up"); up != 1 {
		return nil, errors.New("metrics: the enclave did not answer the parent's GetStats")
	}
	return out, nil
}

// enclaveFigures are the enclave's keyring counters, as the parent exports
// them.
type enclaveFigures struct {
	kmsCalls, keks, keys float64
}

func (st *stack) enclaveFigures() (enclaveFigures, error) {
	s, err := st.scrape()
	if err != nil {
		return enclaveFigures{}, err
	}
	var f enclaveFigures
	var ok [3]bool
	f.kmsCalls, ok[0] = s.sum("nitrosigner_enclave_kms_calls_total")
	f.keks, ok[1] = s.sum("nitrosigner_enclave_keks")
	f.keys, ok[2] = s.sum("nitrosigner_enclave_keys")
	if ok != [3]bool{true, true, true} {
		return f, errors.New("metrics: no nitrosigner_enclave_kms_calls_total, _keks or _keys")
	}
	return f, nil
}

// counters are the service's own figures a phase is measured by.
type counters struct {
	parentCPU, enclaveCPU float64 // ns
	// batched and batches count the enclave's digest signatures made
	// through its batching of concurrent calls, and their batches.
	batched, batches float64
}

// counters scrapes the parent's metrics for the service's counters.
func (st *stack) counters() (counters, error) {
	s, err := st.scrape()
	if err != nil {
		return counters{}, err
	}
	return s.counters()
}

// counters reads the CPU time, in nanoseconds, that the parent and the
// enclave report in this scrape, and the enclave's batching counters.
func (s series) counters() (counters, error) {
	parent, gotP := s.sum("process_cpu_seconds_total")
	enclave, gotE := s.sum("nitrosigner_enclave_cpu_seconds_total")
	if !gotP || !gotE {
		return counters{}, fmt.Errorf("metrics: no CPU figures (parent %v, enclave %v)", gotP, gotE)
	}
	batched, _ := s.sum("nitrosigner_enclave_batched_signatures_total")
	batches, _ := s.sum("nitrosigner_enclave_sign_batches_total")
	return counters{parentCPU: parent * 1e9, enclaveCPU: enclave * 1e9, batched: batched, batches: batches}, nil
}
