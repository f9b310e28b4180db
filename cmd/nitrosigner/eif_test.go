package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"hash/crc32"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/eif"
	"github.com/nitrosigner/nitrosigner/verify"
)

// extend384 is SHA-384(48 zero bytes || SHA-384(parts...)), the formula of
// PCR0-2 and PCR8, written out independently of the eif package.
func extend384(parts ...[]byte) string {
	h := sha512.New384()
	for _, p := range parts {
		h.Write(p)
	}
	x := sha512.Sum384(append(make([]byte, 48), h.Sum(nil)...))
	return hex.EncodeToString(x[:])
}

func runEIFTest(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runEIF(t.Context(), args, &out)
	if err != nil {
		assert.Empty(t, out.String(), "nothing on stdout when a command fails")
	}
	return out.String(), err
}

// fieldsOf returns the "name: value" lines of text output, up to the first
// blank line.
func fieldsOf(t *testing.T, out string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		require.True(t, ok, "line %q", line)
		m[k] = strings.TrimSpace(v)
	}
	return m
}

var (
	testKernel    = bytes.Repeat([]byte("kernel "), 1000)
	testCmdline   = "reboot=k panic=30 pci=off console=ttyS0"
	testBootstrap = bytes.Repeat([]byte("bootstrap "), 500)
	testApp       = bytes.Repeat([]byte("app "), 700)
)

// writeTestImage builds an image with the eif package into dir.
func writeTestImage(t *testing.T, cfg eif.BuildConfig) string {
	t.Helper()
	var buf bytes.Buffer
	_, err := eif.Build(&buf, cfg)
	require.NoError(t, err)
	name := filepath.Join(t.TempDir(), "test.eif")
	require.NoError(t, os.WriteFile(name, buf.Bytes(), 0o600))
	return name
}

func unsignedConfig() eif.BuildConfig {
	return eif.BuildConfig{Kernel: testKernel, Cmdline: testCmdline, Ramdisks: [][]byte{testBootstrap, testApp},
		Metadata: &eif.Metadata{ImageName: "demo", ImageVersion: "7"}}
}

func wantUnsigned() (pcr0, pcr1, pcr2 string) {
	k, c := testKernel, []byte(testCmdline)
	return extend384(k, c, testBootstrap, testApp), extend384(k, c, testBootstrap), extend384(testApp)
}

type testSigner struct {
	key     *ecdsa.PrivateKey
	certDER []byte
	certPEM []byte
}

func newTestSigner(t *testing.T, notAfter time.Time) testSigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "image signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return testSigner{key, der, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func TestEIFDescribe(t *testing.T) {
	file := writeTestImage(t, unsignedConfig())
	pcr0, pcr1, pcr2 := wantUnsigned()

	out, err := runEIFTest(t, "describe", file)
	require.NoError(t, err)
	f := fieldsOf(t, out)
	assert.Equal(t, pcr0, f["PCR0"])
	assert.Equal(t, pcr1, f["PCR1"])
	assert.Equal(t, pcr2, f["PCR2"])
	assert.Equal(t, "4", f["eif_version"])
	assert.Equal(t, "x86_64", f["arch"])
	assert.Regexp(t, "^[0-9a-f]{8} \\(ok\\)$", f["crc32"])
	assert.Equal(t, testCmdline, f["cmdline"])
	assert.Equal(t, "demo", f["image_name"])
	assert.Equal(t, "no", f["signed"])
	assert.Contains(t, out, "\n\nSECTION  TYPE      OFFSET  SIZE\n0        kernel    548     7000\n1        cmdline   7560    39\n")
	assert.Contains(t, out, "\n2        metadata")
	assert.Contains(t, out, "\n4        ramdisk")
	assert.NotContains(t, out, "PCR8")

	// --json, before or after the subcommand, is nitro-cli's output.
	for _, args := range [][]string{{"describe", file, "--json"}, {"--json", "describe", file}} {
		out, err := runEIFTest(t, args...)
		require.NoError(t, err)
		var got map[string]map[string]string
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		assert.Equal(t, map[string]map[string]string{"Measurements": {
			"HashAlgorithm": "Sha384 { ... }", "PCR0": pcr0, "PCR1": pcr1, "PCR2": pcr2,
		}}, got)

		// attest --pcrs and kms-policy read it back.
		pcrs, err := verify.ParsePCRs([]byte(out))
		require.NoError(t, err)
		assert.Equal(t, pcr2, hex.EncodeToString(pcrs[2]))
		assert.Len(t, pcrs, 3)
	}
}

