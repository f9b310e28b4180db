package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
)

// The same digest signing as the grpc-go phases, driven by h2load
// (nghttp2-client): gRPC calls as HTTP/2 POSTs of a fixed encoded request,
// from one connection with N streams in flight. Its client costs a few
// microseconds per call where grpc-go's costs 20–40 µs of the same two
// cores, so these phases measure what the service itself adds and can
// carry. h2load checks only HTTP statuses; every call's gRPC outcome is
// checked in the parent's own counters instead: the phase fails unless
// the parent counted exactly as many Sign calls, all OK.

// signMethod is the gRPC path of Sign.
const signMethod = "/nitrosigner.v1.SignerService/Sign"

// h2loadPath returns h2load's path, or "" if it is not installed.
func h2loadPath() string {
	p, err := exec.LookPath("h2load")
	if err != nil {
		return ""
	}
	return p
}

// grpcBody returns req as a gRPC message: uncompressed flag, big-endian
// length, bytes.
func grpcBody(req proto.Message) ([]byte, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 5, 5+len(b))
	binary.BigEndian.PutUint32(out[1:], uint32(len(b)))
	return append(out, b...), nil
}

var h2Succeeded = regexp.MustCompile(`requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded`)

// h2loadRun runs h2load with streams concurrent calls on one connection
// for d and returns the latency of every call it logged and its own CPU
// time in ns.
func h2loadRun(bin string, st *stack, body string, streams int, d time.Duration) (latencies, float64, error) {
	log := filepath.Join(st.dir, "h2load.log")
	_ = os.Remove(log)
	args := []string{"-c", "1", "-m", strconv.Itoa(streams),
		"-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 10S",
		"-d", body, "--log-file", log,
		"-D", fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))}
	if st.sock != "" {
		args = append(args, "-B", "unix:"+st.sock, "http://localhost"+signMethod)
	} else {
		args = append(args, "http://"+st.addr+signMethod)
	}
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, 0, fmt.Errorf("h2load: %v\n%s", err, out)
	}
	m := h2Succeeded.FindSubmatch(out)
	if m == nil {
		return nil, 0, fmt.Errorf("h2load: no summary in\n%s", out)
	}
	if string(m[2]) != string(m[3]) {
		return nil, 0, fmt.Errorf("h2load: %s calls done, %s succeeded (HTTP 2xx)", m[2], m[3])
	}
	var cpu float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = float64(ru.Utime.Nano() + ru.Stime.Nano())
	}
	f, err := os.Open(log)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var lat latencies
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start time (µs since the epoch), HTTP status, µs to the end of
		// the answer
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		if fs[1] != "200" {
			return nil, 0, fmt.Errorf("h2load: HTTP status %s", fs[1])
		}
		us, err := strconv.ParseFloat(fs[2], 64)
		if err != nil {
			return nil, 0, fmt.Errorf("h2load log: %v", err)
		}
		lat = append(lat, time.Duration(us*1e3))
	}
	if err := sc.Err(); err != nil {
		return nil, 0, err
	}
	if len(lat) == 0 {
		return nil, 0, errors.New("h2load: no call logged")
	}
	if done := string(m[2]); strconv.Itoa(len(lat)) != done {
		return nil, 0, fmt.Errorf("h2load: %s calls done but %d logged", done, len(lat))
	}
	return lat, cpu, nil
}

// signOutcomes returns the parent's count of Sign calls that ended OK,
// Canceled (the client went away) and otherwise.
func signOutcomes(s series) (ok, canceled, failed float64) {
	prefix := "nitrosigner_grpc_requests_total{"
	for k, v := range s {
		if !strings.HasPrefix(k, prefix) || !strings.Contains(k, `method="`+signMethod+`"`) {
			continue
		}
		switch {
		case strings.Contains(k, `code="OK"`):
			ok += v
		case strings.Contains(k, `code="Canceled"`):
			canceled += v
		default:
			failed += v
		}
	}
	return ok, canceled, failed
}

// h2loadPhase signs with keyID from streams concurrent h2load calls for
// d after a warm-up, and measures as load does. It fails unless the
// parent counted every call as an OK Sign and none as failed.
func h2loadPhase(st *stack, bin, keyID string, streams int, d time.Duration) (result, error) {
	body, err := grpcBody(digestRequest(keyID, 1))
	if err != nil {
		return result{}, err
	}
	bodyFile := filepath.Join(st.dir, "h2load-sign.bin")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		return result{}, err
	}
	if _, _, err := h2loadRun(bin, st, bodyFile, streams, time.Second); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
	// One scrape before and one after give both the call counts and the
	// CPU figures; scrape waits out the parent's 1-s cache of the
	// enclave's figures, which also lets the warm-up's last calls finish.
	s0, err := st.scrape()
	if err != nil {
		return result{}, err
	}
	ok0, canceled0, failed0 := signOutcomes(s0)
	c0, err := s0.counters()
	if err != nil {
		return result{}, err
	}
	m0, start := machineCPU(), time.Now()
	lat, loadCPU, err := h2loadRun(bin, st, bodyFile, streams, d)
	elapsed, m1 := time.Since(start), machineCPU()
	if err != nil {
		return result{}, err
	}
	s1, err := st.scrape()
	if err != nil {
		return result{}, err
	}
	ok1, canceled1, failed1 := signOutcomes(s1)
	c1, err := s1.counters()
	if err != nil {
		return result{}, err
	}
	// h2load stops at d with up to streams calls in flight, which it does
	// not log: the parent completes them, or sees them cancelled when
	// h2load closes the connection.
	n, canceled := int(ok1-ok0), int(canceled1-canceled0)
	if failed1 != failed0 || n < len(lat) || n+canceled > len(lat)+streams {
		return result{}, fmt.Errorf("the parent counted %d OK, %d cancelled and %.0f failed Sign calls; h2load logged %d", n, canceled, failed1-failed0, len(lat))
	}
	slices.Sort(lat)
	// h2load runs for d exactly; its process also spends a few ms
	// starting, which elapsed includes.
	r := result{
		calls:   len(lat),
		signs:   len(lat),
		rate:    float64(len(lat)) / min(elapsed, d).Seconds(),
		p50:     lat.pct(50),
		p99:     lat.pct(99),
		loadCPU: loadCPU,
		idle:    m1.idleSince(m0),
	}
	r.measured(c0, c1)
	return r, nil
}
