//go:build !nosim

package kmssim_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
)

func TestKeyManagement(t *testing.T) {
	e := start(t, kmssim.Config{})
	ctx := context.Background()

	created, err := e.client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("wallet KEKs")})
	require.NoError(t, err)
	md := created.KeyMetadata
	arn := aws.ToString(md.Arn)
	id := aws.ToString(md.KeyId)
	assert.Equal(t, "arn:aws:kms:us-east-1:111122223333:key/"+id, arn)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, id)
	assert.Equal(t, "111122223333", aws.ToString(md.AWSAccountId))
	assert.Equal(t, types.KeyStateEnabled, md.KeyState)
	assert.True(t, md.Enabled)
	assert.Equal(t, types.KeySpecSymmetricDefault, md.KeySpec)
	assert.Equal(t, types.KeyUsageTypeEncryptDecrypt, md.KeyUsage)
	assert.Equal(t, types.OriginTypeAwsKms, md.Origin)
	assert.Equal(t, types.KeyManagerTypeCustomer, md.KeyManager)
	assert.Equal(t, []types.EncryptionAlgorithmSpec{types.EncryptionAlgorithmSpecSymmetricDefault}, md.EncryptionAlgorithms)
	assert.Regexp(t, `^[0-9a-f]{64}$`, aws.ToString(md.CurrentKeyMaterialId))
	assert.Equal(t, "wallet KEKs", aws.ToString(md.Description))
	require.NotNil(t, md.CreationDate)
	assert.WithinDuration(t, time.Now(), *md.CreationDate, time.Minute)

	// DescribeKey by id, ARN and alias.
	_, err = e.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/kek"), TargetKeyId: aws.String(id)})
	require.NoError(t, err)
	for _, ref := range []string{id, arn, "alias/kek", "arn:aws:kms:us-east-1:111122223333:alias/kek"} {
		d, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(ref)})
		require.NoError(t, err, ref)
		assert.Equal(t, arn, aws.ToString(d.KeyMetadata.Arn), ref)
	}
	_, err = e.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/kek"), TargetKeyId: aws.String(id)})
	var exists *types.AlreadyExistsException
	require.ErrorAs(t, err, &exists)
	aliases, err := e.client.ListAliases(ctx, &kms.ListAliasesInput{})
	require.NoError(t, err)
	require.Len(t, aliases.Aliases, 1)
	assert.Equal(t, "alias/kek", aws.ToString(aliases.Aliases[0].AliasName))
	assert.Equal(t, id, aws.ToString(aliases.Aliases[0].TargetKeyId))
	_, err = e.client.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/kek")})
	require.NoError(t, err)
	_, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/kek")})
	var notFound *types.NotFoundException
	require.ErrorAs(t, err, &notFound)

	// ListKeys pages in creation order.
	second := e.createKey(t, "")
	third := e.createKey(t, "")
	page1, err := e.client.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(2)})
	require.NoError(t, err)
	require.Len(t, page1.Keys, 2)
	assert.True(t, page1.Truncated)
	assert.Equal(t, arn, aws.ToString(page1.Keys[0].KeyArn))
	assert.Equal(t, id, aws.ToString(page1.Keys[0].KeyId))
	assert.Equal(t, second, aws.ToString(page1.Keys[1].KeyArn))
	page2, err := e.client.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(2), Marker: page1.NextMarker})
	require.NoError(t, err)
	require.Len(t, page2.Keys, 1)
	assert.False(t, page2.Truncated)
	assert.Equal(t, third, aws.ToString(page2.Keys[0].KeyArn))
	_, err = e.client.ListKeys(ctx, &kms.ListKeysInput{Marker: aws.String("bogus")})
	var badMarker *types.InvalidMarkerException
	require.ErrorAs(t, err, &badMarker)
	assert.Equal(t, []string{arn, second, third}, e.srv.KeyARNs())

	// Default policy, then a replacement.
	pol, err := e.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(id)})
	require.NoError(t, err)
	assert.Equal(t, "default", aws.ToString(pol.PolicyName))
	assert.Contains(t, aws.ToString(pol.Policy), `"AWS": "arn:aws:iam::111122223333:root"`)
	assert.Contains(t, aws.ToString(pol.Policy), `"Action": "kms:*"`)
	newPolicy := allowPolicy(kmssimtest.PrincipalARN, "kms:*")
	_, err = e.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(id), Policy: aws.String(newPolicy)})
	require.NoError(t, err)
	pol, err = e.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("default")})
	require.NoError(t, err)
	assert.Equal(t, newPolicy, aws.ToString(pol.Policy))

	// Disable and enable.
	_, err = e.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(id)})
	require.NoError(t, err)
	d, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	require.NoError(t, err)
	assert.Equal(t, types.KeyStateDisabled, d.KeyMetadata.KeyState)
	assert.False(t, d.KeyMetadata.Enabled)
	_, err = e.client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
	d, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
	require.NoError(t, err)
	assert.Equal(t, types.KeyStateEnabled, d.KeyMetadata.KeyState)
}

