//go:build !nosim

package kmssim_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
)

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ec := map[string]string{"kek_id": "k1"}
	custom := allowPolicy(kmssimtest.PrincipalARN, "kms:*")
	var (
		enabled, disabled, pending string
		blob                       []byte
		caPEM                      []byte
	)

	// Each phase runs in a subtest, so its server stops when it ends.
	t.Run("first start", func(t *testing.T) {
		e := start(t, kmssim.Config{StateDir: dir})
		ctx := context.Background()
		enabled = e.createKey(t, custom)
		disabled = e.createKey(t, "")
		pending = e.createKey(t, "")
		blob = encrypt(t, e.client, enabled, ec)
		_, err := e.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(disabled)})
		require.NoError(t, err)
		_, err = e.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(pending), PendingWindowInDays: aws.Int32(7)})
		require.NoError(t, err)
		_, err = e.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/kek"), TargetKeyId: aws.String(enabled)})
		require.NoError(t, err)
		caPEM = e.srv.CACertPEM()
	})

	for _, f := range []struct {
		name string
		mode os.FileMode
	}{{kmssim.StateFile, 0o600}, {kmssim.CAKeyFile, 0o600}, {kmssim.CACertFile, 0o644}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		require.NoError(t, err)
		assert.Equal(t, f.mode, fi.Mode().Perm(), f.name)
	}
	onDisk, err := os.ReadFile(filepath.Join(dir, kmssim.CACertFile))
	require.NoError(t, err)
	assert.Equal(t, caPEM, onDisk)

	t.Run("after restart", func(t *testing.T) {
		e := start(t, kmssim.Config{StateDir: dir})
		ctx := context.Background()
		assert.Equal(t, caPEM, e.srv.CACertPEM(), "the CA is kept")
		assert.Equal(t, []string{enabled, disabled, pending}, e.srv.KeyARNs())

		dec, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, EncryptionContext: ec})
		require.NoError(t, err)
		assert.Equal(t, []byte("wallet secret"), dec.Plaintext)

		states := map[string]types.KeyState{enabled: types.KeyStateEnabled, disabled: types.KeyStateDisabled, pending: types.KeyStatePendingDeletion}
		for arn, want := range states {
			d, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
			require.NoError(t, err)
			assert.Equal(t, want, d.KeyMetadata.KeyState, arn)
		}
		pol, err := e.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(enabled)})
		require.NoError(t, err)
		assert.Equal(t, custom, aws.ToString(pol.Policy))
		arn, err := e.srv.KeyARN("alias/kek")
		require.NoError(t, err)
		assert.Equal(t, enabled, arn)
	})
}

func TestStateDirLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := kmssim.Config{StateDir: dir, Credentials: map[string]kmssim.Credential{"AKID": {Secret: "s", PrincipalARN: kmssimtest.PrincipalARN}}}
	first, err := kmssim.New(cfg)
	require.NoError(t, err)
	_, err = kmssim.New(cfg)
	require.ErrorIs(t, err, kmssim.ErrStateDirInUse)
	require.NoError(t, first.Close())
	require.NoError(t, first.Close(), "Close is idempotent")
	second, err := kmssim.New(cfg)
	require.NoError(t, err)
	require.NoError(t, second.Close())
}

