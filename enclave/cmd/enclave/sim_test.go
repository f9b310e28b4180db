//go:build !nosim

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// On a host with a real NSM, --nsm=sim is refused: a build with the
// simulator must not attest as a simulated enclave where the real one exists.
func TestSimulatorRefusedWhereDeviceExists(t *testing.T) {
	dir := t.TempDir()
	device := filepath.Join(dir, "nsm")
	old := nsmDevicePath
	t.Cleanup(func() { nsmDevicePath = old })

	nsmDevicePath = filepath.Join(dir, "absent")
	_, closer, err := newSimulator(simFlags{stateDir: filepath.Join(dir, "state")})
	require.NoError(t, err, "without the device the simulator starts")
	require.NoError(t, closer.Close())

	require.NoError(t, os.WriteFile(device, nil, 0o600))
	nsmDevicePath = device
	_, _, err = newSimulator(simFlags{stateDir: filepath.Join(dir, "state")})
	require.ErrorIs(t, err, nsmsim.ErrDevicePresent)

	var stderr bytes.Buffer
	assert.Equal(t, 1, run([]string{"--nsm=sim", "--sim-state", filepath.Join(dir, "state")}, &stderr))
	assert.Contains(t, stderr.String(), device+" exists")
}