func TestScheduleKeyDeletion(t *testing.T) {
	clk := newClock(time.Now())
	e := start(t, kmssim.Config{Now: clk.Now})
	ctx := context.Background()
	arn := e.createKey(t, "")
	_, err := e.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/doomed"), TargetKeyId: aws.String(arn)})
	require.NoError(t, err)
	blob := encrypt(t, e.client, arn, nil)

	for _, days := range []int32{6, 31} {
		_, err := e.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn), PendingWindowInDays: aws.Int32(days)})
		assert.Equal(t, "ValidationException", apiCode(err), "window %d", days)
	}

	out, err := e.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn), PendingWindowInDays: aws.Int32(7)})
	require.NoError(t, err)
	assert.Equal(t, arn, aws.ToString(out.KeyId))
	assert.Equal(t, types.KeyStatePendingDeletion, out.KeyState)
	assert.Equal(t, int32(7), aws.ToInt32(out.PendingWindowInDays))
	assert.WithinDuration(t, clk.Now().Add(7*24*time.Hour), aws.ToTime(out.DeletionDate), time.Second)

	d, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
	assert.Equal(t, types.KeyStatePendingDeletion, d.KeyMetadata.KeyState)
	assert.Equal(t, int32(7), aws.ToInt32(d.KeyMetadata.PendingDeletionWindowInDays))
	assert.WithinDuration(t, aws.ToTime(out.DeletionDate), aws.ToTime(d.KeyMetadata.DeletionDate), time.Millisecond)

	// Cryptographic use and state changes are refused while pending.
	var invalidState *types.KMSInvalidStateException
	_, err = e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	require.ErrorAs(t, err, &invalidState)
	assert.Contains(t, apiMessage(err), "is pending deletion")
	_, err = e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
	require.ErrorAs(t, err, &invalidState)
	_, err = e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
	require.ErrorAs(t, err, &invalidState)
	_, err = e.client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)})
	require.ErrorAs(t, err, &invalidState)
	_, err = e.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)})
	require.ErrorAs(t, err, &invalidState)
	_, err = e.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn)})
	require.ErrorAs(t, err, &invalidState)

	// Cancelling brings the key back disabled.
	_, err = e.client.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
	d, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
	assert.Equal(t, types.KeyStateDisabled, d.KeyMetadata.KeyState)
	assert.Nil(t, d.KeyMetadata.DeletionDate)
	_, err = e.client.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: aws.String(arn)})
	require.ErrorAs(t, err, &invalidState)

	// Default window is 30 days; after it the key and its alias are gone.
	out, err = e.client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
	assert.Equal(t, int32(30), aws.ToInt32(out.PendingWindowInDays))
	clk.Add(30*24*time.Hour - time.Second)
	_, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
	clk.Add(time.Second)
	var notFound *types.NotFoundException
	_, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	require.ErrorAs(t, err, &notFound)
	_, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/doomed")})
	require.ErrorAs(t, err, &notFound)
	_, err = e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	require.ErrorAs(t, err, &notFound)
	keys, err := e.client.ListKeys(ctx, &kms.ListKeysInput{})
	require.NoError(t, err)
	assert.Empty(t, keys.Keys)
}

