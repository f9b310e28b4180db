package server_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func TestFreezeStopsSigning(t *testing.T) {
	var logs syncbuf.Buffer
	s, _ := newServerLog(t, slog.New(slog.NewTextHandler(&logs, nil)))
	k := createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1).GetKeyId()
	digest := make([]byte, 32)
	sign := func() error {
		_, err := call(t, s, enclavev1.Method_METHOD_SIGN, signReq(k, digest, nil), &enclavev1.SignResponse{})
		return err
	}
	batch := func() error {
		_, err := call(t, s, enclavev1.Method_METHOD_SIGN_BATCH, &enclavev1.SignBatchRequest{Request: &signerv1.SignBatchRequest{
			Requests: []*signerv1.SignRequest{signReq(k, digest, nil).GetRequest()}}}, &enclavev1.SignBatchResponse{})
		return err
	}
	freeze := func(st *signerv1.FreezeState) error {
		_, err := call(t, s, enclavev1.Method_METHOD_SET_FREEZE, &enclavev1.SetFreezeRequest{State: st}, &enclavev1.SetFreezeResponse{})
		return err
	}
	require.NoError(t, sign())

	require.NoError(t, freeze(&signerv1.FreezeState{Frozen: true, Reason: "incident 42", ChangedAtUnixMs: 1_700_000_000_000}))
	for name, f := range map[string]func() error{"Sign": sign, "SignBatch": batch} {
		err := f()
		require.Equal(t, codes.FailedPrecondition, status.Code(err), name)
		assert.Equal(t, "signing is frozen since 2023-11-14T22:13:20Z: incident 42", status.Convert(err).Message(), name)
	}
	// Everything else still works.
	createKey(t, s, signerv1.Algorithm_ALGORITHM_ED25519)
	_, err := call(t, s, enclavev1.Method_METHOD_GET_ATTESTATION, &enclavev1.GetAttestationRequest{Nonce: []byte("n")}, &enclavev1.GetAttestationResponse{})
	require.NoError(t, err)

	// Freezing again with another reason keeps refusing, with the new text.
	require.NoError(t, freeze(&signerv1.FreezeState{Frozen: true, Reason: "still"}))
	assert.Equal(t, "signing is frozen: still", status.Convert(sign()).Message())

	require.NoError(t, freeze(&signerv1.FreezeState{ChangedAtUnixMs: 1_700_000_001_000}))
	require.NoError(t, sign())
	require.NoError(t, batch())
	assert.Contains(t, logs.String(), `msg="signing frozen" reason="incident 42"`)
	assert.Contains(t, logs.String(), `msg="signing unfrozen"`)
}

func TestFreezeBadState(t *testing.T) {
	s, _ := newServer(t)
	for _, tc := range []struct {
		st    *signerv1.FreezeState
		field string
	}{
		{nil, "state"},
		{&signerv1.FreezeState{Frozen: true}, "state.reason"},
		{&signerv1.FreezeState{Frozen: true, Reason: strings.Repeat("x", 257)}, "state.reason"},
		{&signerv1.FreezeState{Frozen: true, Reason: "line\nbreak"}, "state.reason"},
		{&signerv1.FreezeState{Reason: "not frozen"}, "state.reason"},
		{&signerv1.FreezeState{Frozen: true, Reason: "r", ChangedAtUnixMs: -1}, "state.changed_at_unix_ms"},
	} {
		_, err := call(t, s, enclavev1.Method_METHOD_SET_FREEZE, &enclavev1.SetFreezeRequest{State: tc.st}, &enclavev1.SetFreezeResponse{})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", tc.st)
		assert.True(t, strings.HasPrefix(status.Convert(err).Message(), tc.field+": "), status.Convert(err).Message())
	}
	// None of them froze anything.
	k := createKey(t, s, signerv1.Algorithm_ALGORITHM_SECP256K1).GetKeyId()
	_, err := call(t, s, enclavev1.Method_METHOD_SIGN, signReq(k, make([]byte, 32), nil), &enclavev1.SignResponse{})
	require.NoError(t, err)
}
