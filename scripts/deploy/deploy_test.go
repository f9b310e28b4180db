package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

const (
	adminARN = "arn:aws:iam::111122223333:role/nitrosigner-admin"
	roleARN  = "arn:aws:iam::111122223333:role/nitrosigner-parent"
	keyARN   = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

var (
	oldPCR0 = strings.Repeat("a1", 48)
	newPCR0 = strings.Repeat("b2", 48)
	zeros   = strings.Repeat("0", 96)
)

// scripts are the executable deploy scripts (lib.sh is sourced by them).
var scripts = []string{"setup-parent.sh", "run-enclave.sh", "kms-setup.sh", "upgrade.sh"}

// stubbed are the external commands the scripts may change the system with;
// the tests put stand-ins for them first on PATH.
var stubbed = []string{"aws", "nitro-cli", "nitrosigner", "systemctl", "dnf", "usermod", "useradd", "install", "docker"}

// stubHeader starts every stand-in: it logs the call and, when STUB_FORBID
// is set (dry runs), fails so that the test notices.
const stubHeader = `#!/usr/bin/env bash
set -euo pipefail
printf '%s\n' "$(basename "$0") $*" >>"$STUB_LOG"
[[ -z ${STUB_FORBID:-} ]] || { echo "stub: $(basename "$0") called in a dry run" >&2; exit 97; }
`

// stubBodies are the scripted behaviours of nitro-cli, aws and nitrosigner.
// State lives in $STUB_STATE.
var stubBodies = map[string]string{
	"nitro-cli": `state=$STUB_STATE/enclaves.json
case $1 in
describe-enclaves) cat "$state" ;;
terminate-enclave)
	[[ $2 == --enclave-id ]] || exit 98
	jq --arg id "$3" '[.[] | select(.EnclaveID != $id)]' "$state" >"$state.new"
	mv "$state.new" "$state"
	printf '{"EnclaveID":"%s","Terminated":true}\n' "$3" ;;
run-enclave)
	cid= name= flags=NONE
	while (($#)); do
		case $1 in
		--enclave-cid) cid=$2; shift ;;
		--enclave-name) name=$2; shift ;;
		--debug-mode) flags=DEBUG_MODE ;;
		esac
		shift
	done
	[[ -z ${STUB_FORCE_DEBUG:-} ]] || flags=DEBUG_MODE
	jq --argjson cid "$cid" --arg name "$name" --arg flags "$flags" \
		'. + [{EnclaveName: $name, EnclaveID: "i-0new-enc", EnclaveCID: $cid, State: "RUNNING", Flags: $flags}]' \
		"$state" >"$state.new"
	mv "$state.new" "$state"
	echo '{"EnclaveID":"i-0new-enc"}' ;;
*) exit 98 ;;
esac
`,
	"aws": `[[ $1 != --region ]] || shift 2
policy=
for ((i = 1; i <= $#; i++)); do
	if [[ ${!i} == --policy ]]; then j=$((i + 1)); policy=${!j#file://}; fi
done
case "$1 $2" in
"kms describe-key")
	if [[ -f $STUB_STATE/key-exists ]]; then echo ` + keyARN + `; else
		echo "An error occurred (NotFoundException) when calling the DescribeKey operation" >&2; exit 254; fi ;;
"kms create-key") cp "$policy" "$STUB_STATE/created-policy.json"; echo ` + keyARN + ` ;;
"kms create-alias" | "kms enable-key-rotation") ;;
"kms get-key-policy") echo '{"Version":"2012-10-17","Id":"previous","Statement":[]}' ;;
"kms put-key-policy") cp "$policy" "$STUB_STATE/put-policy.json" ;;
*) exit 98 ;;
esac
`,
	"nitrosigner": `case $1 in
kms-policy) cat "$STUB_STATE/policy.json" ;;
*) exit 0 ;;
esac
`,
}

// env is one test's sandbox: stand-ins on PATH, their log and state, and a
// working directory.
type env struct {
	t     *testing.T
	dir   string   // working directory of the scripts
	state string   // STUB_STATE
	log   string   // STUB_LOG
	path  string   // PATH
	extra []string // more variables for the stand-ins
}

func newEnv(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, dir: filepath.Join(root, "work"), state: filepath.Join(root, "state"), log: filepath.Join(root, "calls.log")}
	bin := filepath.Join(root, "bin")
	for _, d := range []string{e.dir, e.state, bin} {
		require.NoError(t, os.Mkdir(d, 0o755))
	}
	for _, name := range stubbed {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(stubHeader+stubBodies[name]), 0o755))
	}
	require.NoError(t, os.WriteFile(e.log, nil, 0o644))
	e.path = bin + string(os.PathListSeparator) + os.Getenv("PATH")
	return e
}