// encrypt encrypts a fixed plaintext under arn with ctx.
func encrypt(t *testing.T, c *kms.Client, arn string, ec map[string]string) []byte {
	t.Helper()
	out, err := c.Encrypt(context.Background(), &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("wallet secret"), EncryptionContext: ec})
	require.NoError(t, err)
	return out.CiphertextBlob
}

func TestCryptoOperations(t *testing.T) {
	e := start(t, kmssim.Config{})
	ctx := context.Background()
	arn := e.createKey(t, "")
	other := e.createKey(t, "")
	ec := map[string]string{"kek_id": "k1", "purpose": "kek"}

	t.Run("encrypt decrypt", func(t *testing.T) {
		enc, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("hello"), EncryptionContext: ec})
		require.NoError(t, err)
		assert.Equal(t, arn, aws.ToString(enc.KeyId))
		assert.Equal(t, types.EncryptionAlgorithmSpecSymmetricDefault, enc.EncryptionAlgorithm)
		for _, keyID := range []*string{nil, aws.String(arn)} {
			dec, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, KeyId: keyID})
			require.NoError(t, err)
			assert.Equal(t, []byte("hello"), dec.Plaintext)
			assert.Equal(t, arn, aws.ToString(dec.KeyId))
			assert.Nil(t, dec.CiphertextForRecipient)
			assert.Regexp(t, `^[0-9a-f]{64}$`, aws.ToString(dec.KeyMaterialId))
		}
		// Each encryption uses a fresh nonce.
		again, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("hello"), EncryptionContext: ec})
		require.NoError(t, err)
		assert.NotEqual(t, enc.CiphertextBlob, again.CiphertextBlob)
	})

	t.Run("generate data key", func(t *testing.T) {
		for _, tt := range []struct {
			in   kms.GenerateDataKeyInput
			size int
		}{
			{kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes256}, 32},
			{kms.GenerateDataKeyInput{KeySpec: types.DataKeySpecAes128}, 16},
			{kms.GenerateDataKeyInput{NumberOfBytes: aws.Int32(1024)}, 1024},
		} {
			in := tt.in
			in.KeyId, in.EncryptionContext = aws.String(arn), ec
			out, err := e.client.GenerateDataKey(ctx, &in)
			require.NoError(t, err)
			require.Len(t, out.Plaintext, tt.size)
			assert.Equal(t, arn, aws.ToString(out.KeyId))
			dec, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: ec})
			require.NoError(t, err)
			assert.Equal(t, out.Plaintext, dec.Plaintext)
		}
		wp, err := e.client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec})
		require.NoError(t, err)
		assert.Equal(t, arn, aws.ToString(wp.KeyId))
		dec, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: wp.CiphertextBlob, EncryptionContext: ec})
		require.NoError(t, err)
		assert.Len(t, dec.Plaintext, 32)
	})

	t.Run("reencrypt", func(t *testing.T) {
		blob := encrypt(t, e.client, arn, ec)
		newEC := map[string]string{"kek_id": "k2"}
		out, err := e.client.ReEncrypt(ctx, &kms.ReEncryptInput{
			CiphertextBlob: blob, SourceEncryptionContext: ec,
			DestinationKeyId: aws.String(other), DestinationEncryptionContext: newEC,
		})
		require.NoError(t, err)
		assert.Equal(t, other, aws.ToString(out.KeyId))
		assert.Equal(t, arn, aws.ToString(out.SourceKeyId))
		dec, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: out.CiphertextBlob, EncryptionContext: newEC})
		require.NoError(t, err)
		assert.Equal(t, other, aws.ToString(dec.KeyId))
		assert.Equal(t, []byte("wallet secret"), dec.Plaintext)
		_, err = e.client.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: aws.String(other)})
		var invalid *types.InvalidCiphertextException
		require.ErrorAs(t, err, &invalid)
	})

	t.Run("generate random", func(t *testing.T) {
		a, err := e.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32)})
		require.NoError(t, err)
		b, err := e.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32)})
		require.NoError(t, err)
		require.Len(t, a.Plaintext, 32)
		assert.NotEqual(t, a.Plaintext, b.Plaintext)
		assert.Nil(t, a.CiphertextForRecipient)
	})

	t.Run("dry run", func(t *testing.T) {
		_, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x"), DryRun: aws.Bool(true)})
		var dry *types.DryRunOperationException
		require.ErrorAs(t, err, &dry)
	})
}

