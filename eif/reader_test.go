package eif_test

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/eif"
)

var (
	kernel    = payload("kernel", 1<<20+17) // more than one read chunk
	cmdline   = []byte("reboot=k panic=30 pci=off nomodules console=ttyS0 i8042.noaux")
	bootstrap = payload("bootstrap ramdisk", 4099)
	app       = payload("application ramdisk", 70001)
	app2      = payload("second application ramdisk", 123)
	metadata  = []byte(`{"ImageName":"test","ImageVersion":"1","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00Z","BuildTool":"t","BuildToolVersion":"0","OperatingSystem":"linux","KernelVersion":"4.14"},"DockerInfo":null,"CustomMetadata":null}`)
)

func TestParse(t *testing.T) {
	emptyApp := extend(sha384())
	tests := []struct {
		name     string
		version  uint16
		flags    uint16
		secs     []sec
		ramdisks [][]byte
		arch     string
		meta     bool
	}{
		{
			name:     "nitro-cli layout",
			version:  4,
			secs:     []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tMetadata, metadata}, {tRamdisk, bootstrap}, {tRamdisk, app}},
			ramdisks: [][]byte{bootstrap, app},
			arch:     "x86_64",
			meta:     true,
		},
		{
			name:     "three ramdisks, aarch64",
			version:  4,
			flags:    1,
			secs:     []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tMetadata, metadata}, {tRamdisk, bootstrap}, {tRamdisk, app}, {tRamdisk, app2}},
			ramdisks: [][]byte{bootstrap, app, app2},
			arch:     "aarch64",
			meta:     true,
		},
		{
			name:     "version 3 without metadata",
			version:  3,
			secs:     []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tRamdisk, bootstrap}, {tRamdisk, app}},
			ramdisks: [][]byte{bootstrap, app},
			arch:     "x86_64",
		},
		{
			name:     "metadata between ramdisks is not measured",
			version:  4,
			secs:     []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tRamdisk, bootstrap}, {tMetadata, metadata}, {tRamdisk, app}},
			ramdisks: [][]byte{bootstrap, app},
			arch:     "x86_64",
			meta:     true,
		},
		{
			name:     "bootstrap only",
			version:  2,
			secs:     []sec{{tKernel, []byte("k")}, {tCmdline, nil}, {tRamdisk, bootstrap}},
			ramdisks: [][]byte{bootstrap},
			arch:     "x86_64",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := refEIF(tt.version, tt.flags, tt.secs)
			img, err := eif.Parse(file)
			require.NoError(t, err)

			want0, want1, want2 := pcrs(tt.secs[0].data, tt.secs[1].data, tt.ramdisks...)
			assert.Equal(t, hex.EncodeToString(want0), hex.EncodeToString(img.Measurements.PCR0), "PCR0")
			assert.Equal(t, hex.EncodeToString(want1), hex.EncodeToString(img.Measurements.PCR1), "PCR1")
			assert.Equal(t, hex.EncodeToString(want2), hex.EncodeToString(img.Measurements.PCR2), "PCR2")
			assert.Nil(t, img.Measurements.PCR8)
			assert.Nil(t, img.Signature)
			if len(tt.ramdisks) == 1 {
				assert.Equal(t, emptyApp, img.Measurements.PCR2, "no application ramdisk: PCR2 = extend(SHA-384(\"\"))")
			}

			assert.Equal(t, tt.version, img.Version)
			assert.Equal(t, tt.arch, img.Arch())
			assert.Equal(t, uint64(1<<30), img.DefaultMemory)
			assert.Equal(t, uint64(2), img.DefaultCPUs)
			assert.Equal(t, binary.BigEndian.Uint32(file[544:]), img.CRC32)
			assert.Equal(t, string(tt.secs[1].data), img.Cmdline)
			require.Len(t, img.Sections, len(tt.secs))
			off := int64(548)
			for i, s := range tt.secs {
				assert.Equal(t, eif.SectionType(s.typ), img.Sections[i].Type, "section %d", i)
				assert.Equal(t, off, img.Sections[i].Offset, "section %d", i)
				assert.Equal(t, int64(len(s.data)), img.Sections[i].Size, "section %d", i)
				off += 12 + int64(len(s.data))
			}
			if tt.meta {
				require.NotNil(t, img.Metadata)
				assert.Equal(t, "test", img.Metadata.ImageName)
				assert.Equal(t, "4.14", img.Metadata.BuildMetadata.KernelVersion)
			} else {
				assert.Nil(t, img.Metadata)
			}

			// Read over a file gives the same image.
			name := filepath.Join(t.TempDir(), "image.eif")
			require.NoError(t, os.WriteFile(name, file, 0o600))
			f, err := os.Open(name)
			require.NoError(t, err)
			defer f.Close()
			fromFile, err := eif.Read(f, int64(len(file)))
			require.NoError(t, err)
			assert.Equal(t, img, fromFile)
		})
	}
}