// with returns e bound to t, for use in a subtest of the test that made e.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// writeState writes a state file of the stand-ins.
func (e *env) writeState(name, content string) {
	e.t.Helper()
	require.NoError(e.t, os.WriteFile(filepath.Join(e.state, name), []byte(content), 0o644))
}

// readState reads a state file of the stand-ins.
func (e *env) readState(name string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.state, name))
	require.NoError(e.t, err)
	return string(b)
}

// file writes a file into the working directory and returns its path.
func (e *env) file(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	require.NoError(e.t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs a deploy script. forbid makes every stand-in fail, for dry runs.
func (e *env) run(forbid bool, script string, args ...string) result {
	e.t.Helper()
	abs, err := filepath.Abs(script)
	require.NoError(e.t, err)
	cmd := exec.Command(abs, args...)
	cmd.Dir = e.dir
	cmd.Env = []string{"PATH=" + e.path, "HOME=" + e.dir, "LC_ALL=C", "STUB_LOG=" + e.log, "STUB_STATE=" + e.state}
	if forbid {
		cmd.Env = append(cmd.Env, "STUB_FORBID=1")
	}
	cmd.Env = append(cmd.Env, e.extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		require.NoError(e.t, err)
	}
	e.t.Logf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", script, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// dryRun runs a script with --dry-run, requires success and that no
// stand-in was called, and returns the result.
func (e *env) dryRun(script string, args ...string) result {
	e.t.Helper()
	r := e.run(true, script, append(args, "--dry-run")...)
	require.Equal(e.t, 0, r.code, "dry run failed: %s", r.stderr)
	require.Empty(e.t, e.callLines(), "a dry run called an external command")
	return r
}

func measurements(pcr0 string) string {
	return `{"Measurements":{"HashAlgorithm":"Sha384 { ... }","PCR0":"` + pcr0 + `","PCR1":"` + strings.Repeat("c3", 48) + `","PCR2":"` + strings.Repeat("d4", 48) + `"}}`
}

// goodPolicy is shaped like the output of nitrosigner kms-policy.
func goodPolicy(pcr0s ...string) string {
	p := map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{
			map[string]any{"Sid": "KeyAdministration", "Effect": "Allow", "Principal": map[string]any{"AWS": adminARN},
				"Action": []string{"kms:DescribeKey", "kms:PutKeyPolicy", "kms:Get*"}, "Resource": "*"},
			map[string]any{"Sid": "EnclaveOnly", "Effect": "Allow", "Principal": map[string]any{"AWS": roleARN},
				"Action": []string{"kms:Decrypt", "kms:GenerateDataKey"}, "Resource": "*",
				"Condition": map[string]any{"StringEqualsIgnoreCase": map[string]any{
					"kms:RecipientAttestation:PCR0": pcr0s,
					"kms:RecipientAttestation:PCR3": strings.Repeat("e5", 48)}}},
		},
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestShellcheck(t *testing.T) {
	t.Parallel()
	sc, err := exec.LookPath("shellcheck")
	require.NoError(t, err, "shellcheck is not installed: apt-get install -y shellcheck (CI's .ci/run must install it)")
	var files []string
	require.NoError(t, filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".sh") {
			files = append(files, p)
		}
		return err
	}))
	require.Contains(t, files, filepath.Join("..", "deploy", "run-enclave.sh"))
	require.GreaterOrEqual(t, len(files), len(scripts)+1)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(sc, "--external-sources", "--severity=style", f).CombinedOutput()
			assert.NoError(t, err, "shellcheck found problems:\n%s", out)
		})
	}
}

