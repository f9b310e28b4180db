package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

var simImage = []byte("x")

func simConfig() nsmsim.Config {
	return nsmsim.Config{Image: simImage, DevicePath: "/nonexistent"}
}

// writeRoot writes the simulator's root certificate as PEM and returns the
// file name.
func writeRoot(t *testing.T, f *fakeSigner) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "root.pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.sim.Root().Raw}), 0o644))
	return file
}

// writePCRs writes content to a temporary JSON file and returns its name.
func writePCRs(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pcrs.json")
	require.NoError(t, os.WriteFile(file, []byte(content), 0o644))
	return file
}

func TestAttest(t *testing.T) {
	pcr0, pcr1, pcr2 := nsmsim.MeasureImage(simImage)
	h0, h1, h2 := hex.EncodeToString(pcr0), hex.EncodeToString(pcr1), hex.EncodeToString(pcr2)
	wrong := strings.Repeat("00", 48)

	tests := []struct {
		name       string
		debug      bool
		onAttest   func(in *attestInputs)
		noRoot     bool     // do not pass --root
		pcrs       string   // --pcrs file content, if not empty
		args       []string // extra attest flags
		wantCode   int
		want       []string // regular expressions stdout must match
		wantStderr string
	}{
		{
			name: "verified",
			want: []string{
				`(?m)^module_id:\s+i-[0-9a-f]{17}-enc[0-9a-f]{16}$`,
				`(?m)^timestamp:\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`,
				`(?m)^PCR0:\s+` + h0 + `$`,
				`(?m)^PCR1:\s+` + h1 + `$`,
				`(?m)^PCR2:\s+` + h2 + `$`,
				`(?m)^PCR3:\s+0{96}$`,
				`(?m)^PCR4:\s+[0-9a-f]{96}$`,
				`(?m)^PCR8:\s+0{96}$`,
				`(?m)^nonce:\s+[0-9a-f]{64}$`,
				`(?m)^identity_version:\s+1$`,
				`(?m)^identity_public_key:\s+(33){32}$`,
				`(?m)^kms_public_key_sha256:\s+[0-9a-f]{64}$`,
				`(?m)^verified:\s+true$`,
			},
		},
		{
			name: "given nonce",
			args: []string{"--verify", "--nonce", "0xC0FFEE"},
			want: []string{`(?m)^nonce:\s+c0ffee$`, `(?m)^verified:\s+true$`},
		},
		{
			name: "nitro-cli measurements",
			pcrs: `{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": "` + strings.ToUpper(h0) + `", "PCR1": "` + h1 + `", "PCR2": "` + h2 + `"}}`,
			want: []string{`(?m)^verified:\s+true$`},
		},
		{
			name: "bare index pcrs",
			pcrs: `{"0": "` + h0 + `", "3": "` + wrong + `"}`,
			want: []string{`(?m)^verified:\s+true$`},
		},
		{
			name:     "not verified",
			noRoot:   true,
			args:     []string{},
			want:     []string{`(?m)^document:\s+\d+ bytes, not verified`, `(?m)^identity_public_key:\s+(33){32} \(unverified\)$`, `(?m)^verified:\s+false$`},
			wantCode: 0,
		},
		{
			name:       "wrong pcr0",
			pcrs:       `{"PCR0": "` + wrong + `"}`,
			wantCode:   1,
			wantStderr: "nitrosigner: attestation verification failed: attest: pcr mismatch",
		},
		{
			name:       "untrusted root",
			noRoot:     true,
			args:       []string{"--verify"},
			wantCode:   1,
			wantStderr: "nitrosigner: attestation verification failed: ",
		},
		{
			name:       "nonce replaced",
			onAttest:   func(in *attestInputs) { in.nonce = []byte("old nonce") },
			wantCode:   1,
			wantStderr: "nitrosigner: attestation verification failed: ",
		},
		{
			name: "identity differs from user_data",
			onAttest: func(in *attestInputs) {
				in.identity.IdentityPublicKey = bytes.Repeat([]byte{0x44}, 32)
			},
			wantCode:   1,
			wantStderr: "identity in the response differs",
		},
		{
			name:       "no identity in response",
			onAttest:   func(in *attestInputs) { in.identity = nil },
			wantCode:   1,
			wantStderr: "server sent no enclave identity",
		},
		{
			name:       "user_data not an identity",
			onAttest:   func(in *attestInputs) { in.userData = []byte{0xff, 0xff} },
			wantCode:   1,
			wantStderr: "user_data is not an EnclaveIdentity",
		},
		{
			name:       "kms key not bound",
			onAttest:   func(in *attestInputs) { in.publicKey = []byte("another key") },
			wantCode:   1,
			wantStderr: "does not match the identity's kms_public_key_sha256",
		},
		{
			name:       "debug enclave refused",
			debug:      true,
			wantCode:   1,
			wantStderr: "attest: debug-mode",
		},
		{
			name:  "debug enclave allowed",
			debug: true,
			args:  []string{"--verify", "--allow-debug"},
			want:  []string{`(?m)^PCR0:\s+0{96}$`, `(?m)^verified:\s+true$`},
		},
		{
			name:       "malformed pcrs file",
			pcrs:       `{"PCR0": "zz"}`,
			wantCode:   2,
			wantStderr: "nitrosigner: --pcrs: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := simConfig()
			if tt.debug {
				cfg = nsmsim.Config{Debug: true, DevicePath: "/nonexistent"}
			}
			fake := newFakeSigner().withSimulator(t, cfg)
			fake.OnAttest = tt.onAttest
			addr := startServer(t, fake)

			args := tt.args
			if args == nil {
				args = []string{"--verify"}
			}
			if !tt.noRoot {
				args = append(args, "--root", writeRoot(t, fake))
			}
			if tt.pcrs != "" {
				args = append(args, "--pcrs", writePCRs(t, tt.pcrs))
			}
			code, stdout, stderr := runCLI(t, append([]string{"--addr", addr, "attest"}, args...)...)
			assert.Equal(t, tt.wantCode, code)
			if tt.wantCode != 0 {
				assert.Empty(t, stdout)
				assert.Contains(t, stderr, tt.wantStderr)
				return
			}
			assert.Empty(t, stderr)
			for _, re := range tt.want {
				assert.Regexp(t, re, stdout)
			}
		})
	}
}