func TestEIFDescribeCheck(t *testing.T) {
	file := writeTestImage(t, unsignedConfig())
	pcr0, pcr1, pcr2 := wantUnsigned()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	good := write("good.json", `{"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"`+pcr0+`","PCR1":"`+pcr1+`","PCR2":"`+pcr2+`"}}`)
	out, err := runEIFTest(t, "describe", "--pcrs", good, file)
	require.NoError(t, err)
	assert.Equal(t, "ok, matches "+good, fieldsOf(t, out)["pcrs_check"])

	onlyPCR2 := write("pcr2.json", `{"PCR2":"`+pcr2+`"}`)
	_, err = runEIFTest(t, "describe", file, "--pcrs", onlyPCR2)
	require.NoError(t, err)

	tests := []struct {
		name, content, wantMsg string
	}{
		{"different PCR1", `{"PCR1":"` + pcr0 + `"}`, "PCR1 is " + pcr1 + ", the expected value is " + pcr0},
		{"PCR3", `{"PCR3":"` + pcr0 + `"}`, "PCR3 is not a property of the image"},
		{"PCR8 of an unsigned image", `{"PCR8":"` + pcr0 + `"}`, "the image is not signed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runEIFTest(t, "describe", file, "--pcrs", write(tt.name+".json", tt.content))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Equal(t, 1, report(&bytes.Buffer{}, err))
		})
	}

	_, err = runEIFTest(t, "describe", file, "--pcrs", write("bad.json", `{"PCR1":"zz"}`))
	assert.Equal(t, 2, report(&bytes.Buffer{}, err), "an unreadable --pcrs file is a usage error")
}

func TestEIFDescribeSigned(t *testing.T) {
	s := newTestSigner(t, time.Now().Add(24*time.Hour))
	cfg := unsignedConfig()
	cfg.Signer, cfg.Certificate = s.key, s.certPEM
	file := writeTestImage(t, cfg)
	pcr0, pcr1, pcr2 := wantUnsigned()
	pcr8 := extend384(s.certDER)

	out, err := runEIFTest(t, "describe", file)
	require.NoError(t, err)
	f := fieldsOf(t, out)
	assert.Equal(t, pcr8, f["PCR8"])
	assert.Equal(t, "yes, signature over PCR0 verified", f["signed"])
	assert.Equal(t, "CN=image signer", f["signing_cert"])
	assert.NotContains(t, f["signing_cert_valid"], "NOT VALID")
	assert.Contains(t, out, "\n5        signature")

	out, err = runEIFTest(t, "describe", "--json", file)
	require.NoError(t, err)
	assert.JSONEq(t, `{"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"`+pcr0+`","PCR1":"`+pcr1+
		`","PCR2":"`+pcr2+`","PCR8":"`+pcr8+`"}}`, out)

	// The signed image needs PCR8 in --pcrs.
	noPCR8 := filepath.Join(t.TempDir(), "p.json")
	require.NoError(t, os.WriteFile(noPCR8, []byte(`{"PCR0":"`+pcr0+`"}`), 0o600))
	_, err = runEIFTest(t, "describe", file, "--pcrs", noPCR8)
	require.ErrorContains(t, err, "the image is signed but the expected PCRs have no PCR8")

	// An expired certificate is shown, not fatal.
	expired := newTestSigner(t, time.Now().Add(-time.Minute))
	cfg.Signer, cfg.Certificate = expired.key, expired.certPEM
	out, err = runEIFTest(t, "describe", writeTestImage(t, cfg))
	require.NoError(t, err)
	assert.Contains(t, fieldsOf(t, out)["signing_cert_valid"], "(NOT VALID NOW: run-enclave refuses the image)")
}