func TestEncryptionContext(t *testing.T) {
	e := start(t, kmssim.Config{})
	arn := e.createKey(t, "")
	ec := map[string]string{"kek_id": "k1", "purpose": "kek"}
	blob := encrypt(t, e.client, arn, ec)
	plain := encrypt(t, e.client, arn, nil)

	tests := []struct {
		name string
		blob []byte
		ec   map[string]string
		ok   bool
	}{
		{name: "same context", blob: blob, ec: map[string]string{"purpose": "kek", "kek_id": "k1"}, ok: true},
		{name: "missing context", blob: blob, ec: nil},
		{name: "other value", blob: blob, ec: map[string]string{"kek_id": "k2", "purpose": "kek"}},
		{name: "extra pair", blob: blob, ec: map[string]string{"kek_id": "k1", "purpose": "kek", "x": "y"}},
		{name: "subset", blob: blob, ec: map[string]string{"kek_id": "k1"}},
		{name: "key value swap", blob: blob, ec: map[string]string{"k1": "kek_id", "purpose": "kek"}},
		{name: "none and none", blob: plain, ec: nil, ok: true},
		{name: "none and empty", blob: plain, ec: map[string]string{}, ok: true},
		{name: "context added", blob: plain, ec: map[string]string{"a": "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := e.client.Decrypt(context.Background(), &kms.DecryptInput{CiphertextBlob: tt.blob, EncryptionContext: tt.ec})
			if tt.ok {
				require.NoError(t, err)
				assert.Equal(t, []byte("wallet secret"), out.Plaintext)
				return
			}
			var invalid *types.InvalidCiphertextException
			require.ErrorAs(t, err, &invalid)
		})
	}
}

func TestDisabledKey(t *testing.T) {
	e := start(t, kmssim.Config{})
	ctx := context.Background()
	arn := e.createKey(t, "")
	other := e.createKey(t, "")
	blob := encrypt(t, e.client, arn, nil)
	_, err := e.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)})
	require.NoError(t, err)

	calls := map[string]func() error{
		"Encrypt": func() error {
			_, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
			return err
		},
		"Decrypt": func() error {
			_, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
			return err
		},
		"GenerateDataKey": func() error {
			_, err := e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
			return err
		},
		"GenerateDataKeyWithoutPlaintext": func() error {
			_, err := e.client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(arn), NumberOfBytes: aws.Int32(8)})
			return err
		},
		"ReEncrypt from": func() error {
			_, err := e.client.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: blob, DestinationKeyId: aws.String(other)})
			return err
		},
		"ReEncrypt to": func() error {
			_, err := e.client.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: encrypt(t, e.client, other, nil), DestinationKeyId: aws.String(arn)})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			var disabled *types.DisabledException
			require.ErrorAs(t, err, &disabled)
			assert.Equal(t, arn+" is disabled.", apiMessage(err))
		})
	}
	// Management still works on a disabled key.
	_, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
	require.NoError(t, err)
}

