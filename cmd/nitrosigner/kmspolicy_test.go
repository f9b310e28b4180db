package main

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/eif"
	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

var updateKMSPolicy = flag.Bool("update-kms-policy", false, "rewrite testdata/kms-policy*.golden.json")

const (
	kpRole    = "arn:aws:iam::111122223333:role/nitrosigner-parent"
	kpAdmin   = "arn:aws:iam::111122223333:role/nitrosigner-admin"
	kpKey     = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	kpSession = "arn:aws:sts::111122223333:assumed-role/nitrosigner-parent/i-0123456789abcdef0"

	// PCR0-2 and PCR4 of the real non-debug document
	// (verify/testdata/att_blocky_2024-09-07.cbor): the old image.
	kpOldPCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
	kpOldPCR1 = "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa"
	kpOldPCR2 = "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c"
	kpPCR4    = "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44"
)

var (
	kpZero = strings.Repeat("00", 48)
	// The new image is signed: it has a PCR8.
	kpNewPCR0 = strings.Repeat("a1", 48)
	kpNewPCR1 = strings.Repeat("b2", 48)
	kpNewPCR2 = strings.Repeat("c3", 48)
	kpNewPCR8 = strings.Repeat("d4", 48)

	// kpPCR3 is PCR3 of an enclave whose parent has the role kpRole,
	// SHA-384(48 zero bytes || ARN), computed here without the eif package.
	kpPCR3 = func() string {
		h := sha512.New384()
		h.Write(make([]byte, 48))
		h.Write([]byte(kpRole))
		return hex.EncodeToString(h.Sum(nil))
	}()
)

// kpMeasurements is nitro-cli's measurements JSON for PCR0-2 (and PCR8 if
// not empty).
func kpMeasurements(pcr0, pcr1, pcr2, pcr8 string) string {
	s := `{"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"` + pcr0 + `","PCR1":"` + pcr1 + `","PCR2":"` + pcr2 + `"`
	if pcr8 != "" {
		s += `,"PCR8":"` + pcr8 + `"`
	}
	return s + "}}\n"
}

// kpFiles writes the measurements of the old and the new image.
func kpFiles(t *testing.T) (oldFile, newFile string) {
	t.Helper()
	return kpWrite(t, "old.json", kpMeasurements(kpOldPCR0, kpOldPCR1, kpOldPCR2, "")),
		kpWrite(t, "new.json", kpMeasurements(strings.ToUpper(kpNewPCR0), kpNewPCR1, kpNewPCR2, kpNewPCR8))
}

