//go:build !nosim

package kmssim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
)

// httpStatus returns the HTTP status of an SDK error, or 0.
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestSignatureErrors(t *testing.T) {
	e := start(t, kmssim.Config{Credentials: map[string]kmssim.Credential{
		kmssimtest.AccessKeyID: {Secret: kmssimtest.SecretAccessKey, PrincipalARN: kmssimtest.PrincipalARN},
		"ASIATEMPORARY0000001": {Secret: "temporary-secret", SessionToken: "session-token", PrincipalARN: "arn:aws:sts::111122223333:assumed-role/parent/i-0123"},
	}})
	ctx := context.Background()
	client := func(id, secret, token string, optFns ...func(*kms.Options)) *kms.Client {
		fns := append([]func(*kms.Options){noRetries, func(o *kms.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(id, secret, token)
		}}, optFns...)
		return newClient(e.url, e.pool, fns...)
	}
	tests := []struct {
		name   string
		client *kms.Client
		code   string
		msg    string
	}{
		{"valid", client(kmssimtest.AccessKeyID, kmssimtest.SecretAccessKey, ""), "", ""},
		{"wrong secret", client(kmssimtest.AccessKeyID, "wrong", ""), "InvalidSignatureException",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."},
		{"unknown access key", client("AKIDUNKNOWN", kmssimtest.SecretAccessKey, ""), "UnrecognizedClientException", "The security token included in the request is invalid."},
		{"other region", client(kmssimtest.AccessKeyID, kmssimtest.SecretAccessKey, "", func(o *kms.Options) { o.Region = "eu-west-1" }),
			"InvalidSignatureException", "Credential should be scoped to a valid region."},
		{"token not configured", client(kmssimtest.AccessKeyID, kmssimtest.SecretAccessKey, "token"), "UnrecognizedClientException", ""},
		{"session token", client("ASIATEMPORARY0000001", "temporary-secret", "session-token"), "", ""},
		{"missing token", client("ASIATEMPORARY0000001", "temporary-secret", ""), "UnrecognizedClientException", ""},
		{"wrong token", client("ASIATEMPORARY0000001", "temporary-secret", "other-token"), "UnrecognizedClientException", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.srv.Requests("ListKeys")
			_, err := tt.client.ListKeys(ctx, &kms.ListKeysInput{})
			if tt.code == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			// Not modelled by the KMS client: a generic API error.
			var generic *smithy.GenericAPIError
			require.ErrorAs(t, err, &generic)
			assert.Equal(t, tt.code, generic.ErrorCode())
			assert.Contains(t, generic.ErrorMessage(), tt.msg)
			assert.Equal(t, http.StatusBadRequest, httpStatus(err))
			assert.Equal(t, before+1, e.srv.Requests("ListKeys"), "one attempt")
		})
	}
}

func TestSignatureClockSkew(t *testing.T) {
	clk := newClock(time.Now().Add(time.Hour))
	e := start(t, kmssim.Config{Now: clk.Now})
	ctx := context.Background()

	strict := newClient(e.url, e.pool, func(o *kms.Options) { o.DisableClockSkewCorrection = true })
	_, err := strict.ListKeys(ctx, &kms.ListKeysInput{})
	assert.Equal(t, "InvalidSignatureException", apiCode(err))
	assert.Contains(t, apiMessage(err), "Signature expired: ")
	assert.Equal(t, 1, e.srv.Requests("ListKeys"))

	clk.Add(-2 * time.Hour)
	_, err = strict.ListKeys(ctx, &kms.ListKeysInput{})
	assert.Contains(t, apiMessage(err), "Signature not yet current: ")

	// With the SDK's default skew correction, the Date header of the
	// first answer fixes the second attempt.
	before := e.srv.Requests("ListKeys")
	_, err = e.client.ListKeys(ctx, &kms.ListKeysInput{})
	require.NoError(t, err)
	assert.Equal(t, before+2, e.srv.Requests("ListKeys"))
}

