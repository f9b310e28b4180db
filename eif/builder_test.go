package eif_test

import (
	"bytes"
	"crypto/elliptic"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/eif"
)

var testMetadata = &eif.Metadata{
	ImageName:    "nitrosigner-enclave",
	ImageVersion: "test",
	BuildMetadata: eif.BuildMetadata{
		BuildTime:        "1970-01-01T00:00:00Z",
		BuildTool:        "nitrosigner",
		BuildToolVersion: "test",
		OperatingSystem:  "linux",
	},
}

func build(t *testing.T, cfg eif.BuildConfig) ([]byte, eif.Measurements) {
	t.Helper()
	var buf bytes.Buffer
	m, err := eif.Build(&buf, cfg)
	require.NoError(t, err)
	return buf.Bytes(), m
}

// TestBuildMatchesReference checks that Build lays out exactly the bytes of
// the independent reference encoding, and that its measurements are the
// formulas' and what Parse reads back.
func TestBuildMatchesReference(t *testing.T) {
	cfg := eif.BuildConfig{Kernel: kernel, Cmdline: string(cmdline), Ramdisks: [][]byte{bootstrap, app, app2}, Metadata: testMetadata}
	got, m := build(t, cfg)

	meta, err := json.Marshal(testMetadata)
	require.NoError(t, err)
	want := refEIF(4, 0, []sec{{tKernel, kernel}, {tCmdline, cmdline}, {tMetadata, meta}, {tRamdisk, bootstrap}, {tRamdisk, app}, {tRamdisk, app2}})
	require.Equal(t, len(want), len(got))
	assert.True(t, bytes.Equal(want, got), "Build differs from the reference layout")

	want0, want1, want2 := pcrs(kernel, cmdline, bootstrap, app, app2)
	assert.Equal(t, eif.Measurements{PCR0: want0, PCR1: want1, PCR2: want2}, m)

	img, err := eif.Parse(got)
	require.NoError(t, err)
	assert.Equal(t, m, img.Measurements)
	assert.Equal(t, testMetadata.ImageName, img.Metadata.ImageName)
}

func TestBuildDeterministic(t *testing.T) {
	bin := payload("enclave binary", 200000)
	appRD := func() []byte {
		rd, err := eif.AppRamdisk(eif.App{Path: "/enclave", Binary: bin, Args: []string{"--listen", "vsock://:5000"}, Env: []string{"A=1"}})
		require.NoError(t, err)
		return rd
	}
	cfg := func() eif.BuildConfig {
		return eif.BuildConfig{Kernel: kernel, Cmdline: string(cmdline), Ramdisks: [][]byte{bootstrap, appRD()}, Metadata: testMetadata}
	}
	a, ma := build(t, cfg())
	b, mb := build(t, cfg())
	assert.True(t, bytes.Equal(a, b), "same inputs must give identical bytes")
	assert.Equal(t, ma, mb)

	// An argument is part of the application ramdisk: PCR2 and PCR0 change,
	// PCR1 does not.
	other := cfg()
	rd, err := eif.AppRamdisk(eif.App{Path: "/enclave", Binary: bin, Args: []string{"--listen", "vsock://:5001"}, Env: []string{"A=1"}})
	require.NoError(t, err)
	other.Ramdisks[1] = rd
	_, mo := build(t, other)
	assert.NotEqual(t, ma.PCR0, mo.PCR0)
	assert.Equal(t, ma.PCR1, mo.PCR1)
	assert.NotEqual(t, ma.PCR2, mo.PCR2)

	// Metadata is not measured.
	noMeta := cfg()
	noMeta.Metadata = nil
	c, mc := build(t, noMeta)
	assert.NotEqual(t, len(a), len(c))
	assert.Equal(t, ma, mc)
}

func TestBuildHeader(t *testing.T) {
	got, _ := build(t, eif.BuildConfig{Kernel: []byte("k"), Ramdisks: [][]byte{bootstrap}, AArch64: true, DefaultMemory: 512 << 20, DefaultCPUs: 4})
	img, err := eif.Parse(got)
	require.NoError(t, err)
	assert.Equal(t, "aarch64", img.Arch())
	assert.Equal(t, uint64(512<<20), img.DefaultMemory)
	assert.Equal(t, uint64(4), img.DefaultCPUs)
	assert.Equal(t, uint16(eif.Version), img.Version)
	assert.Empty(t, img.Cmdline)
}

func TestBuildErrors(t *testing.T) {
	s := newSigner(t, elliptic.P384(), time.Now().Add(time.Hour))
	other := newSigner(t, elliptic.P384(), time.Now().Add(time.Hour))
	tests := []struct {
		name    string
		cfg     eif.BuildConfig
		wantMsg string
	}{
		{"no kernel", eif.BuildConfig{Ramdisks: [][]byte{bootstrap}}, "no kernel"},
		{"no ramdisk", eif.BuildConfig{Kernel: kernel}, "no ramdisk"},
		{"NUL in cmdline", eif.BuildConfig{Kernel: kernel, Cmdline: "a\x00b", Ramdisks: [][]byte{bootstrap}}, "NUL"},
		{"key without certificate", eif.BuildConfig{Kernel: kernel, Ramdisks: [][]byte{bootstrap}, Signer: s.key}, "go together"},
		{"certificate of another key", eif.BuildConfig{Kernel: kernel, Ramdisks: [][]byte{bootstrap}, Signer: s.key, Certificate: other.certPEM},
			"does not belong to the signing certificate"},
		{"certificate not PEM", eif.BuildConfig{Kernel: kernel, Ramdisks: [][]byte{bootstrap}, Signer: s.key, Certificate: []byte("nope")},
			"no PEM CERTIFICATE block"},
		{"too many sections", eif.BuildConfig{Kernel: kernel, Ramdisks: slices.Repeat([][]byte{{1}}, 31)},
			"33 sections, more than 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := eif.Build(&buf, tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Zero(t, buf.Len(), "nothing is written on error")
		})
	}
}