// oneByteReaderAt serves at most one byte per ReadAt call, to exercise
// short reads.
type oneByteReaderAt []byte

func (r oneByteReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r)) {
		return 0, errors.New("read past end")
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r[off]
	return 1, nil
}

func TestReadShortReads(t *testing.T) {
	file := refEIF(4, 0, []sec{{tKernel, []byte("kernel")}, {tCmdline, cmdline}, {tRamdisk, bootstrap}})
	_, err := eif.Read(oneByteReaderAt(file), int64(len(file)))
	require.Error(t, err, "a reader returning short reads without error is not trusted")
	assert.NotErrorIs(t, err, eif.ErrFormat)
}

func TestParseErrors(t *testing.T) {
	good := func() []byte {
		return refEIF(4, 0, []sec{{tKernel, []byte("kernel")}, {tCmdline, cmdline}, {tMetadata, metadata}, {tRamdisk, bootstrap}, {tRamdisk, app}})
	}
	// Offsets in good(): header 548; kernel header at 548, payload 560..566;
	// cmdline header 566.
	ramdisk1 := int64(len(good())) - int64(len(app)) - 12 // header of the last ramdisk
	set16 := func(off int, v uint16) func() []byte {
		return func() []byte { b := good(); binary.BigEndian.PutUint16(b[off:], v); return fixCRC(b) }
	}
	set64 := func(off int, v uint64) func() []byte {
		return func() []byte { b := good(); binary.BigEndian.PutUint64(b[off:], v); return fixCRC(b) }
	}
	tests := []struct {
		name    string
		file    func() []byte
		wantErr error
		wantMsg string
	}{
		{"payload byte flipped", func() []byte { b := good(); b[len(b)-100] ^= 1; return b }, eif.ErrChecksum, "the file is corrupted"},
		{"header byte flipped", func() []byte { b := good(); b[9] ^= 0x80; return b }, eif.ErrChecksum, ""},
		{"CRC field changed", func() []byte { b := good(); b[547] ^= 1; return b }, eif.ErrChecksum, "the header says CRC-32"},
		{"unused field changed", func() []byte { b := good(); b[540] = 1; return b }, eif.ErrChecksum, ""},
		{"last section cut short", func() []byte { b := good(); return b[:len(b)-1] }, eif.ErrTruncated,
			"section 4 (ramdisk) is 70001 bytes but only 70000 remain"},
		{"cut inside a section header", func() []byte { return good()[:ramdisk1+5] }, eif.ErrTruncated,
			"inside the header of section 4"},
		{"cut inside the EIF header", func() []byte { return good()[:300] }, eif.ErrTruncated, "300 bytes, shorter than the 548-byte EIF header"},
		{"empty file", func() []byte { return nil }, eif.ErrTruncated, ""},
		{"bad magic", func() []byte { b := good(); b[1] = 'E'; return fixCRC(b) }, eif.ErrFormat, "not an EIF file"},
		{"version 1", set16(4, 1), eif.ErrFormat, "version 1 has no checksum"},
		{"no sections", set16(26, 0), eif.ErrFormat, "0 sections"},
		{"33 sections", set16(26, 33), eif.ErrFormat, "33 sections"},
		{"offset disagrees", set64(28+8, 567), eif.ErrFormat, "section 1 starts at offset 566 but the header says 567"},
		{"size disagrees", set64(28+256+8*4, 7), eif.ErrFormat, "section 4 (ramdisk) header says 70001 bytes but the EIF header says 7"},
		{"unused slot set", set64(28+8*31, 1), eif.ErrFormat, "unused section slot 31"},
		{"unknown section type", set16(int(ramdisk1), 6), eif.ErrFormat, "section 4 has unknown type 6"},
		{"invalid section type", set16(548, 0), eif.ErrFormat, "section 0 has unknown type 0"},
		{"trailing bytes", func() []byte { return fixCRC(append(good(), 0, 0, 0)) }, eif.ErrFormat, "3 bytes after the last section"},
		{"kernel not first", func() []byte {
			return refEIF(4, 0, []sec{{tCmdline, cmdline}, {tKernel, kernel}, {tRamdisk, bootstrap}})
		}, eif.ErrFormat, "section 0 is cmdline, want kernel"},
		{"cmdline not second", func() []byte {
			return refEIF(4, 0, []sec{{tKernel, kernel}, {tRamdisk, bootstrap}, {tCmdline, cmdline}})
		}, eif.ErrFormat, "section 1 is missing or not the cmdline"},
		{"kernel only", func() []byte { return refEIF(4, 0, []sec{{tKernel, kernel}}) }, eif.ErrFormat, "section 1 is missing"},
		{"no ramdisk", func() []byte { return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}}) }, eif.ErrFormat, "no ramdisk"},
		{"two kernels", func() []byte {
			return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tKernel, kernel}, {tRamdisk, bootstrap}})
		}, eif.ErrFormat, "2 kernel and 1 cmdline"},
		{"two metadata", func() []byte {
			return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tMetadata, metadata}, {tMetadata, metadata}, {tRamdisk, bootstrap}})
		}, eif.ErrFormat, "2 metadata and 0 signature"},
		{"metadata not JSON", func() []byte {
			return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tMetadata, []byte("{")}, {tRamdisk, bootstrap}})
		}, eif.ErrFormat, "metadata section is not the expected JSON object"},
		{"signature not CBOR", func() []byte {
			return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tRamdisk, bootstrap}, {tSignature, []byte{0xff}}})
		}, eif.ErrSignature, "not a CBOR array of PCR signatures"},
		{"signature without certificate", func() []byte {
			sig := []byte{0x81, 0xa1, 0x69}
			sig = append(sig, "signature"...)
			sig = append(sig, 0x41, 0x00)
			return refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tRamdisk, bootstrap}, {tSignature, sig}})
		}, eif.ErrSignature, "lacks signing_certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := eif.Parse(tt.file())
			require.ErrorIs(t, err, tt.wantErr)
			assert.Nil(t, img)
			assert.Contains(t, err.Error(), tt.wantMsg)
			for _, other := range []error{eif.ErrFormat, eif.ErrTruncated, eif.ErrChecksum, eif.ErrSignature} {
				if other != tt.wantErr {
					assert.NotErrorIs(t, err, other)
				}
			}
		})
	}
}