func TestSignatureRaw(t *testing.T) {
	e := start(t, kmssim.Config{})
	body := []byte(`{"Limit": 10}`)

	tests := []struct {
		name   string
		tamper func(*http.Request)
		status int
		code   string
	}{
		{"signed", nil, http.StatusOK, ""},
		{"extra unsigned header", func(r *http.Request) { r.Header.Set("X-Custom", "x") }, http.StatusOK, ""},
		{"no authorization", func(r *http.Request) { r.Header.Del("Authorization") }, http.StatusBadRequest, "MissingAuthenticationTokenException"},
		{"malformed authorization", func(r *http.Request) { r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=x") }, http.StatusBadRequest, "IncompleteSignatureException"},
		{"other algorithm", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512", 1))
		}, http.StatusBadRequest, "IncompleteSignatureException"},
		{"no date", func(r *http.Request) { r.Header.Del("X-Amz-Date") }, http.StatusBadRequest, "IncompleteSignatureException"},
		{"body changed", func(r *http.Request) {
			r.Body = http.NoBody
			r.ContentLength = 0
		}, http.StatusBadRequest, "InvalidSignatureException"},
		{"target changed", func(r *http.Request) { r.Header.Set("X-Amz-Target", "TrentService.ListAliases") }, http.StatusBadRequest, "InvalidSignatureException"},
		{"host changed", func(r *http.Request) { r.Host = "localhost" }, http.StatusBadRequest, "InvalidSignatureException"},
		{"query added", func(r *http.Request) { r.URL.RawQuery = "a=b" }, http.StatusBadRequest, "InvalidSignatureException"},
		{"signature changed", func(r *http.Request) {
			a := r.Header.Get("Authorization")
			last := a[len(a)-1]
			r.Header.Set("Authorization", a[:len(a)-1]+string("01"[(last-'0'+1)%2]))
		}, http.StatusBadRequest, "InvalidSignatureException"},
		{"service scope", func(r *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/kms/", "/s3/", 1))
		}, http.StatusBadRequest, "InvalidSignatureException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, out := e.raw(t, "ListKeys", body, tt.tamper)
			assert.Equal(t, tt.status, status, "%s", out)
			assert.Equal(t, "application/x-amz-json-1.1", header.Get("Content-Type"))
			assert.NotEmpty(t, header.Get("X-Amzn-Requestid"))
			var doc map[string]any
			require.NoError(t, json.Unmarshal(out, &doc))
			if tt.code != "" {
				assert.Equal(t, tt.code, doc["__type"])
				assert.Equal(t, tt.code, header.Get("X-Amzn-ErrorType"))
				assert.NotEmpty(t, doc["message"])
			} else {
				assert.Contains(t, doc, "Keys")
			}
		})
	}
}

// TestProtocolErrors sends signed requests the SDK would never send.
func TestProtocolErrors(t *testing.T) {
	e := start(t, kmssim.Config{})
	arn := e.createKey(t, "")
	tests := []struct {
		name string
		op   string
		body string
		code string
		msg  string
	}{
		{"unknown operation", "Frobnicate", `{}`, "UnknownOperationException", ""},
		{"malformed JSON", "ListKeys", `{"Limit":`, "SerializationException", ""},
		{"trailing data", "ListKeys", `{} {}`, "SerializationException", ""},
		{"wrong member type", "Encrypt", `{"KeyId": 5}`, "SerializationException", "KeyId"},
		{"bad base64", "Encrypt", `{"KeyId": "x", "Plaintext": "!!"}`, "SerializationException", ""},
		{"missing key id", "Encrypt", `{"Plaintext": "aGk="}`, "ValidationException", "Value null at 'keyId' failed to satisfy constraint: Member must not be null"},
		{"missing plaintext", "Encrypt", fmt.Sprintf(`{"KeyId": %q}`, arn), "ValidationException", "Value null at 'plaintext'"},
		{"empty plaintext", "Encrypt", fmt.Sprintf(`{"KeyId": %q, "Plaintext": ""}`, arn), "ValidationException", "'plaintext'"},
		{"missing ciphertext", "Decrypt", `{}`, "ValidationException", "Value null at 'ciphertextBlob'"},
		{"missing policy", "PutKeyPolicy", fmt.Sprintf(`{"KeyId": %q}`, arn), "ValidationException", "Value null at 'policy'"},
		{"missing random size", "GenerateRandom", `{}`, "ValidationException", "Value null at 'numberOfBytes'"},
		{"unknown algorithm", "Encrypt", fmt.Sprintf(`{"KeyId": %q, "Plaintext": "aGk=", "EncryptionAlgorithm": "ROT13"}`, arn), "ValidationException", "enum value set"},
		{"limit out of range", "ListKeys", `{"Limit": 0}`, "ValidationException", "'limit'"},
		{"empty key id", "DescribeKey", `{"KeyId": ""}`, "ValidationException", "'keyId'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, out := e.raw(t, tt.op, []byte(tt.body), nil)
			assert.Equal(t, http.StatusBadRequest, status)
			var doc map[string]string
			require.NoError(t, json.Unmarshal(out, &doc), "%s", out)
			assert.Equal(t, tt.code, doc["__type"])
			assert.Contains(t, doc["message"], tt.msg)
		})
	}

	// A GET is no operation.
	status, _, _ := e.raw(t, "ListKeys", nil, func(r *http.Request) { r.Method = http.MethodGet })
	assert.Equal(t, http.StatusBadRequest, status)
}

