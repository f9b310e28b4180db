//go:build !nosim

package nsm_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hf/nitrite"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/enclave/internal/nsm"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

var _ nsm.Session = (*nsmsim.Simulator)(nil)

// newSim starts a simulator with the given fault hook.
func newSim(t *testing.T, fault func(string) response.ErrorCode) *nsmsim.Simulator {
	t.Helper()
	s, err := nsmsim.New(nsmsim.Config{
		Image:      []byte("nsm adapter test image"),
		DevicePath: filepath.Join(t.TempDir(), "no-nsm"),
		Fault:      fault,
	})
	require.NoError(t, err)
	return s
}

// newDevice returns a Device over a fresh simulator.
func newDevice(t *testing.T, fault func(string) response.ErrorCode) (*nsm.Device, *nsmsim.Simulator) {
	t.Helper()
	s := newSim(t, fault)
	d := nsm.New(s)
	t.Cleanup(func() { d.Close() })
	return d, s
}

// failOn returns a fault hook answering code to requests named op.
func failOn(op string, code response.ErrorCode) func(string) response.ErrorCode {
	return func(req string) response.ErrorCode {
		if req == op {
			return code
		}
		return ""
	}
}

// fakeSession answers every request with send.
type fakeSession struct {
	send func(request.Request) (response.Response, error)
}

func (f *fakeSession) Send(req request.Request) (response.Response, error) { return f.send(req) }
func (f *fakeSession) Close() error                                        { return nil }

func TestAttest(t *testing.T) {
	tests := []struct {
		name                       string
		nonce, userData, publicKey []byte
	}{
		{name: "nothing"},
		{name: "nonce", nonce: []byte("0123456789abcdef")},
		{name: "empty fields", nonce: []byte{}, userData: []byte{}, publicKey: []byte{}},
		{name: "maximal fields", nonce: bytes.Repeat([]byte{1}, nsm.MaxAuxSize), userData: bytes.Repeat([]byte{2}, nsm.MaxAuxSize), publicKey: bytes.Repeat([]byte{3}, nsm.MaxAuxSize)},
	}
	d, s := newDevice(t, nil)
	roots := x509.NewCertPool()
	roots.AddCert(s.Root())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := d.Attest(t.Context(), tt.nonce, tt.userData, tt.publicKey)
			require.NoError(t, err)
			res, err := nitrite.Verify(doc, nitrite.VerifyOptions{Roots: roots, CurrentTime: time.Now()})
			require.NoError(t, err)
			assert.Equal(t, s.ModuleID(), res.Document.ModuleID)
			assert.Equal(t, tt.nonce, res.Document.Nonce)
			assert.Equal(t, tt.userData, res.Document.UserData)
			assert.Equal(t, tt.publicKey, res.Document.PublicKey)
		})
	}
}

func TestAttestErrors(t *testing.T) {
	big := make([]byte, nsm.MaxAuxSize+1)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name                       string
		ctx                        context.Context
		fault                      func(string) response.ErrorCode
		nonce, userData, publicKey []byte
		wantErr                    error              // errors.Is target, if set
		wantCode                   response.ErrorCode // DeviceError code, if set
	}{
		{name: "nonce too long", nonce: big, wantErr: nsm.ErrInvalidArgument},
		{name: "user data too long", userData: big, wantErr: nsm.ErrInvalidArgument},
		{name: "public key too long", publicKey: big, wantErr: nsm.ErrInvalidArgument},
		{name: "canceled context", ctx: canceled, wantErr: context.Canceled},
		{name: "device internal error", fault: failOn("Attestation", response.ECInternalError), wantCode: response.ECInternalError},
		{name: "device invalid argument", fault: failOn("Attestation", response.ECInvalidArgument), wantCode: response.ECInvalidArgument, wantErr: nsm.ErrInvalidArgument},
		{name: "device input too large", fault: failOn("Attestation", response.ECInputTooLarge), wantCode: response.ECInputTooLarge, wantErr: nsm.ErrInvalidArgument},
		{name: "device invalid index", fault: failOn("Attestation", nsmsim.CodeInvalidIndex), wantCode: nsmsim.CodeInvalidIndex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := newDevice(t, tt.fault)
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			doc, err := d.Attest(ctx, tt.nonce, tt.userData, tt.publicKey)
			require.Error(t, err)
			assert.Nil(t, doc)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			if tt.wantCode != "" {
				var de *nsm.DeviceError
				require.ErrorAs(t, err, &de)
				assert.Equal(t, tt.wantCode, de.Code)
				assert.Equal(t, "Attestation", de.Op)
			} else {
				assert.False(t, errors.As(err, new(*nsm.DeviceError)))
			}
		})
	}
}

