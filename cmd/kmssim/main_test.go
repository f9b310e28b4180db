//go:build !nosim

package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
)

var urlPattern = regexp.MustCompile(`url=(https://\S+)`)

// instance is a running kmssim command.
type instance struct {
	stdout, stderr *syncbuf.Buffer
	url            string
	stop           func() int
}

// launch runs the command with args until stop is called and waits until
// it listens.
func launch(t *testing.T, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}}
	done := make(chan int, 1)
	env := func(string) string { return "" }
	go func() { done <- run(ctx, args, env, in.stdout, in.stderr) }()
	stopped := false
	var code int
	in.stop = func() int {
		if !stopped {
			cancel()
			code = <-done
			stopped = true
		}
		return code
	}
	t.Cleanup(func() { in.stop() })
	require.Eventually(t, func() bool {
		select {
		case code := <-done:
			done <- code
			return true
		default:
		}
		return urlPattern.MatchString(in.stderr.String())
	}, 20*time.Second, 5*time.Millisecond)
	m := urlPattern.FindStringSubmatch(in.stderr.String())
	require.NotNil(t, m, "not listening: %s", in.stderr.String())
	in.url = m[1]
	return in
}

func TestCommand(t *testing.T) {
	nsmDir := t.TempDir()
	sim, err := nsmsim.New(nsmsim.Config{Image: []byte("enclave"), StateDir: nsmDir, DevicePath: filepath.Join(t.TempDir(), "no-nsm")})
	require.NoError(t, err)
	sim.Close()

	state := t.TempDir()
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	principal := "arn:aws:iam::111122223333:role/parent"
	policy := func(action string) string {
		return fmt.Sprintf(`{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": %q}, "Action": %q, "Resource": "*"}]}`, principal, action)
	}
	require.NoError(t, os.WriteFile(policyFile, []byte(policy("kms:*")), 0o600))
	args := []string{
		"--listen", "127.0.0.1:0", "--state", state, "--nsm-root", filepath.Join(nsmDir, nsmsim.RootCertFile),
		"--access-key-id", "AKIDCMD", "--secret-access-key", "cmd-secret", "--principal", principal,
		"--create-key", "nitrosigner", "--policy", policyFile,
	}

	var arn string
	t.Run("first start creates the key", func(t *testing.T) {
		in := launch(t, args...)
		arn = strings.TrimSpace(in.stdout.String())
		assert.Regexp(t, `^arn:aws:kms:us-east-1:111122223333:key/[0-9a-f-]{36}$`, arn)
		written, err := os.ReadFile(filepath.Join(state, KeyARNFile))
		require.NoError(t, err)
		assert.Equal(t, arn+"\n", string(written))

		client := cmdClient(t, in.url, state)
		d, err := client.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String("alias/nitrosigner")})
		require.NoError(t, err)
		assert.Equal(t, arn, aws.ToString(d.KeyMetadata.Arn))
		p, err := client.GetKeyPolicy(context.Background(), &kms.GetKeyPolicyInput{KeyId: aws.String(arn)})
		require.NoError(t, err)
		assert.Equal(t, policy("kms:*"), aws.ToString(p.Policy))
		assert.Equal(t, 0, in.stop())
	})

	t.Run("restart keeps the key and applies a changed policy", func(t *testing.T) {
		require.NoError(t, os.WriteFile(policyFile, []byte(policy("kms:Describe*")), 0o600))
		in := launch(t, args...)
		assert.Equal(t, arn, strings.TrimSpace(in.stdout.String()))
		assert.Contains(t, in.stderr.String(), "key policy replaced")
		client := cmdClient(t, in.url, state)
		_, err := client.GetKeyPolicy(context.Background(), &kms.GetKeyPolicyInput{KeyId: aws.String(arn)})
		require.Error(t, err, "the new policy no longer allows GetKeyPolicy")
		assert.Equal(t, 0, in.stop())
	})
}

// cmdClient is an SDK client for a command instance, trusting the CA it
// wrote to the state directory.
func cmdClient(t *testing.T, url, state string) *kms.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(state, "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	return kmssimtest.NewClient(url, pool, "AKIDCMD", "cmd-secret")
}

func TestCommandSecretFromEnvironment(t *testing.T) {
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncbuf.Buffer
	done := make(chan int, 1)
	env := func(k string) string {
		if k == "KMSSIM_SECRET_ACCESS_KEY" {
			return "env-secret"
		}
		return ""
	}
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--state", state, "--access-key-id", "AKIDENV"}, env, &stdout, &stderr)
	}()
	require.Eventually(t, func() bool { return urlPattern.MatchString(stderr.String()) }, 20*time.Second, 5*time.Millisecond)
	url := urlPattern.FindStringSubmatch(stderr.String())[1]
	caPEM, err := os.ReadFile(filepath.Join(state, "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	_, err = kmssimtest.NewClient(url, pool, "AKIDENV", "env-secret").ListKeys(context.Background(), &kms.ListKeysInput{})
	require.NoError(t, err)
	assert.Contains(t, stderr.String(), "every request with a Recipient will be refused")
	assert.NotContains(t, stderr.String(), "env-secret", "the secret is never logged")
	cancel()
	assert.Equal(t, 0, <-done)
	assert.Empty(t, stdout.String(), "no key ARN without --create-key")
}

func TestCommandErrors(t *testing.T) {
	state := t.TempDir()
	badRoot := filepath.Join(t.TempDir(), "root.pem")
	require.NoError(t, os.WriteFile(badRoot, []byte("not pem"), 0o600))
	base := []string{"--listen", "127.0.0.1:0", "--state", state, "--access-key-id", "AKID", "--secret-access-key", "s"}
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no state", []string{"--access-key-id", "AKID", "--secret-access-key", "s"}, 2, "--state is required"},
		{"no access key", []string{"--state", state, "--secret-access-key", "s"}, 2, "--access-key-id is required"},
		{"no secret", []string{"--state", state, "--access-key-id", "AKID"}, 2, "KMSSIM_SECRET_ACCESS_KEY"},
		{"policy without key", append(base, "--policy", "p.json"), 2, "--policy needs --create-key"},
		{"unknown flag", append(base, "--frobnicate"), 2, "frobnicate"},
		{"extra argument", append(base, "extra"), 2, "unexpected arguments"},
		{"bad nsm root", append(base, "--nsm-root", badRoot), 1, "--nsm-root: "},
		{"missing policy file", append(base, "--create-key", "k", "--policy", filepath.Join(state, "none.json")), 1, "read key policy"},
		{"bad listen address", append(base, "--listen", "256.0.0.1:99999"), 1, "listen"},
		{"bad account", append(base, "--account", "12"), 1, "Account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncbuf.Buffer
			code := run(context.Background(), tt.args, func(string) string { return "" }, &stdout, &stderr)
			assert.Equal(t, tt.code, code)
			assert.Contains(t, stderr.String(), tt.msg)
		})
	}
}