func TestEIFDescribeErrors(t *testing.T) {
	file := writeTestImage(t, unsignedConfig())
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.eif")
	bad := bytes.Clone(data)
	bad[len(bad)-10] ^= 0x40
	require.NoError(t, os.WriteFile(corrupt, bad, 0o600))
	truncated := filepath.Join(dir, "truncated.eif")
	require.NoError(t, os.WriteFile(truncated, data[:len(data)-10], 0o600))

	tests := []struct {
		name     string
		args     []string
		wantErr  error
		wantMsg  string
		wantCode int
	}{
		{"corrupted", []string{"describe", corrupt}, eif.ErrChecksum, corrupt + ": eif: checksum mismatch", 1},
		{"truncated", []string{"describe", truncated}, eif.ErrTruncated, "section 4 (ramdisk) is 2800 bytes but only 2790 remain", 1},
		{"missing file", []string{"describe", filepath.Join(dir, "nope.eif")}, nil, "no such file", 2},
		{"directory", []string{"describe", dir}, nil, "not a regular file", 2},
		{"no file", []string{"describe"}, nil, "want exactly one image file", 2},
		{"two files", []string{"describe", file, file}, nil, "want exactly one image file", 2},
		{"no subcommand", nil, nil, "eif: no subcommand given", 2},
		{"unknown subcommand", []string{"frob"}, nil, `eif: unknown subcommand "frob"`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runEIFTest(t, tt.args...)
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Equal(t, tt.wantCode, report(&bytes.Buffer{}, err))
		})
	}

	// A signature that does not verify fails describe.
	s := newTestSigner(t, time.Now().Add(time.Hour))
	cfg := unsignedConfig()
	cfg.Signer, cfg.Certificate = s.key, s.certPEM
	signed, err := os.ReadFile(writeTestImage(t, cfg))
	require.NoError(t, err)
	img, err := eif.Parse(signed)
	require.NoError(t, err)
	sigSec := img.Sections[len(img.Sections)-1]
	// The COSE signature is the tail of the section, as an array of
	// one- or two-byte uints; flip the low bit of the last one.
	signed[sigSec.Offset+12+sigSec.Size-1] ^= 1
	fixed := fixEIFCRC(t, signed)
	tampered := filepath.Join(dir, "tampered.eif")
	require.NoError(t, os.WriteFile(tampered, fixed, 0o600))
	_, err = runEIFTest(t, "describe", tampered)
	require.ErrorIs(t, err, eif.ErrSignature)
	assert.Contains(t, err.Error(), "does not verify")
}

// fixEIFCRC recomputes the CRC of an image: the IEEE CRC-32 of everything
// but bytes 544..547.
func fixEIFCRC(t *testing.T, b []byte) []byte {
	t.Helper()
	rest := append(append([]byte{}, b[:544]...), b[548:]...)
	binary.BigEndian.PutUint32(b[544:], crc32.ChecksumIEEE(rest))
	return b
}

func TestEIFPCR(t *testing.T) {
	s := newTestSigner(t, time.Now().Add(time.Hour))
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	require.NoError(t, os.WriteFile(certFile, s.certPEM, 0o600))

	tests := []struct {
		name string
		args []string
		want string
	}{
		// AWS Nitro Enclaves User Guide, "PCR3" and "PCR4".
		{"role", []string{"pcr", "--role", "arn:aws:iam::123456789012:role/Webserver"},
			"78fce75db17cd4e0a3fb8dad3ad128ca5e77edbb2b2c7f75329dccd99aa5f6ef4fc1f1a452e315b9e98f9e312e6921e6\n"},
		{"instance", []string{"pcr", "--instance-id", "i-1234567890abcdef0"},
			"08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0\n"},
		{"certificate", []string{"pcr", "--cert", certFile}, extend384(s.certDER) + "\n"},
		{"json", []string{"--json", "pcr", "--instance-id", "i-1234567890abcdef0"},
			"{\n  \"PCR4\": \"08f996b5d43e047a9eb51e7f548bfee7e164fd7dc8f65541f2ac09d6545ac812719327281c401a67a10fcba87ae79ce0\"\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runEIFTest(t, tt.args...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, out)
		})
	}

	errs := []struct {
		name    string
		args    []string
		wantMsg string
	}{
		{"nothing", []string{"pcr"}, "exactly one of --role, --instance-id and --cert"},
		{"two", []string{"pcr", "--role", "arn:aws:iam::123456789012:role/W", "--instance-id", "i-1234567890abcdef0"}, "exactly one"},
		{"instance profile", []string{"pcr", "--role", "arn:aws:iam::123456789012:instance-profile/W"}, "is an instance profile"},
		{"padded role", []string{"pcr", "--role", "arn:aws:iam::123456789012:role/W "}, "is not an IAM role ARN"},
		{"short instance id", []string{"pcr", "--instance-id", "i-123"}, "is not an EC2 instance id"},
		{"upper-case instance id", []string{"pcr", "--instance-id", "i-1234567890ABCDEF0"}, "is not an EC2 instance id"},
		{"missing cert", []string{"pcr", "--cert", filepath.Join(t.TempDir(), "x.pem")}, "--cert:"},
		{"not a cert", []string{"pcr", "--cert", "eif_test.go"}, "no PEM CERTIFICATE block"},
		{"argument", []string{"pcr", "--role", "arn:aws:iam::123456789012:role/W", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runEIFTest(t, tt.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Equal(t, 2, report(&bytes.Buffer{}, err))
		})
	}

	// Other partitions and role paths are accepted.
	_, err := runEIFTest(t, "pcr", "--role", "arn:aws-us-gov:iam::123456789012:role/path/to/Role_1")
	require.NoError(t, err)
}

