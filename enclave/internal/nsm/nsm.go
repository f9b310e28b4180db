// Package nsm is the enclave's adapter over the Nitro Security Module, the
// /dev/nsm device of an AWS Nitro Enclave, reached through
// github.com/hf/nsm.
//
// It runs inside the enclave and is the only code that talks to the real
// device. It turns the device's request/response protocol into three
// capabilities: attestation documents ([Device.Attest]), hardware randomness
// ([Device.Read]) and seeding the kernel's entropy pool at start-up
// ([SeedKernelEntropy], done by [Open]).
//
// A [Device] works over any [Session]: *github.com/hf/nsm.Session for the
// real device (see [Open]), or the simulator in internal/nsmsim for tests
// and local runs (see [New]). The choice is made in the composition root;
// this package never imports the simulator outside its tests.
//
// # Errors
//
// Error responses of the device become a [*DeviceError] carrying the NSM
// error code; [ErrInvalidArgument] matches those caused by the caller's
// input. A response of the wrong shape is [ErrBadResponse]. Using a closed
// device gives [ErrClosed].
package nsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hf/nsm"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// DevicePath is the device node of the Nitro Security Module.
const DevicePath = "/dev/nsm"

// MaxAuxSize is the largest nonce, user data or public key an attestation
// document can carry: 1024 bytes each (AWS's CDDL and its on-hardware test
// nsm-check; the 512-byte limits in the prose of the same AWS document are
// not what the device enforces).
const MaxAuxSize = 1024

// EntropySeedSize is the number of NSM random bytes [Open] feeds into the
// kernel's entropy pool.
const EntropySeedSize = 2048

// Errors returned by a [Device].
var (
	// ErrClosed is returned by every method of a closed [Device].
	ErrClosed = errors.New("nsm: device closed")
	// ErrInvalidArgument reports input the device cannot accept, such as an
	// attestation nonce longer than [MaxAuxSize]. A [*DeviceError] with code
	// InvalidArgument or InputTooLarge matches it with [errors.Is].
	ErrInvalidArgument = errors.New("nsm: invalid argument")
	// ErrBadResponse reports a device response without an error code and
	// without the expected result.
	ErrBadResponse = errors.New("nsm: unexpected response from device")
)

// DeviceError is an error response from the NSM.
type DeviceError struct {
	// Op is the request that failed, e.g. "Attestation" or "GetRandom".
	Op string
	// Code is the NSM error code, e.g. "InternalError". Codes are those of
	// the Rust NSM API; "InvalidIndex" has no constant in hf/nsm.
	Code response.ErrorCode
}

// Error implements error.
func (e *DeviceError) Error() string {
	return fmt.Sprintf("nsm: %s: device returned error %s", e.Op, e.Code)
}

// Is reports whether the error matches target; codes InvalidArgument and
// InputTooLarge match [ErrInvalidArgument].
func (e *DeviceError) Is(target error) bool {
	return target == ErrInvalidArgument &&
		(e.Code == response.ECInvalidArgument || e.Code == response.ECInputTooLarge)
}

// Session is a connection to an NSM: one request in, one response out. It
// is satisfied by *github.com/hf/nsm.Session and by
// *internal/nsmsim.Simulator. Send returns a non-nil error only for
// transport failures; device errors arrive in the response's Error field.
type Session interface {
	Send(req request.Request) (response.Response, error)
	Close() error
}

var _ Session = (*nsm.Session)(nil)

// Device is the enclave's handle on the NSM.
//
// A Device is safe for concurrent use: Attest and Read may run in parallel
// (hf/nsm's Send is safe for that), and Close waits for calls in flight and
// makes later ones fail with [ErrClosed] (hf/nsm's Close is not safe against
// concurrent Sends on its own).
type Device struct {
	mu     sync.RWMutex // read-held while a request is in flight, write-held by Close
	s      Session
	closed bool
}

var _ io.Reader = (*Device)(nil)