func TestRequestErrors(t *testing.T) {
	e := start(t, kmssim.Config{})
	ctx := context.Background()
	arn := e.createKey(t, "")
	other := e.createKey(t, "")
	blob := encrypt(t, e.client, arn, nil)
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	movedKey := bytes.Clone(blob)
	copy(movedKey[1:17], mustUUID(t, other))

	tests := []struct {
		name string
		call func() error
		code string
		msg  string // substring of the message, if set
	}{
		{"unknown key id", func() error {
			_, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("00000000-0000-4000-8000-000000000000")})
			return err
		}, "NotFoundException", "does not exist"},
		{"malformed key id", func() error {
			_, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("not-a-key")})
			return err
		}, "NotFoundException", "Invalid keyId"},
		{"other account", func() error {
			_, err := e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(strings.Replace(arn, "111122223333", "444455556666", 1))})
			return err
		}, "NotFoundException", ""},
		{"alias not accepted", func() error {
			_, err := e.client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String("alias/x")})
			return err
		}, "NotFoundException", "Invalid keyId"},
		{"unknown alias", func() error {
			_, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String("alias/none"), Plaintext: []byte("x")})
			return err
		}, "NotFoundException", "alias/none is not found"},
		{"incorrect key", func() error {
			_, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob, KeyId: aws.String(other)})
			return err
		}, "IncorrectKeyException", ""},
		{"tampered blob", func() error {
			_, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: tampered})
			return err
		}, "InvalidCiphertextException", ""},
		{"blob moved to another key", func() error {
			_, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: movedKey})
			return err
		}, "InvalidCiphertextException", ""},
		{"garbage blob", func() error {
			_, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: []byte("garbage")})
			return err
		}, "InvalidCiphertextException", ""},
		{"plaintext too long", func() error {
			_, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: make([]byte, 4097)})
			return err
		}, "ValidationException", "plaintext"},
		{"asymmetric algorithm", func() error {
			_, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x"), EncryptionAlgorithm: types.EncryptionAlgorithmSpecRsaesOaepSha256})
			return err
		}, "InvalidKeyUsageException", ""},
		{"data key spec and size", func() error {
			_, err := e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, NumberOfBytes: aws.Int32(32)})
			return err
		}, "ValidationException", "either number of bytes or key spec"},
		{"data key without size", func() error {
			_, err := e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn)})
			return err
		}, "ValidationException", ""},
		{"random too many bytes", func() error {
			_, err := e.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(1025)})
			return err
		}, "ValidationException", "numberOfBytes"},
		{"asymmetric key", func() error {
			_, err := e.client.CreateKey(ctx, &kms.CreateKeyInput{KeySpec: types.KeySpecRsa2048, KeyUsage: types.KeyUsageTypeSignVerify})
			return err
		}, "UnsupportedOperationException", ""},
		{"malformed policy", func() error {
			_, err := e.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(arn), Policy: aws.String(`{"Statement": 5}`)})
			return err
		}, "MalformedPolicyDocumentException", ""},
		{"other policy name", func() error {
			_, err := e.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("custom")})
			return err
		}, "NotFoundException", ""},
		{"reserved alias", func() error {
			_, err := e.client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/aws/kms"), TargetKeyId: aws.String(arn)})
			return err
		}, "ValidationException", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			assert.Equal(t, tt.code, apiCode(err), "error: %v", err)
			assert.Contains(t, apiMessage(err), tt.msg)
		})
	}
}

func mustUUID(t *testing.T, arn string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(arn[strings.LastIndex(arn, "/")+1:], "-", ""))
	require.NoError(t, err)
	require.Len(t, b, 16)
	return b
}

// TestLogsCarryNoSecrets runs requests with recognisable secrets and checks
// the log for them.
func TestLogsCarryNoSecrets(t *testing.T) {
	var buf syncbuf.Buffer
	e := start(t, kmssim.Config{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	arn := e.createKey(t, "")
	secret := []byte("TOPSECRET-PLAINTEXT-0123456789")
	enc, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: secret})
	require.NoError(t, err)
	dec, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	require.NoError(t, err)
	gen, err := e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
	require.NoError(t, err)
	_, err = newClient(e.url, e.pool, noRetries, func(o *kms.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(kmssimtest.AccessKeyID, "WRONG-SECRET-VALUE", "")
	}).ListKeys(ctx, &kms.ListKeysInput{})
	require.Error(t, err)

	log := buf.String()
	require.Contains(t, log, "method=Decrypt", "the log is written")
	for _, s := range [][]byte{secret, dec.Plaintext, gen.Plaintext, []byte(kmssimtest.SecretAccessKey), []byte("WRONG-SECRET-VALUE")} {
		assert.NotContains(t, log, string(s))
		assert.NotContains(t, log, base64.StdEncoding.EncodeToString(s))
		assert.NotContains(t, log, hex.EncodeToString(s))
	}
}