// buildInputs writes a kernel, a cmdline file, a bootstrap ramdisk and an
// application binary into a directory.
func buildInputs(t *testing.T) (dir, kernel, cmdline, bootstrap, app string) {
	t.Helper()
	dir = t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o600))
		return p
	}
	return dir, write("bzImage", testKernel), write("cmdline", []byte("  "+testCmdline+"\n")),
		write("bootstrap.img", testBootstrap), write("enclave", testApp)
}

func TestEIFBuild(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir, kernel, cmdline, bootstrap, app := buildInputs(t)
	args := func(out string) []string {
		return []string{"build", "--kernel", kernel, "--cmdline", cmdline, "--ramdisk", bootstrap,
			"--app", app, "--app-arg", "--listen", "--app-arg", "vsock://:5000", "--app-env", "A=b", "--out", out}
	}
	outA, outB := filepath.Join(dir, "a.eif"), filepath.Join(dir, "b.eif")
	textA, err := runEIFTest(t, args(outA)...)
	require.NoError(t, err)
	jsonB, err := runEIFTest(t, append(args(outB), "--json", "--name", "a")...)
	require.NoError(t, err)

	a, err := os.ReadFile(outA)
	require.NoError(t, err)
	b, err := os.ReadFile(outB)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(a, b), "same inputs give identical bytes")
	fi, err := os.Stat(outA)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

	// The PCRs are the formulas over the inputs: the cmdline file trimmed,
	// and the application ramdisk made from the binary and its arguments.
	appRD, err := eif.AppRamdisk(eif.App{Path: "/enclave", Binary: testApp, Args: []string{"--listen", "vsock://:5000"}, Env: []string{"A=b"}})
	require.NoError(t, err)
	k, c := testKernel, []byte(testCmdline)
	want := map[string]string{
		"HashAlgorithm": "Sha384 { ... }",
		"PCR0":          extend384(k, c, testBootstrap, appRD),
		"PCR1":          extend384(k, c, testBootstrap),
		"PCR2":          extend384(appRD),
	}
	var got measurementsJSON
	require.NoError(t, json.Unmarshal([]byte(jsonB), &got))
	assert.Equal(t, want, got.Measurements)
	fa := fieldsOf(t, textA)
	assert.Equal(t, want["PCR0"], fa["PCR0"])
	assert.Equal(t, testCmdline, fa["cmdline"])
	assert.Equal(t, outA, fa["file"])

	// describe reads the same PCRs and the metadata.
	desc, err := runEIFTest(t, "describe", outA)
	require.NoError(t, err)
	fd := fieldsOf(t, desc)
	assert.Equal(t, want["PCR2"], fd["PCR2"])
	assert.Equal(t, "a", fd["image_name"])
	assert.Equal(t, "2023-11-14T22:13:20Z", fd["build_time"])
	assert.Equal(t, "nitrosigner eif build 1", fd["build_tool"])

	// A literal command line works too, and changes PCR0 and PCR1 only.
	lit := filepath.Join(dir, "lit.eif")
	litArgs := args(lit)
	litArgs[4] = "console=ttyS0"
	out, err := runEIFTest(t, append(litArgs, "--json")...)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, extend384(k, []byte("console=ttyS0"), testBootstrap), got.Measurements["PCR1"])
	assert.Equal(t, want["PCR2"], got.Measurements["PCR2"])
}