func TestScriptConventions(t *testing.T) {
	t.Parallel()
	for _, s := range scripts {
		t.Run(s, func(t *testing.T) {
			b, err := os.ReadFile(s)
			require.NoError(t, err)
			text := string(b)
			assert.True(t, strings.HasPrefix(text, "#!/usr/bin/env bash\n"), "shebang")
			assert.Contains(t, text, "\nset -euo pipefail\n")
			assert.Contains(t, text, "--dry-run) DRY_RUN=true ;;")
			info, err := os.Stat(s)
			require.NoError(t, err)
			assert.NotZero(t, info.Mode()&0o111, "not executable")
		})
	}
	b, err := os.ReadFile("lib.sh")
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "# shellcheck shell=bash\n"), "lib.sh is sourced, not run")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		script string
		args   []string
		want   []string
	}{
		{"setup-parent.sh", []string{"--help"}, []string{"--region", "--cpus", "--memory-mib", "--kms-forwarder"}},
		{"run-enclave.sh", []string{"-h"}, []string{"--eif", "--cid", "default 16", "--debug", "DEBUG MODE"}},
		{"kms-setup.sh", []string{"--help"}, []string{"create", "put-policy", "check-policy", "--measurements"}},
		{"kms-setup.sh", []string{"put-policy", "--help"}, []string{"put-policy"}},
		{"upgrade.sh", []string{"--help"}, []string{"allow-both", "roll", "verify", "finalize"}},
		{"upgrade.sh", []string{"roll", "--help"}, []string{"roll"}},
	}
	for _, tt := range tests {
		t.Run(tt.script+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			e := newEnv(t)
			r := e.run(true, tt.script, tt.args...)
			require.Equal(t, 0, r.code)
			assert.Contains(t, r.stdout, "Usage: ")
			assert.Contains(t, r.stdout, "--dry-run")
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
			assert.Empty(t, e.callLines())
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	eif := e.file("enclave.eif", "EIF")
	m := e.file("m.json", measurements(newPCR0))
	debug := e.file("debug.json", measurements(zeros))
	tests := []struct {
		name   string
		script string
		args   []string
		want   string
	}{
		{"no region", "setup-parent.sh", nil, "--region is required"},
		{"bad region", "setup-parent.sh", []string{"--region", "us_east"}, "not an AWS region"},
		{"odd memory", "setup-parent.sh", []string{"--region", "us-east-1", "--memory-mib", "32"}, "--memory-mib must be a number >= 64"},
		{"parent CID", "setup-parent.sh", []string{"--region", "us-east-1", "--cid", "3"}, "enclave CID must be a number from 4"},
		{"bad forwarder", "setup-parent.sh", []string{"--region", "us-east-1", "--kms-forwarder", "socat"}, "--kms-forwarder must be parent or vsock-proxy"},
		{"dir store elsewhere", "setup-parent.sh", []string{"--region", "us-east-1", "--store", "dir:///srv/blobs"}, "must be below /var/lib/nitrosigner"},
		{"store with space", "setup-parent.sh", []string{"--region", "us-east-1", "--store", "dir:///a b"}, "--store must be"},
		{"value missing", "setup-parent.sh", []string{"--region"}, "--region needs a value"},
		{"unknown flag", "setup-parent.sh", []string{"--region", "us-east-1", "--bogus"}, "unknown argument '--bogus'"},
		{"no eif", "run-enclave.sh", nil, "--eif is required"},
		{"missing eif", "run-enclave.sh", []string{"--eif", "/nonexistent.eif"}, "no such file"},
		{"CID 0", "run-enclave.sh", []string{"--eif", eif, "--cid", "0"}, "enclave CID must be a number from 4"},
		{"CID any", "run-enclave.sh", []string{"--eif", eif, "--cid", "4294967295"}, "enclave CID must be a number from 4"},
		{"CID text", "run-enclave.sh", []string{"--eif", eif, "--cid", "sixteen"}, "enclave CID must be a number from 4"},
		{"no cpus", "run-enclave.sh", []string{"--eif", eif, "--cpus", "0"}, "--cpus must be a number >= 1"},
		{"bad name", "run-enclave.sh", []string{"--eif", eif, "--name", "a b"}, "--name must be"},
		{"no command", "kms-setup.sh", nil, "missing command"},
		{"no admin", "kms-setup.sh", []string{"create"}, "--admin-arn is required"},
		{"bad admin", "kms-setup.sh", []string{"create", "--admin-arn", `arn:aws:iam::1:role/x"`}, "not an IAM role, user or root ARN"},
		{"aws alias", "kms-setup.sh", []string{"create", "--admin-arn", adminARN, "--alias", "alias/aws/ebs"}, "--alias must be"},
		{"no measurements", "kms-setup.sh", []string{"put-policy", "--admin-arn", adminARN, "--key-id", keyARN, "--role-arn", roleARN}, "--measurements is required"},
		{"user as role", "kms-setup.sh", []string{"put-policy", "--admin-arn", adminARN, "--key-id", keyARN, "--role-arn", "arn:aws:iam::111122223333:user/bob", "--measurements", m}, "not an IAM role ARN"},
		{"three images", "kms-setup.sh", []string{"put-policy", "--admin-arn", adminARN, "--key-id", keyARN, "--role-arn", roleARN, "--measurements", m, "--measurements", m, "--measurements", m}, "at most two"},
		{"bad key", "kms-setup.sh", []string{"put-policy", "--admin-arn", adminARN, "--key-id", "key with space", "--policy", m}, "not a KMS key ARN"},
		{"no step", "upgrade.sh", nil, "missing step"},
		{"unknown step", "upgrade.sh", []string{"go"}, "unknown step 'go'"},
		{"roll without eif", "upgrade.sh", []string{"roll", "--measurements", m}, "roll needs --eif"},
		{"bad canary", "upgrade.sh", []string{"verify", "--measurements", m, "--canary", "k1"}, "--canary must be a key id"},
		{"debug measurements", "upgrade.sh", []string{"plan", "--old", m, "--new", debug}, "debug-mode enclave"},
		{"same image", "upgrade.sh", []string{"plan", "--old", m, "--new", m}, "same PCR0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.with(t)
			r := e.run(true, tt.script, tt.args...)
			assert.NotEqual(t, 0, r.code)
			assert.Contains(t, r.stderr, tt.want)
			assert.Empty(t, r.stdout)
			assert.Empty(t, e.callLines())
		})
	}
}

func TestSetupParentDryRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{{
		name: "defaults",
		args: []string{"--region", "us-east-1"},
		want: []string{
			"+ dnf install -y aws-nitro-enclaves-cli jq\n",
			"+ write /etc/nitro_enclaves/allocator.yaml (mode 0644):\n",
			"| memory_mib: 2048\n", "| cpu_count: 2\n",
			"+ systemctl enable nitro-enclaves-allocator.service\n",
			"+ usermod -aG ne ec2-user\n",
			"| ENCLAVE_CID=16\n", "| ENCLAVE_EIF=/opt/nitrosigner/eif/enclave.eif\n",
			`--listen unix:///run/nitrosigner/signer.sock --enclave vsock://16:5000 --store dir:///var/lib/nitrosigner/blobs --credentials aws`,
			" --kms-forward-listen vsock://any:8000 --kms-forward-target kms.us-east-1.amazonaws.com:443\"\n",
			"+ systemctl disable --now nitro-enclaves-vsock-proxy.service\n",
			"+ systemctl disable --now nitrosigner-kms-forward.service\n",
			"+ systemctl enable nitrosigner-enclave.service nitrosigner-parent.service\n",
			"/usr/local/libexec/nitrosigner/run-enclave.sh\n",
		},
		notWant: []string{"docker", "vsock-proxy.yaml", "/usr/local/bin/nitrosigner-parent"},
	}, {
		name: "vsock-proxy, bigger enclave, S3, binaries, build tools",
		args: []string{"--region", "eu-west-1", "--cpus", "4", "--memory-mib", "8192", "--cid", "20",
			"--kms-forwarder", "vsock-proxy", "--user", "admin", "--build-tools",
			"--store", "s3://blobs/prod?region=eu-west-1&sse=aws:kms", "--bin", "BIN"},
		want: []string{
			"+ dnf install -y aws-nitro-enclaves-cli jq aws-nitro-enclaves-cli-devel docker\n",
			"| memory_mib: 8192\n", "| cpu_count: 4\n",
			"+ usermod -aG ne admin\n", "+ usermod -aG docker admin\n",
			"| ENCLAVE_CID=20\n", "| ENCLAVE_CPUS=4\n", "| ENCLAVE_MEMORY_MIB=8192\n",
			"--enclave vsock://20:5000 --store s3://blobs/prod?region=eu-west-1&sse=aws:kms --credentials aws --metrics-listen tcp://127.0.0.1:9464\"\n",
			"+ write /etc/nitrosigner/vsock-proxy.yaml (mode 0644):\n",
			"| - {address: kms.eu-west-1.amazonaws.com, port: 443}\n",
			"| KMS_HOST=kms.eu-west-1.amazonaws.com\n",
			"+ systemctl enable --now nitrosigner-kms-forward.service\n",
			"/usr/local/bin/nitrosigner-parent\n",
		},
		notWant: []string{"--kms-forward-listen vsock", "us-east-1"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			args := slices.Clone(tt.args)
			if i := slices.Index(args, "BIN"); i >= 0 {
				args[i] = mkBin(t, e)
			}
			r := e.dryRun("setup-parent.sh", args...)
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
			for _, w := range tt.notWant {
				assert.NotContains(t, r.stdout, w)
			}
			// Every change is printed as a command or a file, nothing else.
			for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
				assert.Regexp(t, `^(\+ |\| |\|$)`, line)
			}
			assert.Contains(t, r.stderr, "dry-run: nothing was changed")
		})
	}
}

