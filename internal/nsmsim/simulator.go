//go:build !nosim

package nsmsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
)

// DefaultDevicePath is the device node of a real NSM.
const DefaultDevicePath = "/dev/nsm"

// Errors returned by the simulator.
var (
	// ErrDevicePresent is returned by [New] when the real NSM device node
	// exists: on an enclave the simulator must never be used.
	ErrDevicePresent = errors.New("nsmsim: real NSM device present; refusing to simulate it")
	// ErrClosed is returned by [Simulator.Send] after [Simulator.Close].
	ErrClosed = errors.New("nsmsim: simulator closed")
)

// DeviceError is returned by [Simulator.Attest] when the simulated device
// answers with an error response.
type DeviceError struct {
	// Code is the NSM error code, e.g. [response.ECInvalidArgument].
	Code response.ErrorCode
}

// Error implements error.
func (e *DeviceError) Error() string {
	return fmt.Sprintf("nsmsim: device returned error %s", e.Code)
}

// Config configures a [Simulator]. The zero value of each optional field
// selects the documented default.
type Config struct {
	// Image is the enclave application image (the enclave binary's bytes).
	// PCR0, PCR1 and PCR2 are derived from it with [MeasureImage], so a
	// changed binary changes PCR0 and PCR2 and a key policy pinned to the
	// old values refuses it. Required unless Debug is set.
	Image []byte

	// Debug simulates an enclave started with --debug-mode: PCR0, PCR1,
	// PCR2 and PCR8 are all zero and PCR4 stays populated, as in real
	// debug-mode documents. PCR3 is zero as well, whatever RoleARN says:
	// an assumption, since PCR3 is zero in the real non-debug documents too,
	// so they cannot tell whether debug mode clears it (nitro-reference §8
	// Q4). Verifiers must reject such documents unless explicitly told
	// otherwise.
	Debug bool

	// InstanceID is the simulated parent instance id, "i-" followed by 17
	// lowercase hex digits. It determines PCR4 ([MeasureInstanceID]) and the
	// module id, which is InstanceID + "-enc" + a 16-hex-digit enclave id
	// chosen per simulator. Like AWS's, the enclave id is the start time
	// ([Config.Now] at [New]) in Unix milliseconds followed by 4 random hex
	// digits; it is unique within the process. Default: a random id.
	InstanceID string

	// RoleARN is the simulated parent's IAM role ARN. PCR3 is
	// [MeasureRoleARN](RoleARN), or zero when RoleARN is empty or Debug is
	// set.
	RoleARN string

	// Region appears in certificate subjects. Default: "us-east-1".
	Region string

	// StateDir, if set, is a directory in which the simulated root CA key
	// and certificate are kept (see [RootKeyFile], mode 0600, and
	// [RootCertFile], readable), so that trust in the root survives
	// restarts and can be shared with verifiers in other processes via
	// [LoadRoot]. Simulators over the same directory share one root. The
	// key file must not be readable by group or others. Empty: the root
	// lives only in memory and is lost on exit.
	StateDir string

	// Now is the clock for document timestamps and certificate validity.
	// Inject it to test expiry. Default: [time.Now].
	Now func() time.Time

	// Rand is the source of GetRandom bytes. A failing reader makes
	// GetRandom return InternalError. Keys are always generated from the
	// system CSPRNG: since Go 1.26 crypto ignores a custom reader (use
	// testing/cryptotest.SetGlobalRandom for determinism). Default:
	// crypto/rand.Reader.
	Rand io.Reader

	// DevicePath is the real device node. [New] refuses to start, with
	// [ErrDevicePresent], when this path exists (or cannot be checked), so
	// the simulator can never stand in for real hardware. Default:
	// [DefaultDevicePath].
	DevicePath string

	// Fault, if set, is called with the name of every well-formed request
	// ("Attestation", "GetRandom", "DescribePCR", ...) before it is
	// processed; a non-empty return value is sent back as the device's
	// error code instead of processing the request. Tests use it to
	// exercise error paths. It runs while the simulator is locked, so it
	// must not call the Simulator.
	Fault func(request string) response.ErrorCode
}