func TestEIFBuildSigned(t *testing.T) {
	dir, kernel, cmdline, bootstrap, _ := buildInputs(t)
	s := newTestSigner(t, time.Now().Add(time.Hour))
	keyDER, err := x509.MarshalECPrivateKey(s.key)
	require.NoError(t, err)
	// openssl ecparam -genkey writes EC PARAMETERS before the key.
	keyPEM := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 5, 43, 129, 4, 0, 34}}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	keyFile, certFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	require.NoError(t, os.WriteFile(certFile, s.certPEM, 0o600))

	out := filepath.Join(dir, "signed.eif")
	text, err := runEIFTest(t, "build", "--kernel", kernel, "--cmdline", cmdline, "--ramdisk", bootstrap,
		"--signing-certificate", certFile, "--private-key", keyFile, "--out", out)
	require.NoError(t, err)
	assert.Equal(t, extend384(s.certDER), fieldsOf(t, text)["PCR8"])
	desc, err := runEIFTest(t, "describe", out)
	require.NoError(t, err)
	assert.Equal(t, "yes, signature over PCR0 verified", fieldsOf(t, desc)["signed"])

	// PKCS#8 keys work too; a key of another certificate does not.
	other := newTestSigner(t, time.Now().Add(time.Hour))
	p8, err := x509.MarshalPKCS8PrivateKey(other.key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600))
	_, err = runEIFTest(t, "build", "--kernel", kernel, "--cmdline", cmdline, "--ramdisk", bootstrap,
		"--signing-certificate", certFile, "--private-key", keyFile, "--out", out)
	require.ErrorContains(t, err, "the signing key does not belong to the signing certificate")
}

func TestEIFBuildErrors(t *testing.T) {
	dir, kernel, cmdline, bootstrap, app := buildInputs(t)
	out := filepath.Join(dir, "out.eif")
	base := []string{"build", "--kernel", kernel, "--cmdline", cmdline, "--ramdisk", bootstrap, "--out", out}
	tests := []struct {
		name     string
		args     []string
		wantMsg  string
		wantCode int
	}{
		{"no ramdisk", []string{"build", "--kernel", kernel, "--cmdline", cmdline, "--out", out}, "are required", 2},
		{"no cmdline", []string{"build", "--kernel", kernel, "--ramdisk", bootstrap, "--out", out}, "are required", 2},
		{"missing kernel", []string{"build", "--kernel", filepath.Join(dir, "nope"), "--cmdline", cmdline, "--ramdisk", bootstrap, "--out", out},
			"--kernel:", 2},
		{"cmdline path that does not exist", []string{"build", "--kernel", kernel, "--cmdline", "/usr/share/nope/cmdline", "--ramdisk", bootstrap, "--out", out},
			`--cmdline: no such file "/usr/share/nope/cmdline"`, 2},
		{"bad arch", append(base, "--arch", "riscv64"), `"riscv64" is neither`, 2},
		{"app argument without app", append(base, "--app-arg", "x"), "need --app", 2},
		{"bad app path", append(base, "--app", app, "--app-path", "enclave"), "want /NAME", 2},
		{"key without certificate", append(base, "--private-key", kernel), "go together", 2},
		{"key file without a key", append(base, "--private-key", kernel, "--signing-certificate", kernel), "no EC PRIVATE KEY or PRIVATE KEY PEM block", 2},
		{"output directory missing", []string{"build", "--kernel", kernel, "--cmdline", cmdline, "--ramdisk", bootstrap, "--out", filepath.Join(dir, "no", "x.eif")},
			"--out:", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runEIFTest(t, tt.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantMsg)
			assert.Equal(t, tt.wantCode, report(&bytes.Buffer{}, err))
			_, statErr := os.Stat(out)
			assert.True(t, errors.Is(statErr, os.ErrNotExist), "no output on error")
		})
	}

	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	_, err := runEIFTest(t, base...)
	require.ErrorContains(t, err, `SOURCE_DATE_EPOCH="yesterday"`)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), ".out.eif"), "temporary file left behind: %s", e.Name())
	}
}

func TestEIFHelp(t *testing.T) {
	file := writeTestImage(t, unsignedConfig())
	for _, args := range [][]string{{"--help"}, {"help"}, {"describe", "--help"}, {"describe", file, "-h"}, {"pcr", "--help"}, {"build", "-help"}} {
		var out bytes.Buffer
		err := runEIF(context.Background(), args, &out)
		require.ErrorIs(t, err, errHelpShown, "%v", args)
		assert.True(t, strings.HasPrefix(out.String(), "usage: nitrosigner eif"), "%v: %s", args, out.String())
	}
}