func TestBadResponses(t *testing.T) {
	transport := errors.New("ioctl failed")
	tests := []struct {
		name    string
		send    func(request.Request) (response.Response, error)
		wantErr error
	}{
		{
			name:    "empty response",
			send:    func(request.Request) (response.Response, error) { return response.Response{}, nil },
			wantErr: nsm.ErrBadResponse,
		},
		{
			name: "empty payloads",
			send: func(request.Request) (response.Response, error) {
				return response.Response{Attestation: &response.Attestation{}, GetRandom: &response.GetRandom{Random: []byte{}}}, nil
			},
			wantErr: nsm.ErrBadResponse,
		},
		{
			name:    "transport error",
			send:    func(request.Request) (response.Response, error) { return response.Response{}, transport },
			wantErr: transport,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := nsm.New(&fakeSession{send: tt.send})
			_, err := d.Attest(t.Context(), nil, nil, nil)
			require.ErrorIs(t, err, tt.wantErr)
			n, err := d.Read(make([]byte, 10))
			require.ErrorIs(t, err, tt.wantErr)
			assert.Zero(t, n)
		})
	}
}

func TestRead(t *testing.T) {
	d, _ := newDevice(t, nil)
	for _, size := range []int{0, 1, 255, 256, 257, 1000, 4096} {
		p := make([]byte, size)
		n, err := d.Read(p)
		require.NoError(t, err)
		assert.Equal(t, size, n)
		if size >= 32 {
			assert.NotEqual(t, make([]byte, size), p, "all zero")
		}
	}

	a := make([]byte, 64)
	b := make([]byte, 64)
	_, err := io.ReadFull(d, a)
	require.NoError(t, err)
	_, err = io.ReadFull(d, b)
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
}

func TestReadDeviceError(t *testing.T) {
	d, _ := newDevice(t, failOn("GetRandom", response.ECInternalError))
	n, err := d.Read(make([]byte, 16))
	assert.Zero(t, n)
	var de *nsm.DeviceError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, "GetRandom", de.Op)
	assert.Equal(t, response.ECInternalError, de.Code)
}

// TestReadPartial checks that a failure mid-way reports the bytes filled.
func TestReadPartial(t *testing.T) {
	calls := 0
	d := nsm.New(&fakeSession{send: func(request.Request) (response.Response, error) {
		calls++
		if calls > 2 {
			return response.Response{Error: response.ECInternalError}, nil
		}
		return response.Response{GetRandom: &response.GetRandom{Random: bytes.Repeat([]byte{9}, 100)}}, nil
	}})
	n, err := d.Read(make([]byte, 300))
	assert.Equal(t, 200, n)
	var de *nsm.DeviceError
	require.ErrorAs(t, err, &de)
}

func TestClose(t *testing.T) {
	s := newSim(t, nil)
	d := nsm.New(s)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close())

	_, err := d.Attest(t.Context(), nil, nil, nil)
	require.ErrorIs(t, err, nsm.ErrClosed)
	_, err = d.Read(make([]byte, 1))
	require.ErrorIs(t, err, nsm.ErrClosed)

	// The session was closed too.
	_, err = s.Send(&request.GetRandom{})
	require.ErrorIs(t, err, nsmsim.ErrClosed)
}

func TestConcurrentUse(t *testing.T) {
	s := newSim(t, nil)
	d := nsm.New(s)
	roots := x509.NewCertPool()
	roots.AddCert(s.Root())

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			doc, err := d.Attest(t.Context(), []byte{byte(i)}, nil, nil)
			if !assert.NoError(t, err) {
				return
			}
			_, err = nitrite.Verify(doc, nitrite.VerifyOptions{Roots: roots, CurrentTime: time.Now()})
			assert.NoError(t, err)
		})
		wg.Go(func() {
			_, err := io.ReadFull(d, make([]byte, 1000))
			assert.NoError(t, err)
		})
	}
	wg.Wait()

	// Close while readers run: each call either completes or sees ErrClosed.
	for range 4 {
		wg.Go(func() {
			for {
				if _, err := d.Read(make([]byte, 64)); err != nil {
					assert.ErrorIs(t, err, nsm.ErrClosed)
					return
				}
			}
		})
	}
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, d.Close())
	wg.Wait()
}