// TestUnitsMatchSetup checks that what the systemd units run and read is
// what setup-parent.sh installs and writes.
func TestUnitsMatchSetup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := e.dryRun("setup-parent.sh", "--region", "us-east-1", "--kms-forwarder", "vsock-proxy", "--bin", mkBin(t, e)).stdout
	installed := regexp.MustCompile(`(?m)^\+ (?:install -m 0[0-9]+ \S+ (\S+)|write (\S+) )`)
	have := map[string]bool{"/usr/bin/vsock-proxy": true} // from aws-nitro-enclaves-cli
	for _, m := range installed.FindAllStringSubmatch(out, -1) {
		have[m[1]+m[2]] = true
	}
	ref := regexp.MustCompile(`(?m)^(?:EnvironmentFile=|ExecStart=|ExecStop=)(\S+)|--config (\S+)`)
	units, err := filepath.Glob("systemd/*.service")
	require.NoError(t, err)
	require.Len(t, units, 3)
	for _, u := range units {
		b, err := os.ReadFile(u)
		require.NoError(t, err)
		assert.True(t, have["/etc/systemd/system/"+filepath.Base(u)], "%s is not installed", u)
		refs := ref.FindAllStringSubmatch(string(b), -1)
		require.NotEmpty(t, refs)
		for _, m := range refs {
			p := m[1] + m[2]
			assert.True(t, have[p], "%s uses %s, which setup-parent.sh does not install", u, p)
		}
	}
}

func mkBin(t *testing.T, e *env) string {
	t.Helper()
	bin := filepath.Join(e.dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	for _, b := range []string{"parent", "nitrosigner"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, b), nil, 0o755))
	}
	return bin
}

func TestRunEnclaveDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	eif := e.file("enclave.eif", "EIF")

	r := e.dryRun("run-enclave.sh", "--eif", eif)
	assert.Contains(t, r.stdout, "+ nitro-cli run-enclave --eif-path "+eif+" --cpu-count 2 --memory 2048 --enclave-cid 16 --enclave-name nitrosigner\n")
	assert.Contains(t, r.stdout, "+ nitro-cli terminate-enclave --enclave-id ENCLAVE_ID\n")
	assert.NotContains(t, r.stdout, "--debug-mode")
	assert.NotContains(t, r.stderr, "WARNING")

	r = e.dryRun("run-enclave.sh", "--eif", eif, "--debug", "--cid", "42", "--cpus", "4", "--memory-mib", "4096")
	assert.Contains(t, r.stdout, "--cpu-count 4 --memory 4096 --enclave-cid 42 --enclave-name nitrosigner --debug-mode\n")
	assert.Contains(t, r.stderr, "WARNING: DEBUG MODE")

	r = e.dryRun("run-enclave.sh", "--terminate")
	assert.Contains(t, r.stdout, "+ nitro-cli terminate-enclave")
	assert.NotContains(t, r.stdout, "run-enclave")
}

func TestRunEnclave(t *testing.T) {
	t.Parallel()
	const enclaves = `[
	 {"EnclaveName":"old","EnclaveID":"i-0old-enc","EnclaveCID":16,"State":"RUNNING","Flags":"NONE"},
	 {"EnclaveName":"nitrosigner","EnclaveID":"i-0stale-enc","EnclaveCID":18,"State":"RUNNING","Flags":"NONE"},
	 {"EnclaveName":"other","EnclaveID":"i-0other-enc","EnclaveCID":17,"State":"RUNNING","Flags":"NONE"}]`

	t.Run("replaces the enclave holding the CID or name", func(t *testing.T) {
		e := newEnv(t)
		e.writeState("enclaves.json", enclaves)
		eif := e.file("enclave.eif", "EIF")
		r := e.run(false, "run-enclave.sh", "--eif", eif)
		require.Equal(t, 0, r.code)
		assert.Equal(t, []string{
			"nitro-cli describe-enclaves",
			"nitro-cli terminate-enclave --enclave-id i-0old-enc",
			"nitro-cli terminate-enclave --enclave-id i-0stale-enc",
			"nitro-cli run-enclave --eif-path " + eif + " --cpu-count 2 --memory 2048 --enclave-cid 16 --enclave-name nitrosigner",
			"nitro-cli describe-enclaves",
		}, e.callLines())
		assert.Contains(t, r.stderr, "enclave nitrosigner is RUNNING with CID 16")
		var left []map[string]any
		require.NoError(t, json.Unmarshal([]byte(e.readState("enclaves.json")), &left))
		assert.Len(t, left, 2, "the other enclave stays, the new one runs")
	})

	t.Run("refuses an enclave in debug mode it did not ask for", func(t *testing.T) {
		e := newEnv(t)
		e.writeState("enclaves.json", "[]")
		e.extra = []string{"STUB_FORCE_DEBUG=1"}
		r := e.run(false, "run-enclave.sh", "--eif", e.file("enclave.eif", "EIF"))
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "runs in debug mode although --debug was not given")
	})

	t.Run("terminate only", func(t *testing.T) {
		e := newEnv(t)
		e.writeState("enclaves.json", enclaves)
		r := e.run(false, "run-enclave.sh", "--terminate", "--cid", "17", "--name", "none")
		require.Equal(t, 0, r.code)
		assert.Equal(t, []string{"nitro-cli describe-enclaves", "nitro-cli terminate-enclave --enclave-id i-0other-enc"}, e.callLines())
	})
}