func TestNewRejects(t *testing.T) {
	creds := map[string]kmssim.Credential{"AKID": {Secret: "s", PrincipalARN: kmssimtest.PrincipalARN}}
	withState := func(content string, mode os.FileMode) string {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, kmssim.StateFile), []byte(content), mode))
		return dir
	}
	// A state directory for account 111122223333 in us-east-1.
	owned := t.TempDir()
	s, err := kmssim.New(kmssim.Config{StateDir: owned, Credentials: creds})
	require.NoError(t, err)
	_, err = s.CreateKey(kmssim.KeyOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	tests := []struct {
		name string
		cfg  kmssim.Config
		msg  string
	}{
		{"no state dir", kmssim.Config{Credentials: creds}, "StateDir is required"},
		{"no credentials", kmssim.Config{StateDir: t.TempDir()}, "credential"},
		{"credential without principal", kmssim.Config{StateDir: t.TempDir(), Credentials: map[string]kmssim.Credential{"AKID": {Secret: "s"}}}, "principal ARN"},
		{"bad account", kmssim.Config{StateDir: t.TempDir(), Credentials: creds, Account: "12345"}, "Account"},
		{"bad region", kmssim.Config{StateDir: t.TempDir(), Credentials: creds, Region: "Mars"}, "Region"},
		{"bad account policy", kmssim.Config{StateDir: t.TempDir(), Credentials: creds, AccountPolicy: []byte("{")}, "AccountPolicy"},
		{"corrupt state", kmssim.Config{StateDir: withState("{", 0o600), Credentials: creds}, "parse state file"},
		{"readable state", kmssim.Config{StateDir: withState("{}", 0o644), Credentials: creds}, "must not be accessible"},
		{"other version", kmssim.Config{StateDir: withState(`{"version": 9}`, 0o600), Credentials: creds}, "version 9"},
		{"other account", kmssim.Config{StateDir: owned, Credentials: creds, Account: "444455556666"}, "belongs to account 111122223333"},
		{"other region", kmssim.Config{StateDir: owned, Credentials: creds, Region: "eu-west-1"}, "in us-east-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := kmssim.New(tt.cfg)
			require.ErrorContains(t, err, tt.msg)
			assert.Nil(t, s)
		})
	}
}

func TestTLSCertificate(t *testing.T) {
	e := start(t, kmssim.Config{TLSNames: []string{"kms.internal", "10.0.0.7"}})
	block, _ := pem.Decode(e.srv.CACertPEM())
	require.NotNil(t, block)
	ca, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	assert.True(t, ca.IsCA)

	leaf, err := x509.ParseCertificate(e.srv.TLSConfig().Certificates[0].Certificate[0])
	require.NoError(t, err)
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "kms.us-east-1.amazonaws.com", "kms.internal", "10.0.0.7"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: e.pool, DNSName: name})
		assert.NoError(t, err, name)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: e.pool, DNSName: "example.com"})
	assert.Error(t, err)
}

func TestAdminAPI(t *testing.T) {
	e := start(t, kmssim.Config{})
	policy := []byte(allowPolicy(kmssimtest.PrincipalARN, "kms:*"))

	arn, err := e.srv.CreateKey(kmssim.KeyOptions{Description: "boot key", Alias: "alias/boot", Policy: policy})
	require.NoError(t, err)
	got, err := e.srv.KeyARN("alias/boot")
	require.NoError(t, err)
	assert.Equal(t, arn, got)
	d, err := e.client.DescribeKey(context.Background(), &kms.DescribeKeyInput{KeyId: aws.String("alias/boot")})
	require.NoError(t, err)
	assert.Equal(t, "boot key", aws.ToString(d.KeyMetadata.Description))

	_, err = e.srv.CreateKey(kmssim.KeyOptions{Alias: "alias/boot"})
	require.ErrorContains(t, err, "already exists")
	_, err = e.srv.CreateKey(kmssim.KeyOptions{Alias: "boot"})
	require.Error(t, err)
	_, err = e.srv.CreateKey(kmssim.KeyOptions{Policy: []byte(`{"Statement": []}`)})
	require.Error(t, err)
	_, err = e.srv.KeyARN("alias/none")
	require.ErrorIs(t, err, kmssim.ErrKeyNotFound)

	changed, err := e.srv.SetKeyPolicy(arn, policy)
	require.NoError(t, err)
	assert.False(t, changed)
	changed, err = e.srv.SetKeyPolicy(arn, []byte(allowPolicy(kmssimtest.PrincipalARN, "kms:Describe*")))
	require.NoError(t, err)
	assert.True(t, changed)
	_, err = e.client.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
	assert.Equal(t, "AccessDeniedException", apiCode(err))
	_, err = e.srv.SetKeyPolicy("alias/none", policy)
	require.ErrorIs(t, err, kmssim.ErrKeyNotFound)
}
