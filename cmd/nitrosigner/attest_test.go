package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

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
				`(?m)^identity_public_key:\s+` + fakeIdentityHex + `$`,
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
			want:     []string{`(?m)^document:\s+\d+ bytes, not verified`, `(?m)^identity_public_key:\s+` + fakeIdentityHex + ` \(unverified\)$`, `(?m)^verified:\s+false$`},
			wantCode: 0,
		},
		{
			name:       "wrong pcr0",
			pcrs:       `{"PCR0": "` + wrong + `"}`,
			wantCode:   1,
			wantStderr: "nitrosigner: Unauthenticated: attestation verification failed: attest: pcr mismatch",
		},
		{
			name:       "untrusted root",
			noRoot:     true,
			args:       []string{"--verify"},
			wantCode:   1,
			wantStderr: "cabundle[0] is not a trusted root (if this is the simulated enclave of make run, which signs under its own root, add --root with its nsmsim/root.pem",
		},
		{
			name:       "nonce replaced",
			onAttest:   func(in *attestInputs) { in.nonce = []byte("old nonce") },
			wantCode:   1,
			wantStderr: "nitrosigner: Unauthenticated: attestation verification failed: ",
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
			wantStderr: "nitrosigner: InvalidArgument: --pcrs: ",
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
			if tt.pcrs == "" && slices.Contains(args, "--verify") {
				assert.Contains(t, stderr, "no --pcrs", "verifying without PCRs warns that any image passes")
			} else {
				assert.Empty(t, stderr)
			}
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

// TestAttestIdentityEncoding checks that the identity printed is the one
// encoded in user_data, field by field.
func TestAttestIdentityEncoding(t *testing.T) {
	fake := newFakeSigner().withSimulator(t, simConfig())
	idKey := make([]byte, 32)
	for i := range idKey {
		idKey[i] = byte(i)
	}
	kmsSum := sha256.Sum256(fake.kmsSPKI)
	fake.identity = &signerv1.EnclaveIdentity{Version: 1, IdentityPublicKey: idKey, KmsPublicKeySha256: kmsSum[:]}
	addr := startServer(t, fake)
	code, stdout, stderr := runCLI(t, "--addr", addr, "--json", "attest", "--verify", "--root", writeRoot(t, fake))
	require.Equal(t, 0, code, stderr)
	var v struct {
		Identity identityJSON `json:"identity"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, identityJSON{
		Version:            1,
		IdentityPublicKey:  hex.EncodeToString(idKey),
		KmsPublicKeySha256: hex.EncodeToString(kmsSum[:]),
	}, v.Identity)
}

// TestAttestFreshness checks that --verify refuses a document older than
// --max-age (5 minutes by default) and that --max-age 0 accepts it.
func TestAttestFreshness(t *testing.T) {
	cfg := simConfig()
	cfg.Now = func() time.Time { return time.Now().Add(-10 * time.Minute) }
	fake := newFakeSigner().withSimulator(t, cfg)
	addr := startServer(t, fake)
	root := writeRoot(t, fake)

	code, stdout, stderr := runCLI(t, "--addr", addr, "attest", "--verify", "--root", root)
	assert.Equal(t, 1, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "nitrosigner: Unauthenticated: attestation verification failed: attest: stale attestation document")

	code, stdout, stderr = runCLI(t, "--addr", addr, "attest", "--verify", "--root", root, "--max-age", "0")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `(?m)^verified:\s+true$`, stdout)

	code, _, stderr = runCLI(t, "--addr", addr, "attest", "--verify", "--root", root, "--max-age", "15m")
	assert.Equal(t, 0, code, stderr)
}

// Real AWS documents (verify/testdata, see its README).
const (
	blockyDoc      = "../../verify/testdata/att_blocky_2024-09-07.cbor"
	blockyDebugDoc = "../../verify/testdata/att_blocky_debug_2024-09-07.cbor"
	hfDoc          = "../../verify/testdata/att_hf_nitrite_pr2_debug_2021-10-28.cbor"
	blockyAt       = "1725719859545"
	blockyPCR0     = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
	hfNonce        = "54caa7fdd9c1de6f1206e4900d57b61eb759d628"
)

// writeDoc writes content to a temporary file and returns its name.
func writeDoc(t *testing.T, content []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "doc")
	require.NoError(t, os.WriteFile(file, content, 0o644))
	return file
}

func readDoc(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return b
}

// TestAttestOffline verifies stored documents with --doc. No server runs:
// --addr names a socket that does not exist.
func TestAttestOffline(t *testing.T) {
	doc := readDoc(t, blockyDoc)
	tampered := bytes.Clone(doc)
	tampered[len(tampered)-1] ^= 1
	ones := strings.Repeat("01", 1024)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		want       []string // regular expressions stdout must match
		notWant    string   // regular expression stdout must not match
		wantStderr string
	}{
		{
			name: "real document at its timestamp",
			args: []string{"--doc", blockyDoc, "--at", blockyAt},
			want: []string{
				`(?m)^module_id:\s+i-0a22e5c5f24d22174-enc0191cceb4289903f$`,
				`(?m)^timestamp:\s+2024-09-07T14:37:39\.545Z$`,
				`(?m)^PCR0:\s+` + blockyPCR0 + `$`,
				`(?m)^PCR8:\s+0{96}$`,
				`(?m)^nonce:\s+` + ones + ` \(not checked\)$`,
				`(?m)^verified:\s+true$`,
			},
			notWant: `identity`,
		},
		{name: "rfc 3339 time", args: []string{"--doc", blockyDoc, "--at", "2024-09-07T14:40:00Z"}, want: []string{`(?m)^verified:\s+true$`}},
		{name: "expected nonce", args: []string{"--doc", blockyDoc, "--at", blockyAt, "--nonce", ones}, want: []string{`(?m)^nonce:\s+` + ones + `$`}},
		{name: "hf document nonce", args: []string{"--doc", hfDoc, "--at", "1635440522077", "--allow-debug", "--nonce", hfNonce},
			want: []string{`(?m)^PCR0:\s+0{96}$`, `(?m)^nonce:\s+` + hfNonce + `$`, `(?m)^verified:\s+true$`}},
		{name: "expected pcrs", args: []string{"--doc", blockyDoc, "--at", blockyAt, "--pcrs", writePCRs(t, `{"Measurements": {"PCR0": "`+blockyPCR0+`"}}`)},
			want: []string{`(?m)^verified:\s+true$`}},
		{name: "hex file", args: []string{"--doc", writeDoc(t, []byte(hex.EncodeToString(doc)+"\n")), "--at", blockyAt}, want: []string{`(?m)^verified:\s+true$`}},
		{name: "base64 file", args: []string{"--doc", writeDoc(t, []byte(base64.StdEncoding.EncodeToString(doc))), "--at", blockyAt}, want: []string{`(?m)^verified:\s+true$`}},
		{name: "no freshness limit", args: []string{"--doc", blockyDoc, "--at", "2024-09-07T17:00:00Z", "--max-age", "0"}, want: []string{`(?m)^verified:\s+true$`}},

		{name: "stale", args: []string{"--doc", blockyDoc, "--at", "2024-09-07T17:00:00Z"}, wantCode: 1,
			wantStderr: "nitrosigner: Unauthenticated: attestation verification failed: attest: stale attestation document"},
		{name: "certificates expired now", args: []string{"--doc", blockyDoc}, wantCode: 1, wantStderr: "attest: untrusted attestation document"},
		{name: "wrong nonce", args: []string{"--doc", hfDoc, "--at", "1635440522077", "--allow-debug", "--nonce", "c0ffee"}, wantCode: 1, wantStderr: "attest: nonce mismatch"},
		{name: "debug refused", args: []string{"--doc", blockyDebugDoc, "--at", "1725719886508"}, wantCode: 1, wantStderr: "attest: debug-mode"},
		{name: "wrong pcr0", args: []string{"--doc", blockyDoc, "--at", blockyAt, "--pcrs", writePCRs(t, `{"PCR0": "`+strings.Repeat("00", 48)+`"}`)}, wantCode: 1,
			wantStderr: "attest: pcr mismatch"},
		{name: "tampered", args: []string{"--doc", writeDoc(t, tampered), "--at", blockyAt}, wantCode: 1, wantStderr: "attest: bad attestation signature"},
		{name: "no identity in a real document", args: []string{"--doc", blockyDoc, "--at", blockyAt, "--identity"}, wantCode: 1,
			wantStderr: "verify: enclave identity not bound: user_data is not an EnclaveIdentity"},
		{name: "real document against a simulator root", args: []string{"--doc", blockyDoc, "--at", blockyAt, "--root", writeSimRoot(t)}, wantCode: 1,
			wantStderr: "attest: untrusted attestation document"},

		{name: "doc needs verify", args: []string{"--doc", blockyDoc}, wantCode: 2, wantStderr: "need --verify"},
		{name: "at needs doc", args: []string{"--verify", "--at", blockyAt}, wantCode: 2, wantStderr: "--at and --identity need --doc"},
		{name: "identity needs doc", args: []string{"--verify", "--identity"}, wantCode: 2, wantStderr: "need --doc"},
		{name: "bad time", args: []string{"--doc", blockyDoc, "--at", "yesterday"}, wantCode: 2, wantStderr: `--at: "yesterday" is neither RFC 3339 nor Unix milliseconds`},
		{name: "empty time", args: []string{"--doc", blockyDoc, "--at", ""}, wantCode: 2, wantStderr: `--at: "" is neither`},
		{name: "time overflow", args: []string{"--doc", blockyDoc, "--at", "99999999999999999999"}, wantCode: 2, wantStderr: "not a Unix time in milliseconds"},
		{name: "negative max age", args: []string{"--doc", blockyDoc, "--max-age", "-1s"}, wantCode: 2, wantStderr: "--max-age must not be negative"},
		{name: "missing file", args: []string{"--doc", "/nonexistent/doc.cbor"}, wantCode: 2, wantStderr: "nitrosigner: InvalidArgument: --doc: "},
		{name: "not a document", args: []string{"--doc", writeDoc(t, []byte("hello"))}, wantCode: 2, wantStderr: "not an attestation document in CBOR, hex or base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--addr", "unix:///nonexistent/signer.sock", "attest"}
			if tt.wantCode != 2 || !strings.Contains(tt.wantStderr, "need --verify") {
				args = append(args, "--verify")
			}
			code, stdout, stderr := runCLI(t, append(args, tt.args...)...)
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
			if tt.notWant != "" {
				assert.NotRegexp(t, tt.notWant, stdout)
			}
		})
	}
}

// writeSimRoot writes a simulator's root as PEM; trusting only it rejects
// real documents.
func writeSimRoot(t *testing.T) string {
	t.Helper()
	fake := newFakeSigner().withSimulator(t, simConfig())
	return writeRoot(t, fake)
}

// TestAttestOfflineSimulator verifies a stored simulator document with its
// root, including the identity binding, and prints it as JSON.
func TestAttestOfflineSimulator(t *testing.T) {
	fake := newFakeSigner().withSimulator(t, simConfig())
	ud, err := proto.MarshalOptions{Deterministic: true}.Marshal(fake.identity)
	require.NoError(t, err)
	nonce := []byte("stored nonce")
	doc, err := fake.sim.Attest(t.Context(), nonce, ud, fake.kmsSPKI)
	require.NoError(t, err)
	file := writeDoc(t, doc)
	root := writeRoot(t, fake)
	pcr0, _, _ := nsmsim.MeasureImage(simImage)

	code, stdout, stderr := runCLI(t, "--addr", "unix:///nonexistent/signer.sock", "attest", "--verify",
		"--doc", file, "--root", root, "--identity", "--nonce", hex.EncodeToString(nonce))
	require.Equal(t, 0, code, stderr)
	for _, re := range []string{
		`(?m)^PCR0:\s+` + hex.EncodeToString(pcr0) + `$`,
		`(?m)^nonce:\s+` + hex.EncodeToString(nonce) + `$`,
		`(?m)^identity_public_key:\s+` + fakeIdentityHex + `$`,
		`(?m)^kms_public_key_sha256:\s+` + hex.EncodeToString(fake.identity.KmsPublicKeySha256) + `$`,
		`(?m)^verified:\s+true$`,
	} {
		assert.Regexp(t, re, stdout)
	}

	code, stdout, stderr = runCLI(t, "--json", "attest", "--verify", "--doc", file, "--root", root)
	require.Equal(t, 0, code, stderr)
	v := decodeOne(t, stdout)
	assert.Equal(t, []string{"document", "module_id", "nonce", "pcrs", "timestamp_unix_ms", "verified"}, keysOf(v), "no identity without --identity")
	assert.Equal(t, hex.EncodeToString(doc), v["document"])
	assert.Equal(t, hex.EncodeToString(nonce), v["nonce"])
	assert.Equal(t, fake.sim.ModuleID(), v["module_id"])
	assert.Equal(t, true, v["verified"])

	// A document whose public_key is not the identity's KMS key fails the
	// binding, not the document checks.
	doc, err = fake.sim.Attest(t.Context(), nonce, ud, []byte("another key"))
	require.NoError(t, err)
	file = writeDoc(t, doc)
	code, _, stderr = runCLI(t, "attest", "--verify", "--doc", file, "--root", root)
	assert.Equal(t, 0, code, stderr)
	code, _, stderr = runCLI(t, "attest", "--verify", "--doc", file, "--root", root, "--identity")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "does not match the identity's kms_public_key_sha256")
}