// callLines returns the logged calls of the stand-ins.
func (e *env) callLines() []string {
	e.t.Helper()
	b, err := os.ReadFile(e.log)
	require.NoError(e.t, err)
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestKMSCreate(t *testing.T) {
	t.Parallel()
	t.Run("dry run", func(t *testing.T) {
		e := newEnv(t)
		r := e.dryRun("kms-setup.sh", "create", "--admin-arn", adminARN, "--region", "us-east-1")
		assert.Contains(t, r.stdout, "+ aws --region us-east-1 kms create-key --description 'nitrosigner: wraps the enclave key-encryption keys' ")
		assert.Contains(t, r.stdout, "--key-spec SYMMETRIC_DEFAULT --key-usage ENCRYPT_DECRYPT --policy file://")
		assert.Contains(t, r.stdout, "+ aws --region us-east-1 kms create-alias --alias-name alias/nitrosigner --target-key-id NEW_KEY_ARN\n")
		assert.Contains(t, r.stdout, "+ aws --region us-east-1 kms enable-key-rotation --key-id NEW_KEY_ARN\n")
		assert.Contains(t, r.stdout, `"Principal": {"AWS": "`+adminARN+`"}`)
	})

	t.Run("creates the key with an admin-only policy", func(t *testing.T) {
		e := newEnv(t)
		r := e.run(false, "kms-setup.sh", "create", "--admin-arn", adminARN)
		require.Equal(t, 0, r.code)
		assert.Equal(t, keyARN+"\n", r.stdout, "stdout is the ARN only")
		calls := e.callLines()
		require.Len(t, calls, 4)
		assert.Equal(t, "aws kms describe-key --key-id alias/nitrosigner --query KeyMetadata.Arn --output text", calls[0])
		assert.Contains(t, calls[1], "aws kms create-key ")
		assert.Equal(t, "aws kms create-alias --alias-name alias/nitrosigner --target-key-id "+keyARN, calls[2])
		assert.Equal(t, "aws kms enable-key-rotation --key-id "+keyARN, calls[3])

		policy := e.readState("created-policy.json")
		var p struct {
			Statement []struct {
				Effect    string
				Principal map[string]string
				Action    []string
			}
		}
		require.NoError(t, json.Unmarshal([]byte(policy), &p))
		require.Len(t, p.Statement, 1)
		assert.Equal(t, adminARN, p.Statement[0].Principal["AWS"])
		assert.Contains(t, p.Statement[0].Action, "kms:PutKeyPolicy")
		assert.Contains(t, p.Statement[0].Action, "kms:DisableKey")
		for _, a := range p.Statement[0].Action {
			assert.NotRegexp(t, `(?i)crypt|GenerateDataKey|CreateGrant|\*`, a)
		}
		// The bootstrap policy passes the script's own check.
		r = e.run(false, "kms-setup.sh", "check-policy", filepath.Join(e.state, "created-policy.json"))
		assert.Equal(t, 0, r.code)
	})

	t.Run("finds an existing key by its alias", func(t *testing.T) {
		e := newEnv(t)
		e.writeState("key-exists", "")
		r := e.run(false, "kms-setup.sh", "create", "--admin-arn", adminARN)
		require.Equal(t, 0, r.code)
		assert.Equal(t, keyARN+"\n", r.stdout)
		assert.Len(t, e.callLines(), 1, "only describe-key")
	})
}

func TestKMSPutPolicy(t *testing.T) {
	t.Parallel()
	t.Run("installs the generated policy for both images", func(t *testing.T) {
		e := newEnv(t)
		policy := goodPolicy(oldPCR0, newPCR0)
		e.writeState("policy.json", policy)
		oldM, newM := e.file("old.json", measurements(oldPCR0)), e.file("new.json", measurements(newPCR0))
		out := filepath.Join(e.dir, "policy.json")
		r := e.run(false, "kms-setup.sh", "put-policy", "--key-id", keyARN, "--role-arn", roleARN,
			"--admin-arn", adminARN, "--measurements", oldM, "--measurements", newM, "--out", out, "--region", "us-east-1")
		require.Equal(t, 0, r.code)
		assert.Equal(t, []string{
			"nitrosigner kms-policy --role-arn " + roleARN + " --admin-arn " + adminARN + " --pcrs " + oldM + " --pcrs " + newM,
			"aws --region us-east-1 kms get-key-policy --key-id " + keyARN + " --policy-name default --query Policy --output text",
			"aws --region us-east-1 kms put-key-policy --key-id " + keyARN + " --policy-name default --policy file://" + out,
		}, e.callLines())
		assert.Equal(t, policy, e.readState("put-policy.json"))
		prev, err := os.ReadFile(filepath.Join(e.dir, "policy.previous.json"))
		require.NoError(t, err)
		assert.Contains(t, string(prev), `"Id":"previous"`)
	})

	t.Run("refuses a policy that lets the parent decrypt", func(t *testing.T) {
		e := newEnv(t)
		e.writeState("policy.json", `{"Statement":[{"Sid":"Default","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}`)
		r := e.run(false, "kms-setup.sh", "put-policy", "--key-id", keyARN, "--role-arn", roleARN,
			"--admin-arn", adminARN, "--measurements", e.file("m.json", measurements(newPCR0)), "--out", filepath.Join(e.dir, "p.json"))
		assert.Equal(t, 1, r.code)
		assert.Contains(t, r.stderr, "statement Default: allows kms:* without a kms:RecipientAttestation condition")
		for _, c := range e.callLines() {
			assert.NotContains(t, c, "put-key-policy")
		}
	})

	t.Run("dry run with a given policy", func(t *testing.T) {
		e := newEnv(t)
		p := e.file("given.json", goodPolicy(newPCR0))
		r := e.dryRun("kms-setup.sh", "put-policy", "--key-id", "alias/nitrosigner", "--admin-arn", adminARN, "--policy", p)
		assert.Contains(t, r.stdout, "+ aws kms put-key-policy --key-id alias/nitrosigner --policy-name default --policy file://"+p+"\n")
		assert.Contains(t, r.stderr, "passed the checks")
	})
}

func TestCheckPolicy(t *testing.T) {
	t.Parallel()
	stmt := func(s string) string { return `{"Version":"2012-10-17","Statement":[` + s + `]}` }
	const role = `"Principal":{"AWS":"` + roleARN + `"},"Resource":"*"`
	attested := `"Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:PCR0":"` + newPCR0 + `"}}`
	tests := []struct {
		name   string
		policy string
		want   string // "" = accepted
	}{
		{"enclave only", goodPolicy(newPCR0), ""},
		{"deny anything", stmt(`{"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*"}`), ""},
		{"admin wildcards", stmt(`{"Sid":"A","Effect":"Allow",` + role + `,"Action":["kms:Get*","kms:List*","kms:Describe*","kms:*Alias"]}`), ""},
		{"IAM delegation", stmt(`{"Sid":"Root","Effect":"Allow",` + role + `,"Action":"kms:*"}`), "statement Root: allows kms:*"},
		{"bare star", stmt(`{"Sid":"S","Effect":"Allow",` + role + `,"Action":"*"}`), "statement S: allows *"},
		{"wildcard reaching decrypt", stmt(`{"Sid":"W","Effect":"Allow",` + role + `,"Action":["kms:De*"]}`), "statement W: allows kms:De*"},
		{"encrypt", stmt(`{"Sid":"E","Effect":"Allow",` + role + `,"Action":"kms:Encrypt"}`), "statement E: allows kms:Encrypt"},
		{"grant", stmt(`{"Sid":"G","Effect":"Allow",` + role + `,"Action":"kms:CreateGrant"}`), "statement G: allows kms:CreateGrant"},
		{"reencrypt", stmt(`{"Sid":"R","Effect":"Allow",` + role + `,"Action":"kms:ReEncryptFrom"}`), "statement R: allows kms:ReEncryptFrom"},
		{"not action", stmt(`{"Sid":"N","Effect":"Allow",` + role + `,"NotAction":"kms:Decrypt"}`), "statement N: Allow with NotAction"},
		{"anyone", stmt(`{"Sid":"P","Effect":"Allow","Principal":{"AWS":"*"},"Resource":"*","Action":"kms:Decrypt",` + attested + `}`), `statement P: Principal "*"`},
		{"if exists", stmt(`{"Sid":"I","Effect":"Allow",` + role + `,"Action":"kms:Decrypt","Condition":{"StringEqualsIgnoreCaseIfExists":{"kms:RecipientAttestation:ImageSha384":"` + newPCR0 + `"}}}`), "StringEqualsIgnoreCaseIfExists on kms:recipientattestation:imagesha384"},
		{"debug PCR0", stmt(`{"Sid":"D","Effect":"Allow",` + role + `,"Action":"kms:Decrypt","Condition":{"StringEqualsIgnoreCase":{"kms:RecipientAttestation:PCR0":["` + newPCR0 + `","` + zeros + `"]}}}`), "statement D: allows PCR0 = zeros"},
		{"no statement", `{"Version":"2012-10-17"}`, "the policy has no Statement"},
		{"not JSON", `Statement: []`, "is not a JSON key policy"},
	}
	e := newEnv(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.with(t)
			r := e.run(true, "kms-setup.sh", "check-policy", e.file("policy.json", tt.policy))
			if tt.want == "" {
				assert.Equal(t, 0, r.code)
				return
			}
			assert.Equal(t, 1, r.code)
			assert.Contains(t, r.stderr, tt.want)
		})
	}
}

