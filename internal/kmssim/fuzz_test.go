//go:build !nosim

package kmssim_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// capturedRequest is one request the SDK sent.
type capturedRequest struct {
	op   string
	body []byte
}

// recorder is an SDK HTTP client that records every request.
type recorder struct {
	inner interface {
		Do(*http.Request) (*http.Response, error)
	}
	mu   sync.Mutex
	reqs []capturedRequest
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, capturedRequest{strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "TrentService."), body})
	r.mu.Unlock()
	return r.inner.Do(req)
}

// fuzzWorld is a simulator whose NSM root is trusted, with a second
// credential (fuzzAccessKeyID) for the fuzzer. The fuzzer may not change
// state (fuzzDenied, in the account policy here and in the key policy
// captureSDKRequests sets), so every input is decoded, validated and
// authorized against the same state: the target stays deterministic and
// needs no disk writes.
func fuzzWorld(t testing.TB) (*env, *nsmsim.Simulator) {
	t.Helper()
	nsmDir := t.TempDir()
	sim := newNSM(t, imageV1, nsmDir)
	root, err := nsmsim.LoadRoot(nsmDir)
	require.NoError(t, err)
	e := start(t, kmssim.Config{
		Credentials: map[string]kmssim.Credential{
			kmssimtest.AccessKeyID: {Secret: kmssimtest.SecretAccessKey, PrincipalARN: kmssimtest.PrincipalARN},
			fuzzAccessKeyID:        {Secret: kmssimtest.SecretAccessKey, PrincipalARN: fuzzPrincipal},
		},
		NSMRoots:      []*x509.Certificate{root},
		AccountPolicy: []byte(fuzzPolicy),
		Logger:        slog.New(slog.DiscardHandler),
	})
	return e, sim
}

const (
	fuzzAccessKeyID = "AKIDKMSSIMFUZZ000001"
	fuzzPrincipal   = "arn:aws:iam::111122223333:role/fuzzer"
)

// fuzzPolicy allows everyone everything, except state changes by the
// fuzzer.
var fuzzPolicy = allowPolicy("*", "kms:*", fmt.Sprintf(`{"Effect": "Deny", "Principal": {"AWS": %q}, "Action": [
	"kms:CreateKey", "kms:EnableKey", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
	"kms:PutKeyPolicy", "kms:CreateAlias", "kms:DeleteAlias"], "Resource": "*"}`, fuzzPrincipal))

// captureSDKRequests drives every operation with the real SDK client
// against e, Recipients included, and returns the requests it sent.
func captureSDKRequests(t testing.TB, e *env, sim *nsmsim.Simulator) []capturedRequest {
	t.Helper()
	rec := &recorder{}
	client := newClient(e.url, e.pool, func(o *kms.Options) {
		rec.inner = o.HTTPClient
		o.HTTPClient = rec
	})
	ctx := context.Background()
	priv := recipientKey(t)
	recipient := recipientFor(attestation(t, sim, &priv.PublicKey))
	ec := map[string]string{"kek_id": "k1", "purpose": "kek"}

	ck, err := client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("fuzz")})
	require.NoError(t, err)
	arn := ck.KeyMetadata.Arn
	enc, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: arn, Plaintext: []byte("secret"), EncryptionContext: ec})
	require.NoError(t, err)
	calls := []func() error{
		func() error { _, err := client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: arn}); return err },
		func() error { _, err := client.ListKeys(ctx, &kms.ListKeysInput{Limit: aws.Int32(5)}); return err },
		func() error {
			_, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec, Recipient: recipient})
			return err
		},
		func() error {
			_, err := client.ReEncrypt(ctx, &kms.ReEncryptInput{CiphertextBlob: enc.CiphertextBlob, SourceEncryptionContext: ec, DestinationKeyId: arn})
			return err
		},
		func() error {
			_, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: arn, KeySpec: types.DataKeySpecAes256, EncryptionContext: ec, Recipient: recipient})
			return err
		},
		func() error {
			_, err := client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: arn, NumberOfBytes: aws.Int32(32)})
			return err
		},
		func() error {
			_, err := client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32), Recipient: recipient})
			return err
		},
		func() error { _, err := client.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: arn}); return err },
		func() error {
			_, err := client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/fuzz"), TargetKeyId: arn})
			return err
		},
		func() error { _, err := client.ListAliases(ctx, &kms.ListAliasesInput{}); return err },
		func() error { _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: arn}); return err },
		func() error { _, err := client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: arn}); return err },
		func() error {
			_, err := client.ScheduleKeyDeletion(ctx, &kms.ScheduleKeyDeletionInput{KeyId: arn, PendingWindowInDays: aws.Int32(7)})
			return err
		},
		func() error {
			_, err := client.CancelKeyDeletion(ctx, &kms.CancelKeyDeletionInput{KeyId: arn})
			return err
		},
		func() error { _, err := client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: arn}); return err },
		func() error {
			_, err := client.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: arn, Policy: aws.String(fuzzPolicy)})
			return err
		},
		func() error {
			_, err := client.DeleteAlias(ctx, &kms.DeleteAliasInput{AliasName: aws.String("alias/fuzz")})
			return err
		},
		func() error {
			_, err := client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/fuzz"), TargetKeyId: arn})
			return err
		},
	}
	for _, call := range calls {
		require.NoError(t, call())
	}
	return rec.reqs
}

func TestCaptureCoversOperations(t *testing.T) {
	seen := map[string]bool{}
	e, sim := fuzzWorld(t)
	for _, r := range captureSDKRequests(t, e, sim) {
		seen[r.op] = true
	}
	for _, op := range kmssim.Operations() {
		require.True(t, seen[op], "no SDK request captured for %s", op)
	}
}

// FuzzHandler feeds arbitrary operations, bodies and Authorization headers
// to the handler. Seeds are the bodies the real SDK sent for every
// operation. Invariants: no panic, only the statuses KMS uses for client
// errors or success, and every answer is a JSON object (with __type when
// it is an error).
func FuzzHandler(f *testing.F) {
	e, sim := fuzzWorld(f)
	for _, s := range captureSDKRequests(f, e, sim) {
		f.Add(s.op, s.body, "")
	}
	f.Add("ListKeys", []byte(`{}`), "AWS4-HMAC-SHA256 Credential="+fuzzAccessKeyID+"/20260101/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	f.Add("ListKeys", []byte(`{}`), "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=b;a, Signature=")

	h := e.srv.Handler()
	creds := aws.Credentials{AccessKeyID: fuzzAccessKeyID, SecretAccessKey: kmssimtest.SecretAccessKey}
	signer := v4.NewSigner()

	f.Fuzz(func(t *testing.T, op string, body []byte, auth string) {
		req := httptest.NewRequest(http.MethodPost, "https://127.0.0.1:4566/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "TrentService."+op)
		if auth == "" {
			sum := sha256.Sum256(body)
			require.NoError(t, signer.SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kms", kmssimtest.Region, time.Now()))
		} else {
			req.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z"))
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusPreconditionFailed:
		default:
			t.Fatalf("status %d for %s: %s", rec.Code, op, rec.Body.Bytes())
		}
		var doc map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &doc), "answer is not a JSON object: %q", rec.Body.Bytes())
		if rec.Code != http.StatusOK {
			require.NotEmpty(t, doc["__type"])
			require.Equal(t, doc["__type"], rec.Header().Get("X-Amzn-ErrorType"))
		}
	})
}
