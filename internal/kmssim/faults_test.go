//go:build !nosim

package kmssim_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmssim"
)

func TestFaultsRetried(t *testing.T) {
	e := start(t, kmssim.Config{})
	arn := e.createKey(t, "")
	ctx := context.Background()
	listKeys := func() error {
		_, err := e.client.ListKeys(ctx, &kms.ListKeysInput{})
		return err
	}

	tests := []struct {
		fault    kmssim.Fault
		n        int
		attempts int    // requests the server sees
		code     string // final error code; "" for success
		status   int
	}{
		{kmssim.Throttle, 2, 3, "", 0},
		{kmssim.Throttle, 3, 3, "ThrottlingException", http.StatusBadRequest},
		{kmssim.InternalError, 1, 2, "", 0},
		{kmssim.InternalError, 3, 3, "KMSInternalException", http.StatusInternalServerError},
		{kmssim.Unavailable, 2, 3, "", 0},
		{kmssim.Unavailable, 3, 3, "ServiceUnavailableException", http.StatusServiceUnavailable},
		{kmssim.Drop, 1, 2, "", 0},
		{kmssim.Drop, 3, 3, "", -1}, // a connection error, no answer
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s x%d", tt.fault, tt.n), func(t *testing.T) {
			t.Cleanup(e.srv.Faults().Reset)
			e.srv.Faults().Inject(tt.fault, tt.n, "ListKeys")
			before := e.srv.Requests("ListKeys")
			err := listKeys()
			assert.Equal(t, tt.attempts, e.srv.Requests("ListKeys")-before)
			switch {
			case tt.status == 0:
				require.NoError(t, err)
			case tt.status < 0:
				require.Error(t, err)
				assert.Empty(t, apiCode(err))
			default:
				assert.Equal(t, tt.code, apiCode(err))
				assert.Equal(t, tt.status, httpStatus(err))
			}
			// Other operations were never affected.
			_, err = e.client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)})
			require.NoError(t, err)
		})
	}

	var internal *types.KMSInternalException
	e.srv.Faults().Inject(kmssim.InternalError, 3)
	require.ErrorAs(t, listKeys(), &internal)
}

func TestFaultsHookAndQueue(t *testing.T) {
	e := start(t, kmssim.Config{})
	arn := e.createKey(t, "")
	ctx := context.Background()
	client := newClient(e.url, e.pool, noRetries)
	f := e.srv.Faults()

	f.SetHook(func(op string) kmssim.Fault {
		if op == "Decrypt" {
			return kmssim.InternalError
		}
		return kmssim.NoFault
	})
	blob := encrypt(t, client, arn, nil)
	_, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	assert.Equal(t, "KMSInternalException", apiCode(err))
	f.SetHook(nil)
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	require.NoError(t, err)

	// Injections queue in order; each applies to its operations only.
	f.Inject(kmssim.Throttle, 1, "Encrypt")
	f.Inject(kmssim.InternalError, 1)
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: blob})
	assert.Equal(t, "KMSInternalException", apiCode(err))
	_, err = client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
	assert.Equal(t, "ThrottlingException", apiCode(err))
	assert.Equal(t, "Rate exceeded", apiMessage(err))
	_, err = client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
	require.NoError(t, err)

	f.Inject(kmssim.Throttle, 1)
	f.Reset()
	_, err = client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(arn), Plaintext: []byte("x")})
	require.NoError(t, err)
}

func TestFaultsRateLimit(t *testing.T) {
	clk := newClock(time.Now())
	e := start(t, kmssim.Config{Now: clk.Now})
	client := newClient(e.url, e.pool, noRetries)
	ctx := context.Background()
	list := func() error {
		_, err := client.ListKeys(ctx, &kms.ListKeysInput{})
		return err
	}

	e.srv.Faults().SetRateLimit(2, 3) // 2 per second, bursts of 3
	for range 3 {
		require.NoError(t, list())
	}
	assert.Equal(t, "ThrottlingException", apiCode(list()))
	clk.Add(500 * time.Millisecond) // one token
	require.NoError(t, list())
	assert.Equal(t, "ThrottlingException", apiCode(list()))
	clk.Add(10 * time.Second) // refills to the burst only
	for range 3 {
		require.NoError(t, list())
	}
	assert.Equal(t, "ThrottlingException", apiCode(list()))
	e.srv.Faults().SetRateLimit(0, 0)
	require.NoError(t, list())
}

func TestFaultsLatency(t *testing.T) {
	e := start(t, kmssim.Config{})
	client := newClient(e.url, e.pool, noRetries)
	// Connect first, so that the held request reaches the server within
	// its deadline even on a slow machine.
	_, err := client.ListKeys(context.Background(), &kms.ListKeysInput{})
	require.NoError(t, err)
	e.srv.Faults().SetLatency(time.Hour)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = client.ListKeys(ctx, &kms.ListKeysInput{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)

	e.srv.Faults().SetLatency(0)
	_, err = client.ListKeys(context.Background(), &kms.ListKeysInput{})
	require.NoError(t, err)

	// A request held by latency does not block shutdown: the test's
	// cleanup stops the server while this one waits.
	e.srv.Faults().SetLatency(time.Hour)
	seen := e.srv.Requests("ListKeys")
	go client.ListKeys(context.Background(), &kms.ListKeysInput{}) //nolint:errcheck // fails at shutdown
	require.Eventually(t, func() bool { return e.srv.Requests("ListKeys") == seen+1 }, 10*time.Second, time.Millisecond)
}