func kpWrite(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// runKMSPolicyTest runs kms-policy and reports its exit status as the
// command would.
func runKMSPolicyTest(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = report(&errOut, runKMSPolicy(args, &out, &errOut))
	if code != 0 {
		assert.Empty(t, out.String(), "nothing on stdout when the command fails")
	}
	return code, out.String(), errOut.String()
}

// kpPolicy runs kms-policy with the role and admin above and parses the
// policy it prints.
func kpPolicy(t *testing.T, args ...string) (*kmspolicy.Policy, string) {
	t.Helper()
	code, stdout, stderr := runKMSPolicyTest(t, append([]string{"--role-arn", kpRole, "--admin-arn", kpAdmin}, args...)...)
	require.Equal(t, 0, code, stderr)
	p, err := kmspolicy.Parse([]byte(stdout))
	require.NoError(t, err)
	return p, stderr
}

// kpAttestation is a decrypt request by the parent's session with an
// attestation holding pcrs, PCR0-15 zero unless given.
func kpAttestation(t *testing.T, pcrs map[int]string) kmspolicy.Request {
	t.Helper()
	a := &kmspolicy.Attestation{PCRs: make(map[int][]byte)}
	for i := range 16 {
		v, ok := pcrs[i]
		if !ok {
			v = kpZero
		}
		b, err := hex.DecodeString(v)
		require.NoError(t, err)
		a.PCRs[i] = b
	}
	return kmspolicy.Request{Principal: kpSession, Action: "kms:Decrypt", Resource: kpKey, Attestation: a}
}

func kpOldImage(pcr3 string) map[int]string {
	return map[int]string{0: kpOldPCR0, 1: kpOldPCR1, 2: kpOldPCR2, 3: pcr3, 4: kpPCR4}
}

func kpNewImage(pcr3 string) map[int]string {
	return map[int]string{0: kpNewPCR0, 1: kpNewPCR1, 2: kpNewPCR2, 3: pcr3, 4: kpPCR4, 8: kpNewPCR8}
}

func TestKMSPolicyGolden(t *testing.T) {
	oldFile, newFile := kpFiles(t)
	tests := []struct {
		golden string
		files  []string
		images []map[int]string
	}{
		{"kms-policy.golden.json", []string{newFile},
			[]map[int]string{{0: kpNewPCR0, 1: kpNewPCR1, 2: kpNewPCR2, 3: kpPCR3, 8: kpNewPCR8}}},
		{"kms-policy-two-images.golden.json", []string{oldFile, newFile}, []map[int]string{
			{0: kpOldPCR0, 1: kpOldPCR1, 2: kpOldPCR2, 3: kpPCR3},
			{0: kpNewPCR0, 1: kpNewPCR1, 2: kpNewPCR2, 3: kpPCR3, 8: kpNewPCR8},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			args := []string{"kms-policy", "--role-arn", kpRole, "--admin-arn", kpAdmin}
			for _, f := range tt.files {
				args = append(args, "--pcrs", f)
			}
			code, stdout, stderr := runKMSPolicyTest(t, args[1:]...)
			require.Equal(t, 0, code, stderr)
			assert.Empty(t, stderr)

			// The policy is the library's, for the file's PCRs and PCR3.
			opts := kmspolicy.GenerateOptions{Account: "111122223333", AdminPrincipal: kpAdmin, ParentRole: kpRole}
			for _, pcrs := range tt.images {
				opts.Images = append(opts.Images, kmspolicy.Image{PCRs: pcrs})
			}
			want, err := kmspolicy.Generate(opts)
			require.NoError(t, err)
			assert.Equal(t, string(want), stdout)

			golden := filepath.Join("testdata", tt.golden)
			if *updateKMSPolicy {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(stdout), 0o644))
			}
			b, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(b), stdout, "run go test -update-kms-policy to accept a change")
		})
	}
}

