//go:build !nosim

package nsmsim_test

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nsm/request"
	"github.com/hf/nsm/response"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

var moduleIDPattern = regexp.MustCompile(`^i-[0-9a-f]{17}-enc[0-9a-f]{16}$`)

func TestNew(t *testing.T) {
	present := filepath.Join(t.TempDir(), "nsm")
	require.NoError(t, os.WriteFile(present, nil, 0o600))

	tests := []struct {
		name    string
		cfg     nsmsim.Config
		wantErr error  // checked with errors.Is when set
		errText string // substring of the error when set
	}{
		{name: "defaults", cfg: nsmsim.Config{Image: testImage}},
		{name: "debug without image", cfg: nsmsim.Config{Debug: true}},
		{name: "explicit fields", cfg: nsmsim.Config{Image: testImage, InstanceID: "i-0a22e5c5f24d22174", RoleARN: "arn:aws:iam::123456789012:role/Signer", Region: "eu-central-1"}},
		{name: "missing image", cfg: nsmsim.Config{}, errText: "Image is required"},
		{name: "short instance id", cfg: nsmsim.Config{Image: testImage, InstanceID: "i-1234"}, errText: "InstanceID"},
		{name: "uppercase instance id", cfg: nsmsim.Config{Image: testImage, InstanceID: "i-0A22E5C5F24D22174"}, errText: "InstanceID"},
		{name: "bad region", cfg: nsmsim.Config{Image: testImage, Region: "US East"}, errText: "Region"},
		{name: "real device present", cfg: nsmsim.Config{Image: testImage, DevicePath: present}, wantErr: nsmsim.ErrDevicePresent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.DevicePath == "" {
				cfg.DevicePath = absentDevice(t)
			}
			s, err := nsmsim.New(cfg)
			switch {
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
				assert.Nil(t, s)
			case tt.errText != "":
				require.ErrorContains(t, err, tt.errText)
				assert.Nil(t, s)
			default:
				require.NoError(t, err)
				t.Cleanup(func() { s.Close() })
				assert.Regexp(t, moduleIDPattern, s.ModuleID())
				if cfg.InstanceID != "" {
					assert.Equal(t, cfg.InstanceID, s.ModuleID()[:19])
				}
				assert.True(t, s.Root().IsCA)
			}
		})
	}
}

func TestDescribeNSM(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	res, err := s.Send(&request.DescribeNSM{})
	require.NoError(t, err)
	require.Empty(t, res.Error)
	require.NotNil(t, res.DescribeNSM)
	d := res.DescribeNSM
	assert.Equal(t, uint16(32), d.MaxPCRs)
	assert.Equal(t, s.ModuleID(), d.ModuleID)
	assert.Equal(t, response.DigestSHA384, d.Digest)
	assert.Equal(t, uint16(1), d.VersionMajor)
	assert.Equal(t, []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, d.LockedPCRs)
}

// TestPCRErrors checks the error code of each invalid PCR operation on a
// freshly started device.
func TestPCRErrors(t *testing.T) {
	tests := []struct {
		name string
		req  request.Request
		want response.ErrorCode
	}{
		{"extend locked PCR0", &request.ExtendPCR{Index: 0, Data: []byte("x")}, response.ECReadOnlyIndex},
		{"extend locked PCR15", &request.ExtendPCR{Index: 15, Data: []byte("x")}, response.ECReadOnlyIndex},
		{"extend index 32", &request.ExtendPCR{Index: 32, Data: []byte("x")}, nsmsim.CodeInvalidIndex},
		{"extend index 65535", &request.ExtendPCR{Index: 65535, Data: []byte("x")}, nsmsim.CodeInvalidIndex},
		{"describe index 32", &request.DescribePCR{Index: 32}, nsmsim.CodeInvalidIndex},
		{"lock locked PCR3", &request.LockPCR{Index: 3}, response.ECReadOnlyIndex},
		{"lock index 40", &request.LockPCR{Index: 40}, nsmsim.CodeInvalidIndex},
		{"lock range 33", &request.LockPCRs{Range: 33}, nsmsim.CodeInvalidIndex},
		{"request too large", &request.ExtendPCR{Index: 16, Data: make([]byte, nsmsim.MaxRequestSize)}, response.ECInputTooLarge},
	}
	// Failed requests change no state, so the cases share one device.
	s := newSim(t, nsmsim.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Send(tt.req)
			require.NoError(t, err)
			assert.Equal(t, tt.want, res.Error)
		})
	}
}

