package eif_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/eif"
)

const testKeyARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// stubs writes fake docker, nitro-cli and nitrosigner commands that log
// their arguments into dir. The fake nitro-cli copies image to
// --output-file and prints measurements the way nitro-cli does.
func stubs(t *testing.T, dir string, image []byte, measurements string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "image.eif"), image, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "measurements.out"), []byte(measurements), 0o600))
	scripts := map[string]string{
		"docker": `#!/usr/bin/env bash
[[ $1 == buildx && $2 == version ]] && exit 0
printf '%s\n' "$@" >"` + dir + `/docker.args"
while (($#)); do [[ $1 == --file ]] && cp "$2" "` + dir + `/Dockerfile.rendered"; shift; done
exit 0
`,
		"nitro-cli": `#!/usr/bin/env bash
printf '%s\n' "$@" >"` + dir + `/nitro-cli.args"
while (($#)); do [[ $1 == --output-file ]] && cp "` + dir + `/image.eif" "$2"; shift; done
echo "Start building the Enclave Image..." >&2
echo "Enclave Image successfully created." >&2
cat "` + dir + `/measurements.out"
`,
		"nitrosigner": `#!/usr/bin/env bash
printf '%s\n' "$@" >"` + dir + `/nitrosigner.args"
`,
	}
	for name, body := range scripts {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o700))
	}
}

// runScript runs script with the stub directory first in PATH.
func runScript(t *testing.T, script, stubDir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bash, lookErr := exec.LookPath("bash")
	if lookErr != nil {
		t.Skip("bash not installed")
	}
	cmd := exec.Command(bash, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(),
		"PATH="+stubDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"NITROSIGNER="+filepath.Join(stubDir, "nitrosigner"),
		"SOURCE_DATE_EPOCH=1700000000")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func readLines(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestBuildScript(t *testing.T) {
	var img bytes.Buffer
	m, err := eif.Build(&img, eif.BuildConfig{Kernel: kernel, Cmdline: string(cmdline), Ramdisks: [][]byte{bootstrap, app}})
	require.NoError(t, err)
	nitroOut, err := json.MarshalIndent(map[string]any{"Measurements": m.NitroCLI()}, "", "  ")
	require.NoError(t, err)

	stubDir, outDir := t.TempDir(), t.TempDir()
	stubs(t, stubDir, img.Bytes(), string(nitroOut)+"\n")
	out := filepath.Join(outDir, "enclave.eif")
	stdout, stderr, err := runScript(t, "build.sh", stubDir,
		"--region", "eu-west-1", "--kms-key-id", testKeyARN, "--kms-key-id", "arn:aws:kms:eu-west-1:111122223333:alias/next",
		"--kek-max-keys", "1000", "--arch", "aarch64", "--out", out)
	require.NoError(t, err, stderr)

	// The rendered Dockerfile is the repository's with the full command.
	rendered := readLines(t, filepath.Join(stubDir, "Dockerfile.rendered"))
	wantCMD := `CMD ["/enclave","--listen","vsock://:5000","--nsm","device","--region","eu-west-1",` +
		`"--kms-endpoint","https://kms.eu-west-1.amazonaws.com","--kms-dial","vsock://3:8000",` +
		`"--kms-key-id","` + testKeyARN + `","--kms-key-id","arn:aws:kms:eu-west-1:111122223333:alias/next",` +
		`"--kek-max-keys","1000"]`
	assert.Equal(t, wantCMD, rendered[len(rendered)-1])
	var cmds int
	for _, l := range rendered {
		if strings.HasPrefix(l, "CMD ") {
			cmds++
		}
	}
	assert.Equal(t, 1, cmds, "the default CMD is replaced, not repeated")
	var cmdArgs []string
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(wantCMD, "CMD ")), &cmdArgs), "the CMD is valid JSON")
	assert.Contains(t, stderr, wantCMD)

	docker := readLines(t, filepath.Join(stubDir, "docker.args"))
	assert.Equal(t, []string{"buildx", "build", "--file"}, docker[:3])
	assert.Equal(t, []string{"--platform", "linux/arm64", "--build-arg", "SOURCE_DATE_EPOCH=1700000000",
		"--provenance=false", "--sbom=false", "--output", "type=docker,name=nitrosigner-enclave:local,rewrite-timestamp=true"}, docker[4:12])
	repo, err := filepath.Abs("..")
	require.NoError(t, err)
	assert.Equal(t, repo, docker[len(docker)-1], "the build context is the repository root")

	assert.Equal(t, []string{"build-enclave", "--docker-uri", "nitrosigner-enclave:local", "--output-file", out},
		readLines(t, filepath.Join(stubDir, "nitro-cli.args")))

	// nitro-cli's JSON is recorded next to the EIF and printed.
	measurementsFile := filepath.Join(outDir, "enclave.measurements.json")
	recorded, err := os.ReadFile(measurementsFile)
	require.NoError(t, err)
	assert.Equal(t, string(nitroOut)+"\n", string(recorded))
	assert.Equal(t, string(nitroOut)+"\n", stdout)

	// And cross-checked with nitrosigner eif describe.
	assert.Equal(t, []string{"eif", "describe", out, "--pcrs", measurementsFile},
		readLines(t, filepath.Join(stubDir, "nitrosigner.args")))
}