func TestKMSPolicyEvaluates(t *testing.T) {
	oldFile, newFile := kpFiles(t)
	otherPCR3 := strings.Repeat("e5", 48)
	changedPCR0 := kpOldImage(kpPCR3)
	changedPCR0[0] = strings.Repeat("f6", 48)
	mix := kpNewImage(kpPCR3)
	mix[1], mix[2] = kpOldPCR1, kpOldPCR2
	otherPCR4 := kpOldImage(kpPCR3)
	otherPCR4[4] = strings.Repeat("e5", 48)

	one, _ := kpPolicy(t, "--pcrs", oldFile)
	both, _ := kpPolicy(t, "--pcrs", oldFile, "--pcrs", newFile)
	withPCR4, _ := kpPolicy(t, "--pcrs", oldFile, "--pcr", "4=0x"+strings.ToUpper(kpPCR4))
	noPCR3, warning := kpPolicy(t, "--pcrs", oldFile, "--no-pcr3")
	assert.Contains(t, warning, "WARNING: --no-pcr3")
	assert.Contains(t, warning, "any IAM role")

	tests := []struct {
		name   string
		policy *kmspolicy.Policy
		pcrs   map[int]string
		want   kmspolicy.Decision
	}{
		{"file pcrs and role pcr3", one, kpOldImage(kpPCR3), kmspolicy.Allow},
		{"changed pcr0", one, changedPCR0, kmspolicy.ImplicitDeny},
		{"other role", one, kpOldImage(otherPCR3), kmspolicy.ImplicitDeny},
		{"other image", one, kpNewImage(kpPCR3), kmspolicy.ImplicitDeny},
		{"debug enclave", one, map[int]string{3: kpPCR3, 4: kpPCR4}, kmspolicy.ExplicitDeny},
		{"two files: old image", both, kpOldImage(kpPCR3), kmspolicy.Allow},
		{"two files: new image", both, kpNewImage(kpPCR3), kmspolicy.Allow},
		{"two files: mix of both", both, mix, kmspolicy.ImplicitDeny},
		{"two files: other role", both, kpNewImage(otherPCR3), kmspolicy.ImplicitDeny},
		{"extra pcr4", withPCR4, kpOldImage(kpPCR3), kmspolicy.Allow},
		{"extra pcr4: other instance", withPCR4, otherPCR4, kmspolicy.ImplicitDeny},
		{"no pcr3: other role", noPCR3, kpOldImage(otherPCR3), kmspolicy.Allow},
		{"no pcr3: changed pcr0", noPCR3, changedPCR0, kmspolicy.ImplicitDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tt.policy.Evaluate(kpAttestation(t, tt.pcrs))
			assert.Equal(t, tt.want, got, reason)
		})
	}

	// Without an attestation document the parent gets nothing.
	got, reason := both.Evaluate(kmspolicy.Request{Principal: kpSession, Action: "kms:Decrypt", Resource: kpKey})
	assert.Equal(t, kmspolicy.ExplicitDeny, got, reason)
}

func TestKMSPolicyStatements(t *testing.T) {
	oldFile, newFile := kpFiles(t)
	code, stdout, _ := runKMSPolicyTest(t, "--role-arn", kpRole, "--admin-arn", kpAdmin, "--pcrs", oldFile, "--pcrs", newFile)
	require.Equal(t, 0, code)
	var doc struct {
		Statement []struct {
			Sid       string
			Effect    string
			Condition map[string]map[string]string
		}
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc))
	var conditioned []string
	for _, s := range doc.Statement {
		if s.Effect == "Allow" && s.Condition != nil {
			conditioned = append(conditioned, s.Sid)
			assert.Equal(t, kpPCR3, s.Condition["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR3"])
		}
	}
	assert.Equal(t, []string{"EnclaveUseWithAttestation0", "EnclaveUseWithAttestation1"}, conditioned, "one statement per --pcrs file")
	assert.Equal(t, kpOldPCR0, doc.Statement[1].Condition["StringEqualsIgnoreCase"]["kms:RecipientAttestation:ImageSha384"])
	assert.Equal(t, kpNewPCR8, doc.Statement[2].Condition["StringEqualsIgnoreCase"]["kms:RecipientAttestation:PCR8"])
	assert.NotContains(t, doc.Statement[1].Condition["StringEqualsIgnoreCase"], "kms:RecipientAttestation:PCR8")
}

func TestKMSPolicyOut(t *testing.T) {
	oldFile, _ := kpFiles(t)
	args := []string{"--role-arn", kpRole, "--admin-arn", kpAdmin, "--pcrs", oldFile}
	_, want, _ := runKMSPolicyTest(t, args...)
	require.NotEmpty(t, want)

	out := filepath.Join(t.TempDir(), "policy.json")
	require.NoError(t, os.WriteFile(out, []byte("previous"), 0o600))
	code, stdout, stderr := runKMSPolicyTest(t, append(args, "--out", out)...)
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, stdout)
	assert.Empty(t, stderr)
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, want, string(got))
	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left behind")

	code, _, stderr = runKMSPolicyTest(t, append(args, "--out", filepath.Join(t.TempDir(), "missing", "policy.json"))...)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--out: ")
}