func TestExtendAndLockPCR(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	zero := make([]byte, 48)

	res, err := s.Send(&request.DescribePCR{Index: 16})
	require.NoError(t, err)
	require.NotNil(t, res.DescribePCR)
	assert.False(t, res.DescribePCR.Lock)
	assert.Equal(t, zero, res.DescribePCR.Data)

	want := zero
	for _, data := range [][]byte{[]byte("config-v1"), {}, bytes.Repeat([]byte{7}, 1000)} {
		h := sha512.Sum384(append(append([]byte{}, want...), data...))
		want = h[:]
		res, err = s.Send(&request.ExtendPCR{Index: 16, Data: data})
		require.NoError(t, err)
		require.Empty(t, res.Error)
		require.NotNil(t, res.ExtendPCR)
		assert.Equal(t, want, res.ExtendPCR.Data)
	}

	res, err = s.Send(&request.LockPCR{Index: 16})
	require.NoError(t, err)
	require.Empty(t, res.Error)
	assert.NotNil(t, res.LockPCR)

	res, err = s.Send(&request.DescribePCR{Index: 16})
	require.NoError(t, err)
	assert.True(t, res.DescribePCR.Lock)
	assert.Equal(t, want, res.DescribePCR.Data)

	res, err = s.Send(&request.ExtendPCR{Index: 16, Data: []byte("late")})
	require.NoError(t, err)
	assert.Equal(t, response.ECReadOnlyIndex, res.Error)

	pcrs := s.PCRs()
	assert.Len(t, pcrs, 17)
	assert.Equal(t, want, pcrs[16])

	// LockPCRs locks [0, range), including already locked registers.
	res, err = s.Send(&request.LockPCRs{Range: 32})
	require.NoError(t, err)
	require.Empty(t, res.Error)
	assert.NotNil(t, res.LockPCRs)
	assert.Len(t, s.PCRs(), 32)
	res, err = s.Send(&request.DescribeNSM{})
	require.NoError(t, err)
	assert.Len(t, res.DescribeNSM.LockedPCRs, 32)
}

func TestGetRandom(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	seen := map[string]bool{}
	for range 4 {
		res, err := s.Send(&request.GetRandom{})
		require.NoError(t, err)
		require.Empty(t, res.Error)
		require.NotNil(t, res.GetRandom)
		require.Len(t, res.GetRandom.Random, nsmsim.RandomChunkSize)
		assert.False(t, seen[string(res.GetRandom.Random)], "repeated random bytes")
		seen[string(res.GetRandom.Random)] = true
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("entropy source failed") }

func TestFaults(t *testing.T) {
	tests := []struct {
		name string
		cfg  nsmsim.Config
		req  request.Request
		want response.ErrorCode
	}{
		{
			name: "failing random source",
			cfg:  nsmsim.Config{Rand: failingReader{}},
			req:  &request.GetRandom{},
			want: response.ECInternalError,
		},
		{
			name: "fault hook on attestation",
			cfg: nsmsim.Config{Fault: func(req string) response.ErrorCode {
				if req == "Attestation" {
					return response.ECInternalError
				}
				return ""
			}},
			req:  &request.Attestation{},
			want: response.ECInternalError,
		},
		{
			name: "fault hook leaves other requests alone",
			cfg: nsmsim.Config{Fault: func(req string) response.ErrorCode {
				if req == "Attestation" {
					return response.ECInternalError
				}
				return ""
			}},
			req: &request.GetRandom{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.cfg)
			res, err := s.Send(tt.req)
			require.NoError(t, err)
			assert.Equal(t, tt.want, res.Error)
		})
	}
}

// TestRequestWireFormat pins the bytes hf/nsm produces for each request to
// the serde encoding in nitro-reference §2.2, which is what the simulated
// device parses.
func TestRequestWireFormat(t *testing.T) {
	text := func(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		req  request.Request
		want []byte
	}{
		{"GetRandom", &request.GetRandom{}, text("GetRandom")},
		{"DescribeNSM", &request.DescribeNSM{}, text("DescribeNSM")},
		{"DescribePCR", &request.DescribePCR{Index: 16}, cat([]byte{0xa1}, text("DescribePCR"), []byte{0xa1}, text("index"), []byte{0x10})},
		{"ExtendPCR", &request.ExtendPCR{Index: 16, Data: []byte{1}}, cat([]byte{0xa1}, text("ExtendPCR"), []byte{0xa2}, text("index"), []byte{0x10}, text("data"), []byte{0x41, 1})},
		{"LockPCR", &request.LockPCR{Index: 16}, cat([]byte{0xa1}, text("LockPCR"), []byte{0xa1}, text("index"), []byte{0x10})},
		{"LockPCRs", &request.LockPCRs{Range: 32}, cat([]byte{0xa1}, text("LockPCRs"), []byte{0xa1}, text("range"), []byte{0x18, 0x20})},
		{"Attestation nil fields", &request.Attestation{}, cat([]byte{0xa1}, text("Attestation"), []byte{0xa3}, text("user_data"), []byte{0xf6}, text("nonce"), []byte{0xf6}, text("public_key"), []byte{0xf6})},
		{"Attestation empty fields", &request.Attestation{UserData: []byte{}, Nonce: []byte{}, PublicKey: []byte{}}, cat([]byte{0xa1}, text("Attestation"), []byte{0xa3}, text("user_data"), []byte{0x40}, text("nonce"), []byte{0x40}, text("public_key"), []byte{0x40})},
	}
	s := newSim(t, nsmsim.Config{}) // the cases run in an order the device accepts
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cbor.Marshal(tt.req.Encoded())
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)

			// The device accepts exactly these bytes.
			raw, err := s.SendRaw(got)
			require.NoError(t, err)
			var res response.Response
			require.NoError(t, cbor.Unmarshal(raw, &res))
			assert.Empty(t, res.Error)
		})
	}
}

