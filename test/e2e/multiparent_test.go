package e2e_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nitrosigner/nitrosigner/parent"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

// testPoll is the freeze poll of the parents in these tests, which also
// reads the key change log.
const testPoll = 100 * time.Millisecond

// pair is one instance: an enclave and its parent, sharing the world's
// store, NSM simulator and KMS with every other pair (an Auto Scaling group
// behind one bucket).
type pair struct {
	client     signerv1.SignerServiceClient
	cfg        parent.Config
	stopParent func()
}

func startPair(t *testing.T, w *world, name string) *pair {
	t.Helper()
	w2 := *w
	w2.linkTap, w2.kmsTap = nil, nil
	w2.enclaveURL = "unix://" + filepath.Join(w.dir, name+"-enclave.sock")
	w2.parentURL = "unix://" + filepath.Join(w.dir, name+"-parent.sock")
	w2.forwardURL = "unix://" + filepath.Join(w.dir, name+"-kms.sock")
	startEnclaveCfg(t, w2.enclaveConfig(t))
	p := &pair{cfg: w2.parentConfig()}
	p.cfg.FreezePoll = testPoll
	p.stopParent = startParent(t, p.cfg)
	_, p.client = dialParent(t, w2.parentURL)
	return p
}

// signFailsSoon asserts that signing with id through c answers code within
// a few polls.
func signFailsSoon(t *testing.T, c signerv1.SignerServiceClient, id string, code codes.Code, why string) {
	t.Helper()
	var last error
	ok := assert.Eventually(t, func() bool {
		_, last = signDigest(t, c, id)
		return status.Code(last) == code
	}, 20*testPoll, testPoll/4)
	if !ok {
		t.Fatalf("%s: signing still answers %v, want %v", why, last, code)
	}
}

// Disable, enable, rotate and delete made through one instance reach every
// other instance sharing the key store within a freeze poll, through the
// store's change log; before, another instance's enclave kept signing with
// its cached copy.
func TestKeyChangesReachEveryInstance(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := startPair(t, w, "a")
	b := startPair(t, w, "b")

	k := createKey(t, a.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
	_, err := signDigest(t, b.client, k.GetKeyId())
	require.NoError(t, err, "B loads the key from the shared store and signs")

	_, err = a.client.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	_, err = signDigest(t, a.client, k.GetKeyId())
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "disabled on A at once")
	signFailsSoon(t, b.client, k.GetKeyId(), codes.FailedPrecondition, "disabled through A")

	_, err = a.client.EnableKey(ctx(t), &signerv1.EnableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	signFailsSoon(t, b.client, k.GetKeyId(), codes.OK, "enabled through A")

	// Rotation: B's next signature comes from the new blob (same key).
	rot, err := a.client.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		g, err := b.client.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: k.GetKeyId()})
		return err == nil && g.GetKey().GetSealing().GetKekId() == rot.GetKey().GetSealing().GetKekId()
	}, 20*testPoll, testPoll/4)
	_, err = signDigest(t, b.client, k.GetKeyId())
	require.NoError(t, err)

	// B disables; A follows.
	_, err = b.client.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	signFailsSoon(t, a.client, k.GetKeyId(), codes.FailedPrecondition, "disabled through B")
	_, err = b.client.EnableKey(ctx(t), &signerv1.EnableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	signFailsSoon(t, a.client, k.GetKeyId(), codes.OK, "enabled through B")

	// Deletion: B refuses the key and never loads it again.
	_, err = signDigest(t, b.client, k.GetKeyId())
	require.NoError(t, err)
	_, err = a.client.DeleteKey(ctx(t), &signerv1.DeleteKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	signFailsSoon(t, b.client, k.GetKeyId(), codes.NotFound, "deleted through A")
}

// A parent restarted while its enclave kept running (an upgrade of the
// parent alone) brings the enclave up to the changes made meanwhile before
// the next poll.
func TestKeyChangesReachAnEnclaveWhoseParentRestarted(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := startPair(t, w, "a")
	b := startPair(t, w, "b")
	k := createKey(t, a.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
	_, err := signDigest(t, b.client, k.GetKeyId())
	require.NoError(t, err)
	// Another change first, which B follows, so that B's enclave has a log
	// position when its parent stops.
	other := createKey(t, a.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
	_, err = signDigest(t, b.client, other.GetKeyId())
	require.NoError(t, err)
	_, err = a.client.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: other.GetKeyId()})
	require.NoError(t, err)
	signFailsSoon(t, b.client, other.GetKeyId(), codes.FailedPrecondition, "disabled through A")

	b.stopParent()
	_, err = a.client.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	b.cfg.FreezePoll = time.Hour // only the sync on connecting can help
	b.stopParent = startParent(t, b.cfg)
	require.Eventually(t, func() bool {
		_, err := signDigest(t, b.client, k.GetKeyId())
		return status.Code(err) == codes.FailedPrecondition
	}, 5*time.Second, 20*time.Millisecond, "B's enclave still signs with the key disabled while its parent was down")
}