func TestAttestJSON(t *testing.T) {
	fake := newFakeSigner().withSimulator(t, simConfig())
	addr := startServer(t, fake)
	root := writeRoot(t, fake)
	pcr0, _, _ := nsmsim.MeasureImage(simImage)
	nonce := strings.Repeat("5a", 16)

	t.Run("verified", func(t *testing.T) {
		start := time.Now().Add(-time.Second)
		code, stdout, stderr := runCLI(t, "--addr", addr, "--json", "attest", "--nonce", nonce, "--verify", "--root", root)
		require.Equal(t, 0, code, stderr)
		v := decodeOne(t, stdout)
		assert.Equal(t, []string{"document", "identity", "module_id", "nonce", "pcrs", "timestamp_unix_ms", "verified"}, keysOf(v))
		assert.Equal(t, true, v["verified"])
		assert.Equal(t, nonce, v["nonce"])
		assert.Equal(t, fake.sim.ModuleID(), v["module_id"])

		doc, err := hex.DecodeString(v["document"].(string))
		require.NoError(t, err)
		assert.Equal(t, strings.ToLower(v["document"].(string)), v["document"])
		assert.Equal(t, byte(0x84), doc[0], "untagged COSE_Sign1 array")

		ts := time.UnixMilli(int64(v["timestamp_unix_ms"].(float64)))
		assert.WithinRange(t, ts, start, time.Now().Add(time.Second))

		pcrs := v["pcrs"].(map[string]any)
		assert.Len(t, pcrs, 16)
		for i := range 16 {
			p, ok := pcrs[strconv.Itoa(i)].(string)
			require.True(t, ok, "PCR%d", i)
			assert.Regexp(t, `^[0-9a-f]{96}$`, p)
		}
		assert.Equal(t, hex.EncodeToString(pcr0), pcrs["0"])

		id := v["identity"].(map[string]any)
		assert.Equal(t, []string{"identity_public_key", "kms_public_key_sha256", "version"}, keysOf(id))
		assert.InDelta(t, 1, id["version"], 0)
		assert.Equal(t, hex.EncodeToString(fake.identity.IdentityPublicKey), id["identity_public_key"])
		assert.Equal(t, hex.EncodeToString(fake.identity.KmsPublicKeySha256), id["kms_public_key_sha256"])
	})

	t.Run("not verified", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, "--addr", addr, "--json", "attest")
		require.Equal(t, 0, code, stderr)
		v := decodeOne(t, stdout)
		assert.Equal(t, []string{"document", "identity", "nonce", "verified"}, keysOf(v))
		assert.Equal(t, false, v["verified"])
		assert.Regexp(t, `^[0-9a-f]{64}$`, v["nonce"], "32 random bytes by default")
	})
}