// TestMalformedRequests feeds raw bytes to the device.
func TestMalformedRequests(t *testing.T) {
	enc := func(v any) []byte {
		b, err := cbor.Marshal(v)
		require.NoError(t, err)
		return b
	}
	tests := []struct {
		name string
		raw  []byte
		want response.ErrorCode // "" = success
	}{
		{"empty", nil, response.ECInvalidOperation},
		{"not CBOR", []byte{0xff, 0x00}, response.ECInvalidOperation},
		{"truncated", enc(map[string]any{"DescribePCR": map[string]any{"index": 1}})[:10], response.ECInvalidOperation},
		{"trailing bytes", append(enc("GetRandom"), 0x00), response.ECInvalidOperation},
		{"unknown unit request", enc("Reboot"), response.ECInvalidOperation},
		{"unknown struct request", enc(map[string]any{"Reboot": map[string]any{}}), response.ECInvalidOperation},
		{"integer", enc(5), response.ECInvalidOperation},
		{"two variants", enc(map[string]any{"GetRandom": nil, "DescribeNSM": nil}), response.ECInvalidOperation},
		{"struct variant as string", enc("DescribePCR"), response.ECInvalidOperation},
		{"struct variant with null body", enc(map[string]any{"DescribePCR": nil}), response.ECInvalidOperation},
		{"struct variant with array body", enc(map[string]any{"DescribePCR": []any{1}}), response.ECInvalidOperation},
		{"unit variant with body", enc(map[string]any{"GetRandom": map[string]any{}}), response.ECInvalidOperation},
		{"unit variant in map form", enc(map[string]any{"GetRandom": nil}), ""},
		{"missing index", enc(map[string]any{"DescribePCR": map[string]any{}}), response.ECInvalidArgument},
		{"negative index", enc(map[string]any{"DescribePCR": map[string]any{"index": -1}}), response.ECInvalidArgument},
		{"index beyond u16", enc(map[string]any{"DescribePCR": map[string]any{"index": 70000}}), response.ECInvalidArgument},
		{"index as text", enc(map[string]any{"DescribePCR": map[string]any{"index": "1"}}), response.ECInvalidArgument},
		{"unknown field ignored", enc(map[string]any{"DescribePCR": map[string]any{"index": 1, "extra": true}}), ""},
		{"extend data as text", enc(map[string]any{"ExtendPCR": map[string]any{"index": 16, "data": "x"}}), response.ECInvalidArgument},
		{"extend without data", enc(map[string]any{"ExtendPCR": map[string]any{"index": 16}}), response.ECInvalidArgument},
		{"attestation nonce as int", enc(map[string]any{"Attestation": map[string]any{"nonce": 5}}), response.ECInvalidArgument},
		{"attestation fields absent", enc(map[string]any{"Attestation": map[string]any{}}), ""},
		{"attestation nonce too long", enc(map[string]any{"Attestation": map[string]any{"nonce": make([]byte, 1025)}}), response.ECInvalidArgument},
		{"duplicate key", append([]byte{0xa2}, append(enc("GetRandom"), append(enc("GetRandom"), 0xf6)...)...), response.ECInvalidOperation},
		{"too large", enc(map[string]any{"ExtendPCR": map[string]any{"index": 16, "data": make([]byte, 4096)}}), response.ECInputTooLarge},
	}
	s := newSim(t, nsmsim.Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := s.SendRaw(tt.raw)
			require.NoError(t, err)
			var res response.Response
			require.NoError(t, cbor.Unmarshal(raw, &res))
			assert.Equal(t, tt.want, res.Error)
		})
	}
}

func TestClose(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err := s.Send(&request.GetRandom{})
	require.ErrorIs(t, err, nsmsim.ErrClosed)
	_, err = s.Attest(t.Context(), nil, nil, nil)
	require.ErrorIs(t, err, nsmsim.ErrClosed)
}

func TestSendNilRequest(t *testing.T) {
	s := newSim(t, nsmsim.Config{})
	_, err := s.Send(nil)
	require.Error(t, err)
}