// TestCheckPolicyGenerated runs check-policy on the output of the real
// generator behind nitrosigner kms-policy, and on that output with its
// attestation condition removed.
func TestCheckPolicyGenerated(t *testing.T) {
	t.Parallel()
	gen, err := kmspolicy.Generate(kmspolicy.GenerateOptions{
		Account: "111122223333", AdminPrincipal: adminARN, ParentRole: roleARN,
		PCRs: map[int]string{0: newPCR0, 3: strings.Repeat("e5", 48)},
	})
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(gen, &doc))
	var stripped bool
	for _, st := range doc["Statement"].([]any) {
		st := st.(map[string]any)
		if st["Effect"] == "Allow" && st["Condition"] != nil {
			delete(st, "Condition")
			stripped = true
		}
	}
	require.True(t, stripped, "the generated policy has a conditioned Allow")
	weakened, err := json.Marshal(doc)
	require.NoError(t, err)

	e := newEnv(t)
	r := e.run(true, "kms-setup.sh", "check-policy", e.file("generated.json", string(gen)))
	assert.Equal(t, 0, r.code)
	r = e.run(true, "kms-setup.sh", "check-policy", e.file("weakened.json", string(weakened)))
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stderr, "kms:Decrypt, kms:GenerateDataKey")
	assert.Contains(t, r.stderr, "without a kms:RecipientAttestation condition")
}

func TestUpgradeDryRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	oldM, newM := e.file("old.json", measurements(oldPCR0)), e.file("new.json", measurements(newPCR0))
	kms := []string{"--key-id", keyARN, "--role-arn", roleARN, "--admin-arn", adminARN}

	r := e.dryRun("upgrade.sh", append([]string{"allow-both", "--old", oldM, "--new", newM}, kms...)...)
	assert.Contains(t, r.stdout, "+ nitrosigner kms-policy --role-arn "+roleARN+" --admin-arn "+adminARN+" --pcrs "+oldM+" --pcrs "+newM+" > ./kms-key-policy.json\n")
	assert.Contains(t, r.stdout, "+ aws kms put-key-policy --key-id "+keyARN)

	r = e.dryRun("upgrade.sh", append([]string{"finalize", "--new", newM}, kms...)...)
	assert.Contains(t, r.stdout, "+ nitrosigner kms-policy --role-arn "+roleARN+" --admin-arn "+adminARN+" --pcrs "+newM+" > ./kms-key-policy.json\n")
	assert.NotContains(t, r.stdout, oldM)

	envFile := e.file("enclave.env", "# comment\nENCLAVE_EIF=/opt/nitrosigner/eif/old.eif\nENCLAVE_CID=16\n")
	eif := e.file("new.eif", "EIF")
	r = e.dryRun("upgrade.sh", "roll", "--eif", eif, "--measurements", newM, "--env-file", envFile)
	dest := "/opt/nitrosigner/eif/" + newPCR0[:16]
	assert.Contains(t, r.stdout, "+ nitro-cli describe-eif --eif-path "+eif+"\n")
	assert.Contains(t, r.stdout, "+ install -m 0644 "+eif+" "+dest+".eif\n")
	assert.Contains(t, r.stdout, "| # comment\n| ENCLAVE_EIF="+dest+".eif\n| ENCLAVE_CID=16\n")
	assert.Contains(t, r.stdout, "+ systemctl restart nitrosigner-enclave.service\n")
	b, err := os.ReadFile(envFile)
	require.NoError(t, err)
	assert.Contains(t, string(b), "old.eif", "a dry run changes nothing")

	r = e.dryRun("upgrade.sh", "verify", "--measurements", newM, "--canary", "key_"+strings.Repeat("0f", 16))
	assert.Contains(t, r.stdout, "+ nitrosigner --addr unix:///run/nitrosigner/signer.sock attest --verify --pcrs "+newM+"\n")
	assert.Contains(t, r.stdout, "sign --key key_"+strings.Repeat("0f", 16)+" --digest ")

	r = e.run(true, "upgrade.sh", "plan", "--old", oldM, "--new", newM)
	require.Equal(t, 0, r.code)
	for _, w := range []string{"allow-both", "roll --eif NEW.eif", "verify --measurements", "roll --eif OLD.eif", "finalize"} {
		assert.Contains(t, r.stdout, w)
	}
	assert.Less(t, strings.Index(r.stdout, "allow-both"), strings.Index(r.stdout, "finalize"))
}
