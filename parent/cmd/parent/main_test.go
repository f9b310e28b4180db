package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestProxyProcs(t *testing.T) {
	tests := []struct{ flag, available, want int }{
		{0, 1, 1},
		{0, 2, 1},
		{0, 3, 1},
		{0, 8, 4},
		{3, 8, 3},
		{16, 2, 16},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, proxyProcs(tt.flag, tt.available), "flag %d, %d CPUs", tt.flag, tt.available)
	}
}

func TestNegativeProcs(t *testing.T) {
	var stderr strings.Builder
	assert.Equal(t, 2, run([]string{"--procs", "-1"}, &stderr))
	assert.Contains(t, stderr.String(), "--procs must be 0")
}

func TestBadHealthInterval(t *testing.T) {
	for _, v := range []string{"0s", "-1s", "99ms"} {
		var stderr strings.Builder
		assert.Equal(t, 2, run([]string{"--health-interval", v}, &stderr))
		assert.Contains(t, stderr.String(), "--health-interval must be at least 100ms")
	}
}

// TestRunErrorNamedOnce: an error from parent.Run is printed with one
// "parent: " prefix, not two.
func TestRunErrorNamedOnce(t *testing.T) {
	var stderr strings.Builder
	assert.Equal(t, 1, run([]string{"--listen", "tcp://192.0.2.1:50051", "--credentials", "none"}, &stderr))
	assert.True(t, strings.HasPrefix(stderr.String(), "parent: refusing plaintext gRPC"), stderr.String())
	assert.NotContains(t, stderr.String(), "parent: parent:")
}