// TestKMSPolicyFromDescribe feeds the output of eif describe --json to
// kms-policy, as the release process does.
func TestKMSPolicyFromDescribe(t *testing.T) {
	var img bytes.Buffer
	m, err := eif.Build(&img, eif.BuildConfig{Kernel: []byte("kernel"), Cmdline: "console=ttyS0", Ramdisks: [][]byte{[]byte("init"), []byte("app")}})
	require.NoError(t, err)
	image := kpWrite(t, "app.eif", img.String())
	var desc bytes.Buffer
	require.NoError(t, runEIF(t.Context(), []string{"describe", image, "--json"}, &desc))
	file := kpWrite(t, "measurements.json", desc.String())

	p, _ := kpPolicy(t, "--pcrs", file)
	pcrs := map[int]string{0: hex.EncodeToString(m.PCR0), 1: hex.EncodeToString(m.PCR1), 2: hex.EncodeToString(m.PCR2), 3: kpPCR3}
	got, reason := p.Evaluate(kpAttestation(t, pcrs))
	assert.Equal(t, kmspolicy.Allow, got, reason)
	pcrs[2] = kpOldPCR2
	got, reason = p.Evaluate(kpAttestation(t, pcrs))
	assert.Equal(t, kmspolicy.ImplicitDeny, got, reason)
}

