package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const simPkg = "github.com/nitrosigner/nitrosigner/internal/nsmsim"

// TestNosimBuildExcludesSimulator proves the production build (-tags nosim)
// contains no simulator code: the package is not among the binary's
// dependencies and no symbol of it is linked.
func TestNosimBuildExcludesSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the enclave binary")
	}
	goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	deps := func(tags ...string) string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command(goBin, append(args, ".")...).CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	assert.Contains(t, deps(), simPkg, "normal builds include the simulator")
	assert.NotContains(t, deps("-tags", "nosim"), simPkg)

	bin := filepath.Join(t.TempDir(), "enclave")
	out, err := exec.Command(goBin, "build", "-tags", "nosim", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	syms, err := exec.Command(goBin, "tool", "nm", bin).CombinedOutput()
	require.NoError(t, err)
	assert.NotContains(t, string(syms), "nsmsim")
	assert.Contains(t, string(syms), "enclave/internal/nsm.", "the device adapter is linked")
}

func TestRefusesUnknownNSMMode(t *testing.T) {
	var stderr bytes.Buffer
	assert.Equal(t, 1, run([]string{"--nsm=magic"}, &stderr))
	assert.Contains(t, stderr.String(), `--nsm must be "device" or "sim"`)
}

func TestDeviceModeWithoutDevice(t *testing.T) {
	if _, err := os.Stat("/dev/nsm"); err == nil {
		t.Skip("/dev/nsm exists")
	}
	var stderr bytes.Buffer
	assert.Equal(t, 1, run([]string{"--nsm=device"}, &stderr))
	assert.True(t, strings.Contains(stderr.String(), "/dev/nsm"), stderr.String())
}

func TestYieldCPUFlag(t *testing.T) {
	for _, c := range []struct {
		mode, nsm string
		want      bool
	}{
		{"auto", "sim", true},
		{"auto", "device", false},
		{"on", "device", true},
		{"off", "sim", false},
	} {
		got, err := yieldCPU(c.mode, c.nsm)
		require.NoError(t, err)
		assert.Equal(t, c.want, got, "--yield-cpu=%s --nsm=%s", c.mode, c.nsm)
	}
	var stderr bytes.Buffer
	assert.Equal(t, 2, run([]string{"--nsm=sim", "--yield-cpu=sometimes"}, &stderr))
	assert.Contains(t, stderr.String(), `--yield-cpu must be "auto", "on" or "off", got "sometimes"`)
}
