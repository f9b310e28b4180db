//go:build !nosim

package attest_test

import (
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

var simNow = time.Date(2026, 11, 21, 9, 30, 0, 0, time.UTC)

// newSim starts a simulator with a fixed clock. The device path points into
// a temporary directory, so a real /dev/nsm never stops the test.
func newSim(t *testing.T, cfg nsmsim.Config) *nsmsim.Simulator {
	t.Helper()
	cfg.DevicePath = filepath.Join(t.TempDir(), "nsm")
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return simNow }
	}
	sim, err := nsmsim.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	return sim
}

func TestSimulatorDocuments(t *testing.T) {
	image := []byte("enclave binary v1")
	sim := newSim(t, nsmsim.Config{Image: image, InstanceID: "i-0123456789abcdef0"})
	nonce := []byte("fresh nonce")
	userData := []byte("binds the response key")
	pub := []byte("enclave public key")
	doc, err := sim.Attest(t.Context(), nonce, userData, pub)
	require.NoError(t, err)
	bare, err := sim.Attest(t.Context(), nil, nil, nil)
	require.NoError(t, err)

	pcr0, pcr1, pcr2 := nsmsim.MeasureImage(image)
	want := map[int][]byte{0: pcr0, 1: pcr1, 2: pcr2, 4: nsmsim.MeasureInstanceID("i-0123456789abcdef0")}
	other0, _, other2 := nsmsim.MeasureImage([]byte("enclave binary v2"))
	roots := []*x509.Certificate{sim.Root()}

	tests := []struct {
		name    string
		doc     []byte
		opts    attest.Options
		wantErr error
	}{
		{"sim root", doc, attest.Options{Roots: roots, Now: simNow}, nil},
		{"all checks", doc, attest.Options{Roots: roots, Now: simNow, PCRs: want, Nonce: nonce, MaxAge: time.Minute}, nil},
		{"without optional fields", bare, attest.Options{Roots: roots, Now: simNow, PCRs: want}, nil},
		{"default aws root", doc, attest.Options{Now: simNow}, attest.ErrUntrusted},
		{"explicit aws root", doc, attest.Options{Roots: []*x509.Certificate{attest.AWSRoot()}, Now: simNow}, attest.ErrUntrusted},
		{"other image", doc, attest.Options{Roots: roots, Now: simNow, PCRs: map[int][]byte{0: other0, 2: other2}}, attest.ErrPCRMismatch},
		{"wrong nonce", doc, attest.Options{Roots: roots, Now: simNow, Nonce: []byte("old nonce")}, attest.ErrNonceMismatch},
		{"nonce expected but absent", bare, attest.Options{Roots: roots, Now: simNow, Nonce: nonce}, attest.ErrNonceMismatch},
		{"stale", doc, attest.Options{Roots: roots, Now: simNow.Add(10 * time.Minute), MaxAge: 5 * time.Minute}, attest.ErrStale},
		{"leaf expired", doc, attest.Options{Roots: roots, Now: simNow.Add(3*time.Hour + time.Second)}, attest.ErrUntrusted},
		{"before leaf", doc, attest.Options{Roots: roots, Now: simNow.Add(-time.Minute)}, attest.ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := attest.Verify(tt.doc, tt.opts)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, d)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, sim.ModuleID(), d.ModuleID)
			assert.True(t, simNow.Equal(d.Timestamp), "timestamp %v", d.Timestamp)
			assert.Equal(t, sim.PCRs(), d.PCRs)
			assert.False(t, d.Debug())
			assert.Equal(t, sim.Root().Raw, d.CABundle[0].Raw)
		})
	}

	d, err := attest.Verify(doc, attest.Options{Roots: roots, Now: simNow})
	require.NoError(t, err)
	assert.Equal(t, nonce, d.Nonce)
	assert.Equal(t, userData, d.UserData)
	assert.Equal(t, pub, d.PublicKey)
	d, err = attest.Verify(bare, attest.Options{Roots: roots, Now: simNow})
	require.NoError(t, err)
	assert.Nil(t, d.Nonce)
	assert.Nil(t, d.UserData)
	assert.Nil(t, d.PublicKey)
}

func TestSimulatorDebugDocuments(t *testing.T) {
	sim := newSim(t, nsmsim.Config{Debug: true})
	doc, err := sim.Attest(t.Context(), []byte("n"), nil, nil)
	require.NoError(t, err)
	roots := []*x509.Certificate{sim.Root()}

	d, err := attest.Verify(doc, attest.Options{Roots: roots, Now: simNow})
	require.ErrorIs(t, err, attest.ErrDebugMode)
	assert.Nil(t, d)

	d, err = attest.Verify(doc, attest.Options{Roots: roots, Now: simNow, AllowDebug: true})
	require.NoError(t, err)
	assert.True(t, d.Debug())
	assert.Equal(t, make([]byte, 48), d.PCRs[0])
}

// TestSimulatorRootsAreDistinct checks that one simulator's documents do not
// verify against another simulator's root.
func TestSimulatorRootsAreDistinct(t *testing.T) {
	a := newSim(t, nsmsim.Config{Image: []byte("a")})
	b := newSim(t, nsmsim.Config{Image: []byte("a")})
	doc, err := a.Attest(t.Context(), nil, nil, nil)
	require.NoError(t, err)

	_, err = attest.Verify(doc, attest.Options{Roots: []*x509.Certificate{b.Root()}, Now: simNow})
	require.ErrorIs(t, err, attest.ErrUntrusted)
	_, err = attest.Verify(doc, attest.Options{Roots: []*x509.Certificate{b.Root(), a.Root()}, Now: simNow})
	require.NoError(t, err)
}
