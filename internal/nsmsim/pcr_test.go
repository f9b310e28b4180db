//go:build !nosim

package nsmsim_test

import (
	"crypto/sha512"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// realPCR4 is PCR4 of the real document in testdata, whose parent instance
// is i-0a22e5c5f24d22174.
const realPCR4 = "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44"

func TestMeasureInstanceIDMatchesRealDocument(t *testing.T) {
	const instanceID = "i-0a22e5c5f24d22174"
	assert.Equal(t, realPCR4, hex.EncodeToString(nsmsim.MeasureInstanceID(instanceID)))

	// The value above is really the document's PCR4, and its module id
	// names that instance.
	raw, err := os.ReadFile(realDocPath)
	require.NoError(t, err)
	res, err := verify(t, raw, nil, time.UnixMilli(1725719859545))
	require.NoError(t, err, "real document against the AWS root at its timestamp")
	assert.Equal(t, realPCR4, hex.EncodeToString(res.Document.PCRs[4]))
	assert.Equal(t, instanceID, res.Document.ModuleID[:19])

	// And the simulator reports it.
	s := newSim(t, nsmsim.Config{InstanceID: instanceID})
	assert.Equal(t, realPCR4, hex.EncodeToString(s.PCRs()[4]))
}

// TestMeasureStrings checks PCR3/PCR4 against the samples in the AWS user
// guide (only their first and last bytes are recorded in the reference).
func TestMeasureStrings(t *testing.T) {
	tests := []struct {
		name         string
		got          []byte
		prefix, tail string
	}{
		{"PCR3 of a role ARN", nsmsim.MeasureRoleARN("arn:aws:iam::123456789012:role/Webserver"), "78fce75d", "21e6"},
		{"PCR4 of an instance id", nsmsim.MeasureInstanceID("i-1234567890abcdef0"), "08f996b5", "9ce0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hex.EncodeToString(tt.got)
			require.Len(t, h, 96)
			assert.Equal(t, tt.prefix, h[:len(tt.prefix)])
			assert.Equal(t, tt.tail, h[len(h)-len(tt.tail):])
		})
	}
}

func TestMeasure(t *testing.T) {
	extend := func(x []byte) []byte {
		h := sha512.Sum384(append(make([]byte, 48), x...))
		return h[:]
	}
	sum := func(parts ...string) []byte {
		h := sha512.New384()
		for _, p := range parts {
			h.Write([]byte(p))
		}
		return h.Sum(nil)
	}
	pcr0, pcr1, pcr2 := nsmsim.Measure([]byte("K"), []byte("C"), []byte("B"), []byte("APP"))
	assert.Equal(t, extend(sum("K", "C", "B", "APP")), pcr0)
	assert.Equal(t, extend(sum("K", "C", "B")), pcr1)
	assert.Equal(t, extend(sum("APP")), pcr2)
}

func TestSimulatorPCRs(t *testing.T) {
	const (
		instanceID = "i-0123456789abcdef0"
		role       = "arn:aws:iam::123456789012:role/Signer"
	)
	zero := make([]byte, 48)
	img0, img1, img2 := nsmsim.MeasureImage(testImage)

	tests := []struct {
		name string
		cfg  nsmsim.Config
		want map[int][]byte // PCRs that must have these values; all other locked PCRs are zero
	}{
		{
			name: "production",
			cfg:  nsmsim.Config{Image: testImage, InstanceID: instanceID},
			want: map[int][]byte{0: img0, 1: img1, 2: img2, 4: nsmsim.MeasureInstanceID(instanceID)},
		},
		{
			name: "with role",
			cfg:  nsmsim.Config{Image: testImage, InstanceID: instanceID, RoleARN: role},
			want: map[int][]byte{0: img0, 1: img1, 2: img2, 3: nsmsim.MeasureRoleARN(role), 4: nsmsim.MeasureInstanceID(instanceID)},
		},
		{
			name: "debug zeroes PCR0-3 and keeps PCR4",
			cfg:  nsmsim.Config{Image: testImage, Debug: true, InstanceID: instanceID, RoleARN: role},
			want: map[int][]byte{4: nsmsim.MeasureInstanceID(instanceID)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.cfg)
			pcrs := s.PCRs()
			require.Len(t, pcrs, 16)
			for i := range 16 {
				want, ok := tt.want[i]
				if !ok {
					want = zero
				}
				assert.Equal(t, want, pcrs[i], "PCR%d", i)
			}

			// The document reports the same values.
			doc, err := s.Attest(t.Context(), nil, nil, nil)
			require.NoError(t, err)
			res, err := verify(t, doc, s.Root(), time.Now())
			require.NoError(t, err)
			for i, v := range pcrs {
				assert.Equal(t, v, res.Document.PCRs[uint(i)], "document PCR%d", i)
			}
		})
	}
}

func TestChangedImage(t *testing.T) {
	a0, a1, a2 := nsmsim.MeasureImage(testImage)
	changed := append([]byte{}, testImage...)
	changed[len(changed)-1] ^= 1
	b0, b1, b2 := nsmsim.MeasureImage(changed)
	assert.NotEqual(t, a0, b0, "PCR0 must change with the image")
	assert.Equal(t, a1, b1, "PCR1 measures only kernel, cmdline and bootstrap")
	assert.NotEqual(t, a2, b2, "PCR2 must change with the image")

	s := newSim(t, nsmsim.Config{Image: changed})
	assert.Equal(t, b0, s.PCRs()[0])
	assert.Equal(t, b2, s.PCRs()[2])
}
