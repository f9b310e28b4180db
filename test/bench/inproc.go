package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	parallelLine = regexp.MustCompile(`BenchmarkRawSignParallel-2\s+\d+\s+([0-9.]+) ns/op\s+([0-9.]+) cpu-ns/op`)
	singleLine   = regexp.MustCompile(`BenchmarkSignDigestSecp256k1-2\s+\d+\s+([0-9.]+) ns/op`)
)

// rawFigures are the in-process signing figures the service is compared
// with, all in ns.
type rawFigures struct {
	perOp  float64 // wall time per signature with 2 goroutines (1e9/perOp = signs/s)
	cpu    float64 // CPU per signature meanwhile, from the process's getrusage
	single float64 // one signature alone
}

func (r rawFigures) rate() float64 { return 1e9 / r.perOp }

// mean averages two measurements: the rates and the CPU and time per
// signature.
func (r rawFigures) mean(o rawFigures) rawFigures {
	return rawFigures{
		perOp:  2 / (1/r.perOp + 1/o.perOp),
		cpu:    (r.cpu + o.cpu) / 2,
		single: (r.single + o.single) / 2,
	}
}

// rawBench runs the sign package's benchmarks from a test binary built
// once, so that the raw figures can be measured right next to each phase
// they are compared with: this VM's speed drifts by 10–20% over minutes.
type rawBench struct{ bin, dir string }

func newRawBench() (*rawBench, error) {
	dir, err := os.MkdirTemp("", "nitrosigner-bench-raw-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "sign.test")
	if out, err := exec.Command("go", "test", "-c", "-o", bin, "./enclave/internal/sign/").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("build the raw benchmark: %v\n%s", err, out)
	}
	return &rawBench{bin: bin, dir: dir}, nil
}

func (rb *rawBench) close() { os.RemoveAll(rb.dir) }

// measure runs BenchmarkRawSignParallel and BenchmarkSignDigestSecp256k1
// with 2 Ps for benchtime each.
func (rb *rawBench) measure(benchtime time.Duration) (rawFigures, error) {
	out, err := rb.run("raw", "^(BenchmarkRawSignParallel|BenchmarkSignDigestSecp256k1)$", 2, benchtime)
	if err != nil {
		return rawFigures{}, err
	}
	return parseRaw(out)
}

// run runs the benchmarks matching pattern with cpus Ps for benchtime and
// returns their output; what names them in an error.
func (rb *rawBench) run(what, pattern string, cpus int, benchtime time.Duration) ([]byte, error) {
	cmd := exec.Command(rb.bin, "-test.run", "^$", "-test.bench", pattern,
		"-test.cpu", strconv.Itoa(cpus), "-test.benchtime", benchtime.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s benchmark: %v\n%s", what, err, out)
	}
	return out, nil
}

var batchedLine = regexp.MustCompile(`BenchmarkSignDigestsSecp256k1/16(?:-\d+)?\s+\d+\s+[0-9.]+ ns/op\s+([0-9.]+) cpu-ns/sig`)

// batched measures batched signing in process: 16 digests per batch, one
// goroutine, CPU per signature (BenchmarkSignDigestsSecp256k1/16). It is
// what the enclave's batching approaches under load.
func (rb *rawBench) batched(benchtime time.Duration) (float64, error) {
	out, err := rb.run("batched", "^BenchmarkSignDigestsSecp256k1$/^16$", 1, benchtime)
	if err != nil {
		return 0, err
	}
	return parseBatched(out)
}

var afterIdleLine = regexp.MustCompile(`BenchmarkSignDigestAfterIdle(?:-\d+)?\s+\d+\s+[0-9.]+ ns/op\s+([0-9.]+) p50-ns/sign`)

// afterIdle measures, in process, the median time of one signature made
// right after a short sleep (BenchmarkSignDigestAfterIdle): what a lone
// request's signature meets on a machine whose idle CPUs halt.
func (rb *rawBench) afterIdle(benchtime time.Duration) (float64, error) {
	out, err := rb.run("after-idle", "^BenchmarkSignDigestAfterIdle$", 2, benchtime)
	if err != nil {
		return 0, err
	}
	return parseAfterIdle(out)
}

// parseAfterIdle reads the median signature time from the output of
// BenchmarkSignDigestAfterIdle.
func parseAfterIdle(out []byte) (float64, error) {
	return parseMetric("after-idle", afterIdleLine, out)
}