func TestKeyPolicyEnforced(t *testing.T) {
	const other = "arn:aws:iam::111122223333:role/someone-else"
	e := start(t, kmssim.Config{})
	ctx := context.Background()

	t.Run("implicit deny", func(t *testing.T) {
		arn := e.createKey(t, allowPolicy(other, "kms:*"))
		_, err := e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
		require.Error(t, err)
		var generic *smithy.GenericAPIError
		require.ErrorAs(t, err, &generic, "AccessDeniedException is not modelled by the SDK")
		assert.Equal(t, "AccessDeniedException", generic.ErrorCode())
		assert.Equal(t, "User: "+kmssimtest.PrincipalARN+" is not authorized to perform: kms:Encrypt on resource: "+arn+
			" because no resource-based policy allows the kms:Encrypt action", generic.ErrorMessage())
		assert.Equal(t, http.StatusBadRequest, httpStatus(err))

		// On the wire the message field is spelled "Message".
		status, _, body := e.raw(t, "DescribeKey", fmt.Appendf(nil, `{"KeyId": %q}`, arn), nil)
		assert.Equal(t, http.StatusBadRequest, status)
		var doc map[string]string
		require.NoError(t, json.Unmarshal(body, &doc))
		assert.Equal(t, "AccessDeniedException", doc["__type"])
		assert.Contains(t, doc["Message"], "kms:DescribeKey")
		assert.NotContains(t, doc, "message")
	})

	t.Run("explicit deny", func(t *testing.T) {
		deny := fmt.Sprintf(`{"Effect": "Deny", "Principal": {"AWS": %q}, "Action": "kms:Decrypt", "Resource": "*"}`, kmssimtest.PrincipalARN)
		arn := e.createKey(t, allowPolicy(kmssimtest.PrincipalARN, "kms:*", deny))
		blob := encrypt(t, e.client, arn, nil)
		_, err := e.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
		assert.Equal(t, "AccessDeniedException", apiCode(err))
		assert.Contains(t, apiMessage(err), "with an explicit deny in a resource-based policy")
	})

	t.Run("reencrypt needs both actions", func(t *testing.T) {
		src := e.createKey(t, "")
		dst := e.createKey(t, allowPolicy(kmssimtest.PrincipalARN, "kms:ReEncryptFrom"))
		_, err := e.client.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: encrypt(t, e.client, src, nil), DestinationKeyId: aws.String(dst)})
		assert.Equal(t, "AccessDeniedException", apiCode(err))
		assert.Contains(t, apiMessage(err), "kms:ReEncryptTo")
	})

	t.Run("policy lockout safety check", func(t *testing.T) {
		arn := e.createKey(t, "")
		locked := allowPolicy(kmssimtest.PrincipalARN, "kms:Encrypt")
		_, err := e.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(arn), Policy: aws.String(locked)})
		var malformed *types.MalformedPolicyDocumentException
		require.ErrorAs(t, err, &malformed)
		assert.Contains(t, apiMessage(err), "will not allow you to update the key policy in the future")
		_, err = e.client.CreateKey(ctx, &kms.CreateKeyInput{Policy: aws.String(locked)})
		require.ErrorAs(t, err, &malformed)

		_, err = e.client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(arn), Policy: aws.String(locked), BypassPolicyLockoutSafetyCheck: true})
		require.NoError(t, err)
		_, err = e.client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(arn)})
		assert.Equal(t, "AccessDeniedException", apiCode(err))
		_, err = e.client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
		require.NoError(t, err)
	})

	t.Run("account policy", func(t *testing.T) {
		acct := start(t, kmssim.Config{AccountPolicy: []byte(allowPolicy(kmssimtest.PrincipalARN, "kms:List*"))})
		_, err := acct.client.ListKeys(ctx, &kms.ListKeysInput{})
		require.NoError(t, err)
		_, err = acct.client.CreateKey(ctx, &kms.CreateKeyInput{})
		assert.Equal(t, "AccessDeniedException", apiCode(err))
		assert.Contains(t, apiMessage(err), "kms:CreateKey on resource: * because no identity-based policy allows the kms:CreateKey action")
	})
}
