package e2e_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/internal/link"
	"github.com/nitrosigner/nitrosigner/internal/transport"
	enclavev1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/enclave/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// directSign signs through a link of the test's own to the enclave, past
// the parent and its freeze check.
func directSign(t *testing.T, enclaveURL, id string) error {
	t.Helper()
	dial, err := transport.Dialer(enclaveURL)
	require.NoError(t, err)
	lc, err := link.NewClient(link.ClientConfig{
		Dial:        func(ctx context.Context) (net.Conn, error) { return dial(ctx, "") },
		CallTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	defer lc.Close()
	return lc.Call(ctx(t), uint16(enclavev1.Method_METHOD_SIGN), &enclavev1.SignRequest{Request: &signerv1.SignRequest{
		KeyId: id, Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}}, &enclavev1.SignResponse{})
}

func requireFrozen(t *testing.T, err error, reason string) {
	t.Helper()
	require.Equal(t, codes.FailedPrecondition, status.Code(err), err)
	assert.Regexp(t, `^signing is frozen since \S+: `+reason+`$`, status.Convert(err).Message())
}

func TestFreeze(t *testing.T) {
	w := newWorld(t, worldOptions{})
	stop := startEnclaveCfg(t, w.enclaveConfig(t))
	startParent(t, w.parentConfig())
	_, c := dialParent(t, w.parentURL)
	k := createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1)
	id := k.GetKeyId()
	_, err := signDigest(t, c, id)
	require.NoError(t, err)

	f, err := c.Freeze(ctx(t), &signerv1.FreezeRequest{Reason: "e2e incident"})
	require.NoError(t, err)
	require.True(t, f.GetState().GetFrozen())
	_, err = signDigest(t, c, id)
	requireFrozen(t, err, "e2e incident")
	_, err = c.SignBatch(ctx(t), &signerv1.SignBatchRequest{Requests: []*signerv1.SignRequest{
		{KeyId: id, Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}}})
	requireFrozen(t, err, "e2e incident")
	// The enclave refuses too, whoever asks it.
	requireFrozen(t, directSign(t, w.enclaveURL, id), "e2e incident")
	// Everything but signing works.
	_, err = c.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: id})
	require.NoError(t, err)
	createKey(t, c, signerv1.Algorithm_ALGORITHM_ED25519)

	// A restarted enclave is told again when the parent reconnects.
	stop()
	startEnclaveCfg(t, w.enclaveConfig(t))
	waitReady(t, c)
	require.Eventually(t, func() bool {
		// (Not "key not loaded", which the restarted enclave would say.)
		return strings.HasPrefix(status.Convert(directSign(t, w.enclaveURL, id)).Message(), "signing is frozen")
	}, 10*time.Second, 20*time.Millisecond, "the parent pushes the freeze on reconnect")
	requireFrozen(t, directSign(t, w.enclaveURL, id), "e2e incident")

	// Another parent on the same store comes up frozen.
	second := "unix://" + filepath.Join(sockDir(t), "parent2.sock")
	cfg2 := w.parentConfig()
	cfg2.Listen, cfg2.KMSForwardListen = second, ""
	startParent(t, cfg2)
	_, c2 := dialParent(t, second)
	g, err := c2.GetFreezeState(ctx(t), &signerv1.GetFreezeStateRequest{})
	require.NoError(t, err)
	assert.Equal(t, f.GetState().GetChangedAtUnixMs(), g.GetState().GetChangedAtUnixMs())
	_, err = signDigest(t, c2, id)
	requireFrozen(t, err, "e2e incident")

	_, err = c.Unfreeze(ctx(t), &signerv1.UnfreezeRequest{})
	require.NoError(t, err)
	sig, err := signDigest(t, c, id)
	require.NoError(t, err)
	verifyDigestSig(t, k, sig)
	require.NoError(t, directSign(t, w.enclaveURL, id))
}