func TestBuildScriptDryRun(t *testing.T) {
	stubDir, outDir := t.TempDir(), t.TempDir()
	stubs(t, stubDir, nil, "")
	out := filepath.Join(outDir, "x.eif")
	stdout, stderr, err := runScript(t, "build.sh", stubDir, "--dry-run", "--region", "us-east-1", "--kms-key-id", testKeyARN,
		"--signing-certificate", "cert.pem", "--private-key", "key.pem", "--out", out)
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, `CMD ["/enclave","--listen","vsock://:5000","--nsm","device","--region","us-east-1"`)
	assert.Regexp(t, regexp.MustCompile(`(?m)^\+ docker buildx build --file \S+/Dockerfile --platform linux/amd64 `), stdout)
	assert.Contains(t, stdout, "+ nitro-cli build-enclave --docker-uri nitrosigner-enclave:local --output-file "+out+
		" --signing-certificate cert.pem --private-key key.pem\n")
	assert.Contains(t, stdout, "eif describe "+out+" --pcrs "+filepath.Join(outDir, "x.measurements.json"))

	for _, f := range []string{"docker.args", "nitro-cli.args", "nitrosigner.args"} {
		assert.NoFileExists(t, filepath.Join(stubDir, f), "--dry-run runs nothing")
	}
	entries, err := os.ReadDir(outDir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestBuildScriptRefuses(t *testing.T) {
	stubDir := t.TempDir()
	stubs(t, stubDir, nil, "")
	dockerfile, err := os.ReadFile("Dockerfile")
	require.NoError(t, err)
	script, err := os.ReadFile("build.sh")
	require.NoError(t, err)
	pinned := regexp.MustCompile(`@sha256:[0-9a-f]{64}`)
	require.True(t, pinned.Match(dockerfile), "the repository's Dockerfile pins its base image")

	// withDockerfile copies build.sh next to a modified Dockerfile.
	withDockerfile := func(content string) string {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(content), 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "build.sh"), script, 0o700))
		return filepath.Join(dir, "build.sh")
	}
	good := []string{"--dry-run", "--region", "us-east-1", "--kms-key-id", testKeyARN}
	tests := []struct {
		name    string
		script  string
		args    []string
		wantMsg string
	}{
		{"placeholder digest", withDockerfile(pinned.ReplaceAllString(string(dockerfile), "@sha256:"+strings.Repeat("0", 64))), good,
			"is not pinned by a real sha256 digest"},
		{"tag only", withDockerfile(pinned.ReplaceAllString(string(dockerfile), "")), good, "is not pinned by a real sha256 digest"},
		{"unpinned FROM", withDockerfile(string(dockerfile) + "\nFROM debian:12\n"), good, "FROM debian:12 is not pinned by digest"},
		{"no region", "build.sh", []string{"--kms-key-id", testKeyARN}, "--region is required"},
		{"no key", "build.sh", []string{"--region", "us-east-1"}, "--kms-key-id is required"},
		{"quote in key", "build.sh", []string{"--region", "us-east-1", "--kms-key-id", testKeyARN + `"`}, "is not a KMS key or alias ARN"},
		{"bad region", "build.sh", []string{"--region", "us east", "--kms-key-id", testKeyARN}, "is not an AWS region"},
		{"bad endpoint", "build.sh", append(good, "--kms-endpoint", "http://kms"), "is not https://HOST[:PORT]"},
		{"bad dial", "build.sh", append(good, "--kms-dial", "tcp://1.2.3.4:443"), "is not vsock://[CID]:PORT"},
		{"bad age", "build.sh", append(good, "--kek-max-age", "30 days"), "is not a duration"},
		{"bad arch", "build.sh", append(good, "--arch", "arm"), "neither x86_64 nor aarch64"},
		{"key without certificate", "build.sh", append(good, "--private-key", "k.pem"), "go together"},
		{"out not .eif", "build.sh", append(good, "--out", "x.img"), "does not end in .eif"},
		{"missing value", "build.sh", []string{"--region"}, "--region needs a value"},
		{"unknown argument", "build.sh", []string{"--frob"}, "unknown argument: --frob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runScript(t, tt.script, stubDir, tt.args...)
			require.Error(t, err)
			assert.Contains(t, stderr, tt.wantMsg)
			assert.NoFileExists(t, filepath.Join(stubDir, "docker.args"))
		})
	}
}