// TestPCR3PCR4 checks the role and instance measurements against the
// examples of the AWS Nitro Enclaves User Guide ("Where to get an enclave's
// measurements", sections PCR3 and PCR4) and against a real attestation
// document (shared/testdata/nitro/att_blocky_2024-09-07.cbor, whose module
// id names instance i-0a22e5c5f24d22174).
func TestPCR3PCR4(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"AWS guide PCR3", eif.PCR3("arn:aws:iam::123456789012:role/Webserver"),
			"78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6"},
		{"AWS guide PCR4", eif.PCR4("i-1234567890abcdef0"),
			"08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0"},
		{"real attestation document PCR4", eif.PCR4("i-0a22e5c5f24d22174"),
			"45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, hex.EncodeToString(tt.got))
		})
	}
}

func TestMeasure(t *testing.T) {
	m := eif.Measure(kernel, string(cmdline), bootstrap, app, app2)
	want0, want1, want2 := pcrs(kernel, cmdline, bootstrap, app, app2)
	assert.Equal(t, want0, m.PCR0)
	assert.Equal(t, want1, m.PCR1)
	assert.Equal(t, want2, m.PCR2)
	assert.Nil(t, m.PCR8)

	// Concatenation, not per-section hashing: moving bytes between the
	// application ramdisks keeps PCR0 and PCR2.
	moved := eif.Measure(kernel, string(cmdline), bootstrap, append(append([]byte{}, app...), app2[:1]...), app2[1:])
	assert.Equal(t, m.PCR0, moved.PCR0)
	assert.Equal(t, m.PCR2, moved.PCR2)

	j, err := json.Marshal(map[string]any{"Measurements": m.NitroCLI()})
	require.NoError(t, err)
	assert.JSONEq(t, `{"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"`+hex.EncodeToString(want0)+
		`","PCR1":"`+hex.EncodeToString(want1)+`","PCR2":"`+hex.EncodeToString(want2)+`"}}`, string(j))
}

func TestSectionTypeString(t *testing.T) {
	assert.Equal(t, "kernel", eif.SectionKernel.String())
	assert.Equal(t, "signature", eif.SectionSignature.String())
	assert.Equal(t, "type 9", eif.SectionType(9).String())
}