// TestAttestFreshNonce checks that each run sends a new random nonce.
func TestAttestFreshNonce(t *testing.T) {
	fake := newFakeSigner().withSimulator(t, simConfig())
	var (
		mu     sync.Mutex
		nonces [][]byte
	)
	fake.OnAttest = func(in *attestInputs) {
		mu.Lock()
		defer mu.Unlock()
		nonces = append(nonces, in.nonce)
	}
	addr := startServer(t, fake)
	for range 2 {
		code, _, _ := runCLI(t, "--addr", addr, "attest")
		require.Equal(t, 0, code)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, nonces, 2)
	assert.Len(t, nonces[0], 32)
	assert.NotEqual(t, nonces[0], nonces[1])
}

func TestParsePCRs(t *testing.T) {
	a, b := strings.Repeat("ab", 48), strings.Repeat("cd", 48)
	tests := []struct {
		name    string
		json    string
		want    map[int]string
		wantErr string
	}{
		{name: "measurements", json: fmt.Sprintf(`{"HashAlgorithm": "Sha384 { ... }", "PCR0": %q, "PCR8": %q}`, a, b), want: map[int]string{0: a, 8: b}},
		{name: "wrapped", json: fmt.Sprintf(`{"EnclaveName": "x", "Measurements": {"PCR2": %q}}`, a), want: map[int]string{2: a}},
		{name: "bare index", json: fmt.Sprintf(`{"0": %q, "31": %q}`, a, b), want: map[int]string{0: a, 31: b}},
		{name: "0x prefix and upper case", json: fmt.Sprintf(`{"pcr1": "0x%s"}`, strings.ToUpper(a)), want: map[int]string{1: a}},
		{name: "not json", json: `PCR0=ab`, wantErr: "not a JSON object"},
		{name: "empty", json: `{}`, wantErr: "no PCR values"},
		{name: "unknown key", json: fmt.Sprintf(`{"PCRX": %q}`, a), wantErr: `unknown key "PCRX"`},
		{name: "signed index", json: fmt.Sprintf(`{"+1": %q}`, a), wantErr: `unknown key "+1"`},
		{name: "duplicate", json: fmt.Sprintf(`{"PCR0": %q, "0": %q}`, a, b), wantErr: "PCR0 given twice"},
		{name: "not a string", json: `{"PCR0": 1}`, wantErr: `"PCR0": want a string`},
		{name: "other hash", json: fmt.Sprintf(`{"HashAlgorithm": "Sha256", "PCR0": %q}`, a), wantErr: "not SHA-384"},
		{name: "short value", json: `{"PCR0": "abcd"}`, wantErr: "pcr0 is 2 bytes"},
		{name: "index out of range", json: fmt.Sprintf(`{"PCR32": %q}`, a), wantErr: "32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePCRs([]byte(tt.json))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			want := make(map[int][]byte)
			for i, h := range tt.want {
				want[i], _ = hex.DecodeString(h)
			}
			assert.Equal(t, want, got)
		})
	}
}

// TestAttestIdentityEncoding checks that the identity printed is the one
// encoded in user_data, field by field.
func TestAttestIdentityEncoding(t *testing.T) {
	fake := newFakeSigner().withSimulator(t, simConfig())
	fake.identity = &signerv1.EnclaveIdentity{Version: 1, IdentityPublicKey: []byte{1, 2, 3}}
	addr := startServer(t, fake)
	code, stdout, stderr := runCLI(t, "--addr", addr, "--json", "attest", "--verify", "--root", writeRoot(t, fake))
	require.Equal(t, 0, code, stderr)
	var v struct {
		Identity identityJSON `json:"identity"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, identityJSON{Version: 1, IdentityPublicKey: "010203"}, v.Identity)
}
