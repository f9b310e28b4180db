package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Output of the sign package's test binary, as `make bench` runs it.
const rawOutput = `goos: linux
goarch: amd64
pkg: github.com/nitrosigner/nitrosigner/enclave/internal/sign
cpu: Intel(R) Xeon(R) Processor
BenchmarkSignDigestSecp256k1-2   	   76285	     47119 ns/op	    1704 B/op	      31 allocs/op
BenchmarkRawSignParallel-2       	  141092	     25460 ns/op	     50708 cpu-ns/op
PASS
`

func TestParseRaw(t *testing.T) {
	r, err := parseRaw([]byte(rawOutput))
	require.NoError(t, err)
	assert.Equal(t, rawFigures{perOp: 25460, cpu: 50708, single: 47119}, r)
	assert.InDelta(t, 39277, r.rate(), 1)
}

func TestParseRawRefusesIncompleteOutput(t *testing.T) {
	for name, out := range map[string]string{
		"no CPU metric":  "BenchmarkSignDigestSecp256k1-2 1 47119 ns/op\nBenchmarkRawSignParallel-2 1 25460 ns/op\n",
		"no lone figure": "BenchmarkRawSignParallel-2 1 25460 ns/op 50708 cpu-ns/op\n",
		"a failed run":   "--- FAIL: BenchmarkRawSignParallel\nFAIL\n",
		"one P, not two": "BenchmarkSignDigestSecp256k1 1 47119 ns/op\nBenchmarkRawSignParallel 1 25460 ns/op 50708 cpu-ns/op\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseRaw([]byte(out))
			assert.Error(t, err)
		})
	}
}

func TestParseCPUTimes(t *testing.T) {
	// A /proc/stat line of this VM, with guest time (counted in user
	// already) in the last two fields.
	got := parseCPUTimes("cpu  2255 34 2290 22625563 6290 127 456 7 100 20")
	require.Equal(t, cpuTimes{idle: 22625563 + 6290, total: 2255 + 34 + 2290 + 22625563 + 6290 + 127 + 456 + 7}, got)
	later := cpuTimes{idle: got.idle + 30, total: got.total + 120}
	require.InDelta(t, 0.25, later.idleSince(got), 1e-9)
	require.Equal(t, -1.0, got.idleSince(got), "no time passed: unknown")
	require.Equal(t, cpuTimes{}, parseCPUTimes("cpu0 1 2 3 4 5"), "not the machine's line")
	require.Equal(t, cpuTimes{}, parseCPUTimes("cpu 1 2 x 4 5"))
}

func TestRawMean(t *testing.T) {
	// 20 000 and 30 000 signs/s average to 25 000 signs/s.
	m := rawFigures{perOp: 50e3, cpu: 100e3, single: 48e3}.mean(rawFigures{perOp: 1e9 / 30e3, cpu: 60e3, single: 52e3})
	assert.InDelta(t, 25e3, m.rate(), 1e-6)
	assert.Equal(t, 80e3, m.cpu)
	assert.Equal(t, 50e3, m.single)
}

func TestParseBatched(t *testing.T) {
	// The line `-test.cpu 1` prints (no -N suffix), and the same with one.
	for _, out := range []string{
		"BenchmarkSignDigestsSecp256k1/16         \t    1383\t    897858 ns/op\t     53469 cpu-ns/sig\t   15928 B/op\t     268 allocs/op\n",
		"BenchmarkSignDigestsSecp256k1/16-2 1383 897858 ns/op 53469 cpu-ns/sig\n",
	} {
		v, err := parseBatched([]byte(out))
		require.NoError(t, err)
		assert.InDelta(t, 53469, v, 0.1)
	}
	for _, out := range []string{
		"BenchmarkSignDigestsSecp256k1/8 1 1 ns/op 53469 cpu-ns/sig\n",
		"BenchmarkSignDigestsSecp256k1/16 1383 897858 ns/op\n",
		"FAIL\n",
	} {
		_, err := parseBatched([]byte(out))
		assert.Error(t, err, out)
	}
}

func TestParseAfterIdle(t *testing.T) {
	v, err := parseAfterIdle([]byte("BenchmarkSignDigestAfterIdle-2   \t    1033\t   1169476 ns/op\t     77753 p50-ns/sign\n"))
	require.NoError(t, err)
	assert.InDelta(t, 77753, v, 0.1)
	for _, out := range []string{
		"BenchmarkSignDigestAfterIdle-2 1033 1169476 ns/op\n", // no median: not the time of a signature
		"--- FAIL: BenchmarkSignDigestAfterIdle\nFAIL\n",
	} {
		_, err := parseAfterIdle([]byte(out))
		assert.Error(t, err, out)
	}
}
