package nsm_test

import (
	"errors"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/nsm"
	"github.com/nitrosigner/nitrosigner/internal/attest"
)

// requireDevice skips the test unless the real NSM device exists.
func requireDevice(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(nsm.DevicePath); err != nil {
		t.Skipf("no NSM device: %v", err)
	}
}

// TestOpenWithoutDevice checks the error outside an enclave.
func TestOpenWithoutDevice(t *testing.T) {
	if _, err := os.Stat(nsm.DevicePath); err == nil {
		t.Skip("NSM device present")
	}
	d, err := nsm.Open()
	require.Error(t, err)
	assert.Nil(t, d)
	assert.ErrorContains(t, err, nsm.DevicePath)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// TestIntegrationAttest runs against the real device, inside an enclave. The
// document must verify, through the project's one verifier, against the AWS
// root (its default); the enclave may be a debug one.
func TestIntegrationAttest(t *testing.T) {
	requireDevice(t)
	d, err := nsm.Open()
	require.NoError(t, err)
	defer d.Close()

	doc, err := d.Attest(t.Context(), []byte("nonce"), nil, []byte{})
	require.NoError(t, err)
	res, err := attest.Verify(doc, attest.Options{Nonce: []byte("nonce"), MaxAge: time.Minute, AllowDebug: true})
	require.NoError(t, err)
	assert.Nil(t, res.UserData)
	assert.Equal(t, []byte{}, res.PublicKey)

	_, err = d.Attest(t.Context(), make([]byte, nsm.MaxAuxSize), make([]byte, nsm.MaxAuxSize), make([]byte, nsm.MaxAuxSize))
	require.NoError(t, err)
}

// TestIntegrationRead reads hardware randomness.
func TestIntegrationRead(t *testing.T) {
	requireDevice(t)
	d, err := nsm.Open()
	require.NoError(t, err)
	defer d.Close()

	a := make([]byte, 4096)
	b := make([]byte, 4096)
	_, err = d.Read(a)
	require.NoError(t, err)
	_, err = d.Read(b)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	require.NoError(t, d.Close())
	_, err = d.Read(a)
	assert.True(t, errors.Is(err, nsm.ErrClosed))
}