// Open opens the real device at [DevicePath] and seeds the kernel's entropy
// pool with [EntropySeedSize] bytes from it ([SeedKernelEntropy]), so that
// crypto/rand does not wait for the kernel to gather entropy. Seeding needs
// CAP_SYS_ADMIN, which enclave applications normally have as root. Open
// fails if the device cannot be opened (for example outside an enclave) or
// seeding fails.
func Open() (*Device, error) {
	s, err := nsm.OpenDefaultSession()
	if err != nil {
		// On failure hf/nsm returns a non-nil session whose buffer pools
		// are nil: Send on it would panic. Drop it.
		return nil, fmt.Errorf("open NSM device %s: %w", DevicePath, err)
	}
	d := New(s)
	if err := SeedKernelEntropy(d, EntropySeedSize); err != nil {
		d.Close()
		return nil, fmt.Errorf("open NSM device %s: %w", DevicePath, err)
	}
	return d, nil
}

// New returns a Device over an open session, which must not be nil. The
// Device takes ownership of s and closes it in [Device.Close].
func New(s Session) *Device {
	return &Device{s: s}
}

// send performs one request while holding the read lock.
func (d *Device) send(req request.Request) (response.Response, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return response.Response{}, ErrClosed
	}
	return d.s.Send(req)
}

// Attest asks the NSM for a signed attestation document binding nonce,
// userData and publicKey. Each is optional: nil omits the field (CBOR null
// in the document), a non-nil empty slice includes it empty. Each must be at
// most [MaxAuxSize] bytes, otherwise the error wraps [ErrInvalidArgument]
// and nothing is sent.
//
// ctx is checked before the request is sent; the device call itself cannot
// be interrupted (it takes milliseconds). Errors: ctx.Err(), [ErrClosed],
// [*DeviceError] for an error response, [ErrBadResponse] for a response
// without a document, or the session's transport error, wrapped.
func (d *Device) Attest(ctx context.Context, nonce, userData, publicKey []byte) ([]byte, error) {
	for _, f := range []struct {
		name string
		v    []byte
	}{{"nonce", nonce}, {"user data", userData}, {"public key", publicKey}} {
		if len(f.v) > MaxAuxSize {
			return nil, fmt.Errorf("attest: %s is %d bytes, more than %d: %w", f.name, len(f.v), MaxAuxSize, ErrInvalidArgument)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res, err := d.send(&request.Attestation{UserData: userData, Nonce: nonce, PublicKey: publicKey})
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("attest: %w", err)
	}
	if res.Error != "" {
		return nil, &DeviceError{Op: "Attestation", Code: res.Error}
	}
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		return nil, fmt.Errorf("attest: %w: no document", ErrBadResponse)
	}
	return res.Attestation.Document, nil
}

// Read fills p with random bytes from the NSM (GetRandom, repeated until p
// is full), making the Device an [io.Reader]. It returns len(p) and a nil
// error, or the number of bytes filled before a failure and one of:
// [ErrClosed], [*DeviceError], [ErrBadResponse] (a response without random
// bytes), or the session's transport error, wrapped.
func (d *Device) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		res, err := d.send(&request.GetRandom{})
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return n, err
			}
			return n, fmt.Errorf("get random: %w", err)
		}
		if res.Error != "" {
			return n, &DeviceError{Op: "GetRandom", Code: res.Error}
		}
		if res.GetRandom == nil || len(res.GetRandom.Random) == 0 {
			return n, fmt.Errorf("get random: %w: no random bytes", ErrBadResponse)
		}
		n += copy(p[n:], res.GetRandom.Random)
		clear(res.GetRandom.Random)
	}
	return n, nil
}

// Close waits for requests in flight, then closes the session. Later Attest
// and Read calls return [ErrClosed]. Close is idempotent; only the first call
// can return the session's Close error.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if err := d.s.Close(); err != nil {
		return fmt.Errorf("close NSM session: %w", err)
	}
	return nil
}