func TestKMSPolicyErrors(t *testing.T) {
	oldFile, newFile := kpFiles(t)
	debug := kpWrite(t, "debug.json", kpMeasurements(kpZero, kpZero, kpZero, ""))
	zeroPCR8 := kpWrite(t, "zero8.json", kpMeasurements(kpOldPCR0, kpOldPCR1, kpOldPCR2, kpZero))
	onlyPCR1 := kpWrite(t, "pcr1.json", `{"PCR1":"`+kpOldPCR1+`"}`)
	otherRole := kpWrite(t, "role.json", `{"PCR0":"`+kpOldPCR0+`","PCR3":"`+strings.Repeat("e5", 48)+`"}`)
	withPCR4 := kpWrite(t, "pcr4.json", `{"PCR0":"`+kpOldPCR0+`","PCR4":"`+kpPCR4+`"}`)
	notJSON := kpWrite(t, "bad.json", "PCR0: e72a")
	sha256 := kpWrite(t, "sha256.json", `{"Measurements":{"HashAlgorithm":"Sha256","PCR0":"`+kpOldPCR0+`"}}`)
	base := []string{"--role-arn", kpRole, "--admin-arn", kpAdmin}
	with := func(args ...string) []string { return append(append([]string{}, base...), args...) }

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no role", []string{"--admin-arn", kpAdmin, "--pcrs", oldFile}, "--role-arn, --admin-arn and --pcrs are required"},
		{"no admin", []string{"--role-arn", kpRole, "--pcrs", oldFile}, "--role-arn, --admin-arn and --pcrs are required"},
		{"no pcrs", base, "--role-arn, --admin-arn and --pcrs are required"},
		{"argument", with("--pcrs", oldFile, "extra"), `unexpected argument "extra"`},
		{"unknown flag", with("--pcrs", oldFile, "--pcr0", kpOldPCR0), "flag provided but not defined: -pcr0"},
		{"role is a user", []string{"--role-arn", "arn:aws:iam::111122223333:user/parent", "--admin-arn", kpAdmin, "--pcrs", oldFile}, "--role-arn: \"arn:aws:iam::111122223333:user/parent\" is not an IAM role ARN"},
		{"role is an instance profile", []string{"--role-arn", "arn:aws:iam::111122223333:instance-profile/parent", "--admin-arn", kpAdmin, "--pcrs", oldFile}, "is not an IAM role ARN"},
		{"admin is the account root", []string{"--role-arn", kpRole, "--admin-arn", "arn:aws:iam::111122223333:root", "--pcrs", oldFile}, `--admin-arn "arn:aws:iam::111122223333:root" is not an IAM role or user ARN`},
		{"admin is the role", []string{"--role-arn", kpRole, "--admin-arn", kpRole, "--pcrs", oldFile}, "--admin-arn must differ from --role-arn"},
		{"pcr: not hex", with("--pcrs", oldFile, "--pcr", "4="+strings.Repeat("zz", 48)), "--pcr 4=zzzz"},
		{"pcr: short", with("--pcrs", oldFile, "--pcr", "4=abcd"), "want 96 hex digits"},
		{"pcr: no index", with("--pcrs", oldFile, "--pcr", kpPCR4), "want N=HEX with N from 0 to 31"},
		{"pcr: index 32", with("--pcrs", oldFile, "--pcr", "32="+kpPCR4), "want N=HEX with N from 0 to 31"},
		{"pcr: index with sign", with("--pcrs", oldFile, "--pcr", "+4="+kpPCR4), "want N=HEX with N from 0 to 31"},
		{"pcr: zeros", with("--pcrs", oldFile, "--pcr", "4="+kpZero), "PCR4 is all zeros"},
		{"pcr: twice", with("--pcrs", oldFile, "--pcr", "4="+kpPCR4, "--pcr", "4="+kpPCR4), "PCR4 given twice"},
		{"pcr: other pcr3", with("--pcrs", oldFile, "--pcr", "3="+strings.Repeat("e5", 48)), "differs from PCR3 of --role-arn"},
		{"pcr: other pcr0 than the file", with("--pcrs", oldFile, "--pcr", "0="+kpNewPCR0), "PCR0 is " + kpOldPCR0 + ", but --pcr gives " + kpNewPCR0},
		{"file: other pcr3", with("--pcrs", otherRole), "PCR3 is e5e5"},
		{"file: other pcr4", with("--pcrs", withPCR4, "--pcr", "4="+strings.Repeat("e5", 48)), "PCR4 is " + kpPCR4 + ", but --pcr gives"},
		{"file: debug measurements", with("--pcrs", debug), "--pcrs " + debug + ": PCR0 is all zeros, as reported by debug-mode enclaves"},
		{"file: debug measurements second", with("--pcrs", oldFile, "--pcrs", debug), "--pcrs " + debug + ": PCR0 is all zeros"},
		{"file: zero pcr8", with("--pcrs", zeroPCR8), "PCR8 is all zeros"},
		{"file: no image", with("--pcrs", onlyPCR1), "neither PCR0 (image) nor PCR8"},
		{"file: missing", with("--pcrs", filepath.Join(t.TempDir(), "none.json")), "none.json: no such file or directory"},
		{"file: directory", with("--pcrs", t.TempDir()), "--pcrs: "},
		{"file: not JSON", with("--pcrs", notJSON), "not a JSON object"},
		{"file: not SHA-384", with("--pcrs", sha256), "is not SHA-384"},
		{"file: same image twice", with("--pcrs", newFile, "--pcrs", oldFile, "--pcrs", oldFile), "--pcrs " + oldFile + ": the same image as --pcrs " + oldFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "policy.json")
			code, _, stderr := runKMSPolicyTest(t, append(tt.args, "--out", out)...)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, tt.want)
			assert.True(t, strings.HasPrefix(stderr, "nitrosigner: "), stderr)
			if strings.HasPrefix(tt.want, "--role-arn, ") {
				assert.Contains(t, stderr, "\nusage: nitrosigner kms-policy ")
			}
			assert.NoFileExists(t, out)
		})
	}
}

func TestKMSPolicyHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		code, stdout, stderr := runKMSPolicyTest(t, arg)
		assert.Equal(t, 0, code)
		assert.Empty(t, stderr)
		assert.True(t, strings.HasPrefix(stdout, "usage: "+kmsPolicySynopsis+"\n"))
		for _, f := range []string{"-role-arn ARN", "-admin-arn ARN", "-pcrs file", "-pcr N=HEX", "-no-pcr3", "-out file"} {
			assert.Contains(t, stdout, f)
		}
	}
}