// cpioEntry is one entry of a newc archive.
type cpioEntry struct {
	name        string
	mode, nlink uint64
	uid, gid    uint64
	mtime       uint64
	data        []byte
}

// readCpio parses a newc archive independently of the writer: 110-byte
// headers of "070701" and 13 hex fields, names padded to 4 bytes, data
// padded to 4 bytes, up to "TRAILER!!!".
func readCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	pad := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		require.GreaterOrEqual(t, len(b)-off, 110, "header at %d", off)
		h := string(b[off : off+110])
		require.Equal(t, "070701", h[:6], "magic at %d", off)
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 64)
			require.NoError(t, err)
			return v
		}
		namesize, filesize := int(field(11)), int(field(6))
		nameStart := off + 110
		name := string(b[nameStart : nameStart+namesize])
		require.True(t, strings.HasSuffix(name, "\x00"))
		name = strings.TrimSuffix(name, "\x00")
		dataStart := pad(nameStart + namesize)
		e := cpioEntry{name: name, mode: field(1), uid: field(2), gid: field(3), nlink: field(4), mtime: field(5),
			data: b[dataStart : dataStart+filesize]}
		off = pad(dataStart + filesize)
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "nothing after the trailer")
			return out
		}
		out = append(out, e)
	}
}

func TestAppRamdisk(t *testing.T) {
	bin := payload("enclave binary", 1001)
	rd, err := eif.AppRamdisk(eif.App{
		Path:   "/enclave",
		Binary: bin,
		Args:   []string{"--listen", "vsock://:5000", "--kms-key-id", "arn:aws:kms:us-east-1:111122223333:key/x"},
		Env:    []string{"PATH=/", "EMPTY="},
	})
	require.NoError(t, err)
	entries := readCpio(t, rd)

	type summary struct {
		name  string
		mode  uint64
		nlink uint64
		data  string
	}
	var got []summary
	for _, e := range entries {
		assert.Zero(t, e.uid+e.gid+e.mtime, "%s: root-owned, mtime 0", e.name)
		got = append(got, summary{e.name, e.mode, e.nlink, string(e.data)})
	}
	assert.Equal(t, []summary{
		{"cmd", 0o100644, 1, "/enclave\n--listen\nvsock://:5000\n--kms-key-id\narn:aws:kms:us-east-1:111122223333:key/x\n"},
		{"env", 0o100644, 1, "PATH=/\nEMPTY=\n"},
		{"rootfs", 0o40755, 2, ""},
		{"rootfs/dev", 0o40755, 2, ""},
		{"rootfs/proc", 0o40755, 2, ""},
		{"rootfs/run", 0o40755, 2, ""},
		{"rootfs/sys", 0o40755, 2, ""},
		{"rootfs/tmp", 0o40755, 2, ""},
		{"rootfs/var", 0o40755, 2, ""},
		{"rootfs/enclave", 0o100755, 1, string(bin)},
	}, got)

	again, err := eif.AppRamdisk(eif.App{
		Path:   "/enclave",
		Binary: bin,
		Args:   []string{"--listen", "vsock://:5000", "--kms-key-id", "arn:aws:kms:us-east-1:111122223333:key/x"},
		Env:    []string{"PATH=/", "EMPTY="},
	})
	require.NoError(t, err)
	assert.Equal(t, rd, again)
}

func TestAppRamdiskErrors(t *testing.T) {
	bin := []byte{1}
	tests := []struct {
		name    string
		app     eif.App
		wantMsg string
	}{
		{"relative path", eif.App{Path: "enclave", Binary: bin}, "want /NAME"},
		{"nested path", eif.App{Path: "/usr/bin/enclave", Binary: bin}, "want /NAME"},
		{"dot dot", eif.App{Path: "/..", Binary: bin}, "want /NAME"},
		{"empty binary", eif.App{Path: "/enclave"}, "empty"},
		{"newline in argument", eif.App{Path: "/enclave", Binary: bin, Args: []string{"a\nb"}}, "newline"},
		{"carriage return in argument", eif.App{Path: "/enclave", Binary: bin, Args: []string{"a\r"}}, "carriage return"},
		{"environment without =", eif.App{Path: "/enclave", Binary: bin, Env: []string{"A"}}, "want NAME=value"},
		{"environment without name", eif.App{Path: "/enclave", Binary: bin, Env: []string{"=1"}}, "want NAME=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eif.AppRamdisk(tt.app)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}