var (
	instanceIDPattern = regexp.MustCompile(`^i-[0-9a-f]{17}$`)
	regionPattern     = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+$`)
)

// Simulator is a software NSM. It is safe for concurrent use; requests are
// processed one at a time. Create it with [New].
type Simulator struct {
	cfg      Config
	moduleID string

	mu     sync.Mutex
	closed bool
	pcrs   pcrBank
	ca     *authority
}

// New validates cfg, applies defaults and starts a simulator with PCR0–15
// locked and measured as described in the package documentation. It returns
// [ErrDevicePresent] when cfg.DevicePath exists, and an error when a required
// field is missing or malformed or the state directory cannot be used.
func New(cfg Config) (*Simulator, error) {
	if cfg.DevicePath == "" {
		cfg.DevicePath = DefaultDevicePath
	}
	if _, err := os.Lstat(cfg.DevicePath); err == nil {
		return nil, fmt.Errorf("%w: %s exists", ErrDevicePresent, cfg.DevicePath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: cannot check %s: %v", ErrDevicePresent, cfg.DevicePath, err)
	}
	if len(cfg.Image) == 0 && !cfg.Debug {
		return nil, errors.New("nsmsim: config: Image is required unless Debug is set")
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "i-" + randomHex(17)
	} else if !instanceIDPattern.MatchString(cfg.InstanceID) {
		return nil, fmt.Errorf("nsmsim: config: InstanceID %q is not \"i-\" followed by 17 lowercase hex digits", cfg.InstanceID)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	} else if !regionPattern.MatchString(cfg.Region) {
		return nil, fmt.Errorf("nsmsim: config: Region %q is not a region name like us-east-1", cfg.Region)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}

	now := cfg.Now()
	enclaveID := newEnclaveID(now)
	s := &Simulator{
		cfg:      cfg,
		moduleID: fmt.Sprintf("%s-enc%016x", cfg.InstanceID, enclaveID),
	}
	s.initPCRs()

	var root *issuer
	var err error
	if cfg.StateDir != "" {
		root, err = loadOrCreateRoot(cfg.StateDir, now)
	} else {
		root, err = newRoot(now)
	}
	if err != nil {
		return nil, fmt.Errorf("nsmsim: root: %w", err)
	}
	s.ca = &authority{
		region:     cfg.Region,
		instanceID: cfg.InstanceID,
		moduleID:   s.moduleID,
		enclaveID:  enclaveID,
		root:       root,
	}
	// Issue the intermediates now so that a broken setup fails here rather
	// than on the first attestation.
	notBefore, notAfter := leafWindow(now)
	if err := s.ca.ensureChain(now, notBefore, notAfter); err != nil {
		return nil, fmt.Errorf("nsmsim: %w", err)
	}
	return s, nil
}

// initPCRs sets the boot-time measurements and locks PCR0–15.
func (s *Simulator) initPCRs() {
	if !s.cfg.Debug {
		pcr0, pcr1, pcr2 := MeasureImage(s.cfg.Image)
		copy(s.pcrs.val[0][:], pcr0)
		copy(s.pcrs.val[1][:], pcr1)
		copy(s.pcrs.val[2][:], pcr2)
		if s.cfg.RoleARN != "" {
			copy(s.pcrs.val[3][:], MeasureRoleARN(s.cfg.RoleARN))
		}
	}
	copy(s.pcrs.val[4][:], MeasureInstanceID(s.cfg.InstanceID))
	for i := range numBootLocked {
		s.pcrs.locked[i] = true
	}
}

// Send performs one NSM request, with the same contract as
// (*github.com/hf/nsm.Session).Send: the request is CBOR-encoded exactly as
// hf/nsm encodes it, processed as raw bytes by the simulated device, and the
// raw response is decoded with hf/nsm's decoder. Device failures come back
// as a response whose Error field is set, with a nil error; the error is
// non-nil only when encoding or decoding fails or the simulator is closed
// ([ErrClosed]). Always check res.Error first.
func (s *Simulator) Send(req request.Request) (response.Response, error) {
	if req == nil {
		return response.Response{}, errors.New("nsmsim: nil request")
	}
	var buf bytes.Buffer
	if err := cbor.NewEncoder(&buf).Encode(req.Encoded()); err != nil {
		return response.Response{}, fmt.Errorf("nsmsim: encode request: %w", err)
	}
	raw, err := s.sendRaw(buf.Bytes())
	if err != nil {
		return response.Response{}, err
	}
	var res response.Response
	if err := cbor.Unmarshal(raw, &res); err != nil {
		return response.Response{}, fmt.Errorf("nsmsim: decode response: %w", err)
	}
	return res, nil
}

// sendRaw hands raw request bytes to the device and returns the raw
// response bytes.
func (s *Simulator) sendRaw(req []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.handle(req), nil
}

// Close closes the simulator. Later calls to Send fail with [ErrClosed].
// Close is idempotent and always returns nil.
func (s *Simulator) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Attest requests an attestation document through [Simulator.Send], like an
// enclave application would. nonce, userData and publicKey are each optional:
// nil omits the field (CBOR null in the document), a non-nil empty slice
// includes it empty. Each must be at most 1024 bytes; the device rejects
// longer ones and Attest returns a [*DeviceError] with code
// [response.ECInvalidArgument]. Any device error response is returned as a
// [*DeviceError]. ctx is checked before the request is sent.
func (s *Simulator) Attest(ctx context.Context, nonce, userData, publicKey []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res, err := s.Send(&request.Attestation{UserData: userData, Nonce: nonce, PublicKey: publicKey})
	if err != nil {
		return nil, err
	}
	if res.Error != "" {
		return nil, &DeviceError{Code: res.Error}
	}
	if res.Attestation == nil || len(res.Attestation.Document) == 0 {
		return nil, errors.New("nsmsim: attestation response without a document")
	}
	return res.Attestation.Document, nil
}

// Root returns the simulated root certificate, the trust anchor to give
// verifiers (for example in nitrite.VerifyOptions.Roots). Each call returns
// a fresh copy.
func (s *Simulator) Root() *x509.Certificate {
	cert, err := x509.ParseCertificate(s.ca.root.cert.Raw)
	if err != nil {
		// The DER was produced or validated by this package.
		panic("nsmsim: reparse root: " + err.Error())
	}
	return cert
}

// PCRs returns copies of the current values of the locked PCRs, keyed by
// index: the set an attestation document would report now.
func (s *Simulator) PCRs() map[int][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pcrs.lockedValues()
}

// ModuleID returns the simulated module id, InstanceID + "-enc" + 16 hex
// digits, as reported by DescribeNSM and in documents.
func (s *Simulator) ModuleID() string { return s.moduleID }