// parseBatched reads the CPU per signature from the output of
// BenchmarkSignDigestsSecp256k1/16.
func parseBatched(out []byte) (float64, error) { return parseMetric("batched", batchedLine, out) }

// parseMetric reads the one figure that line captures from a benchmark's
// output; what names the benchmark in an error.
func parseMetric(what string, line *regexp.Regexp, out []byte) (float64, error) {
	m := line.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s benchmark: %w in\n%s", what, errNoResult, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// parseRaw reads the raw figures from the benchmarks' output.
func parseRaw(out []byte) (rawFigures, error) {
	m1, m2 := parallelLine.FindSubmatch(out), singleLine.FindSubmatch(out)
	if m1 == nil || m2 == nil {
		return rawFigures{}, fmt.Errorf("raw benchmark: no result in\n%s", out)
	}
	var r rawFigures
	var errs [3]error
	r.perOp, errs[0] = strconv.ParseFloat(string(m1[1]), 64)
	r.cpu, errs[1] = strconv.ParseFloat(string(m1[2]), 64)
	r.single, errs[2] = strconv.ParseFloat(string(m2[1]), 64)
	return r, errors.Join(errs[:]...)
}

// coldLoadKEKs is the number of KEKs BenchmarkColdLoad seals its keys
// under (sealedSet in enclave/internal/keyring/bench_test.go).
const coldLoadKEKs = 4

var coldLoadLine = regexp.MustCompile(`(?m)^BenchmarkColdLoad/keys=(\d+)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// keyringBench runs the keyring's cold-load benchmark and reports it
// against the targets of issue 3.
func keyringBench(rep *report) error {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkColdLoad$", "-benchtime", "3x", "./enclave/internal/keyring")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("keyring benchmark: %v\n%s", err, out)
	}
	ms := coldLoadLine.FindAllSubmatch(out, -1)
	if len(ms) == 0 {
		return fmt.Errorf("keyring benchmark: %w in\n%s", errNoResult, out)
	}
	for _, m := range ms {
		n, _ := strconv.Atoi(string(m[1]))
		v := map[string]float64{}
		f := strings.Fields(string(m[3]))
		for i := 0; i+1 < len(f); i += 2 {
			x, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("keyring benchmark: %q: %w", m[0], err)
			}
			v[f[i+1]] = x
		}
		for _, unit := range []string{"keys/s", "kms-calls", "B/key", "slots-B/key", "max-gc-pause-µs", "p50-gc-pause-µs", "max-gc-stopping-µs", "max-gc-cycle-µs"} {
			if _, ok := v[unit]; !ok {
				return fmt.Errorf("keyring benchmark: %w for %s in %q", errNoResult, unit, m[0])
			}
		}
		secs := float64(n) / v["keys/s"]
		fmt.Printf("  %8d keys: %.3f s (%.0f keys/s, %s runs)  KMS calls %.0f (%d KEKs)  %.1f B/key (slot array %.1f, index %.1f)  with the keys cached (20 forced GCs): pause max %.0f µs, p50 %.0f µs, stopping the world max %.0f µs; longest full collection %.1f ms\n",
			n, secs, v["keys/s"], m[2], v["kms-calls"], coldLoadKEKs, v["B/key"], v["slots-B/key"], v["B/key"]-v["slots-B/key"],
			v["max-gc-pause-µs"], v["p50-gc-pause-µs"], v["max-gc-stopping-µs"], v["max-gc-cycle-µs"]/1e3)
		if n != 1_000_000 {
			continue
		}
		rep.perf("3", "1M keys cold load, in process", fmt.Sprintf("%.2f s (%.0fk keys/s)", secs, v["keys/s"]/1e3), "≤ 2 s", secs <= 2)
		rep.check("3", "1M keys cold load: KMS calls", fmt.Sprintf("%.0f", v["kms-calls"]), fmt.Sprintf("= KEKs (%d)", coldLoadKEKs), v["kms-calls"] == coldLoadKEKs)
		rep.perf("3", "memory per cached key, 1M", fmt.Sprintf("%.1f B", v["B/key"]), "≤ 128 B", v["B/key"] <= 128)
		rep.perf("3", "longest GC pause, 1M keys cached", fmt.Sprintf("%.0f µs", v["max-gc-pause-µs"]), "< 1000 µs", v["max-gc-pause-µs"] < 1000)
	}
	return nil
}
