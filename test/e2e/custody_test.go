package e2e_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	gethcrypto "github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/s3test"
	"github.com/nitrosigner/nitrosigner/internal/syncbuf"
	sealedv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/sealed/v1"
	signerv1 "github.com/nitrosigner/nitrosigner/proto/nitrosigner/v1"
)

func createKey(t *testing.T, c signerv1.SignerServiceClient, alg signerv1.Algorithm) *signerv1.Key {
	t.Helper()
	r, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: alg})
	require.NoError(t, err)
	return r.GetKey()
}

func signDigest(t *testing.T, c signerv1.SignerServiceClient, id string) ([]byte, error) {
	t.Helper()
	d := sha256.Sum256([]byte("custody"))
	r, err := c.Sign(ctx(t), &signerv1.SignRequest{KeyId: id, Payload: &signerv1.SignRequest_Digest{Digest: d[:]}})
	return r.GetSignature(), err
}

func verifyDigestSig(t *testing.T, k *signerv1.Key, sig []byte) {
	t.Helper()
	d := sha256.Sum256([]byte("custody"))
	pub, err := gethcrypto.Ecrecover(d[:], sig)
	require.NoError(t, err)
	require.Equal(t, k.GetPublicKey(), pub)
}

// TestKeysSurviveRestartOfTheWholeStack: keys created through one parent
// and enclave sign through a new pair on the same store and KMS.
func TestKeysSurviveRestartOfTheWholeStack(t *testing.T) {
	w := newWorld(t, worldOptions{})
	stopEnclave := startEnclaveCfg(t, w.enclaveConfig(t))
	pc := w.parentConfig()
	pc.Listen = "unix://" + filepath.Join(w.dir, "p1.sock")
	stopParent := startParent(t, pc)
	_, c := dialParent(t, pc.Listen)
	k1 := createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1)
	ed := createKey(t, c, signerv1.Algorithm_ALGORITHM_ED25519)
	stopParent()
	stopEnclave()

	s := w.start(t)
	sig, err := signDigest(t, s.client, k1.GetKeyId())
	require.NoError(t, err)
	verifyDigestSig(t, k1, sig)
	r, err := s.client.Sign(ctx(t), &signerv1.SignRequest{KeyId: ed.GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: []byte("m")}})
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(ed.GetPublicKey(), []byte("m"), r.GetSignature()))
	list, err := s.client.ListKeys(ctx(t), &signerv1.ListKeysRequest{})
	require.NoError(t, err)
	assert.Len(t, list.GetKeys(), 2)
	assert.Equal(t, 1, w.kms.Requests("Decrypt"), "one KEK, unwrapped once")
}

// TestLifecycle: disable, enable, rotate and delete over the client API,
// each surviving an enclave restart.
func TestLifecycle(t *testing.T) {
	w := newWorld(t, worldOptions{})
	stop := startEnclaveCfg(t, w.enclaveConfig(t))
	startParent(t, w.parentConfig())
	_, c := dialParent(t, w.parentURL)
	restart := func() {
		stop()
		stop = startEnclaveCfg(t, w.enclaveConfig(t))
		waitReady(t, c)
	}
	k := createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1)
	id := k.GetKeyId()
	assert.Equal(t, w.keyARN, k.GetSealing().GetKmsKeyArn())
	assert.Regexp(t, `^0x[0-9a-fA-F]{40}$`, k.GetAddresses().GetEthereum())

	d, err := c.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: id})
	require.NoError(t, err)
	assert.Equal(t, signerv1.KeyState_KEY_STATE_DISABLED, d.GetKey().GetState())
	_, err = signDigest(t, c, id)
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "disable takes effect at once")
	// Disabling again rewrites nothing: same generation, same stored blob.
	disabled, err := os.ReadFile(filepath.Join(w.storeDir, "keys", id))
	require.NoError(t, err)
	d2, err := c.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: id})
	require.NoError(t, err)
	assert.Equal(t, signerv1.KeyState_KEY_STATE_DISABLED, d2.GetKey().GetState())
	assert.Equal(t, d.GetKey().GetSealing().GetGeneration(), d2.GetKey().GetSealing().GetGeneration())
	again, err := os.ReadFile(filepath.Join(w.storeDir, "keys", id))
	require.NoError(t, err)
	assert.Equal(t, disabled, again)
	restart()
	_, err = signDigest(t, c, id)
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "and survives a restart")
	assert.Contains(t, status.Convert(err).Message(), "disabled")

	_, err = c.EnableKey(ctx(t), &signerv1.EnableKeyRequest{KeyId: id})
	require.NoError(t, err)
	sig, err := signDigest(t, c, id)
	require.NoError(t, err)
	verifyDigestSig(t, k, sig)

	before, _ := os.ReadFile(filepath.Join(w.storeDir, "keys", id))
	rot, err := c.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: id})
	require.NoError(t, err)
	assert.Equal(t, k.GetPublicKey(), rot.GetKey().GetPublicKey())
	assert.Equal(t, k.GetAddresses().GetEthereum(), rot.GetKey().GetAddresses().GetEthereum())
	assert.NotEqual(t, k.GetSealing().GetKekId(), rot.GetKey().GetSealing().GetKekId(), "a new data key")
	assert.EqualValues(t, 4, rot.GetKey().GetSealing().GetGeneration())
	after, _ := os.ReadFile(filepath.Join(w.storeDir, "keys", id))
	assert.NotEqual(t, before, after)
	restart()
	sig, err = signDigest(t, c, id)
	require.NoError(t, err)
	verifyDigestSig(t, k, sig)

	// Rotation to a KMS key the enclave was not configured with.
	_, err = c.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: id, KmsKeyArn: "arn:aws:kms:us-east-1:999988887777:key/rogue"})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), err)

	_, err = c.DeleteKey(ctx(t), &signerv1.DeleteKeyRequest{KeyId: id})
	require.NoError(t, err)
	_, err = signDigest(t, c, id)
	assert.Equal(t, codes.NotFound, status.Code(err), "deleted at once")
	restart()
	_, err = signDigest(t, c, id)
	assert.Equal(t, codes.NotFound, status.Code(err), "and for good")
	_, err = c.GetKey(ctx(t), &signerv1.GetKeyRequest{KeyId: id})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = os.Stat(filepath.Join(w.storeDir, "keys", id))
	assert.True(t, os.IsNotExist(err), "the sealed blob is gone")
	_, err = c.DeleteKey(ctx(t), &signerv1.DeleteKeyRequest{KeyId: id})
	assert.Equal(t, codes.NotFound, status.Code(err))
}

// TestColdLoadOneKMSCallPerKEK: after a restart, many concurrent first
// signatures over keys under one KEK cost one KMS Decrypt; warm signing
// costs none.
func TestColdLoadOneKMSCallPerKEK(t *testing.T) {
	w := newWorld(t, worldOptions{})
	stop := startEnclaveCfg(t, w.enclaveConfig(t))
	startParent(t, w.parentConfig())
	_, c := dialParent(t, w.parentURL)
	var keys []*signerv1.Key
	for range 20 {
		keys = append(keys, createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1))
	}
	require.Equal(t, 1, w.kms.Requests("GenerateDataKey"))
	stop()
	startEnclaveCfg(t, w.enclaveConfig(t))
	waitReady(t, c)
	var wg sync.WaitGroup
	for _, k := range keys {
		for range 3 {
			wg.Go(func() {
				_, err := signDigest(t, c, k.GetKeyId())
				assert.NoError(t, err)
			})
		}
	}
	wg.Wait()
	assert.Equal(t, 1, w.kms.Requests("Decrypt"))
	for _, k := range keys {
		_, err := signDigest(t, c, k.GetKeyId())
		require.NoError(t, err)
	}
	assert.Equal(t, 1, w.kms.Requests("Decrypt"), "warm signing never calls KMS")
}

// restartWithStore stops nothing: it starts a fresh enclave on a new
// socket and a parent on the same store, as after a restart, and returns
// the client.
func freshPair(t *testing.T, w *world) signerv1.SignerServiceClient {
	t.Helper()
	w2 := *w
	w2.dir = sockDir(t)
	w2.enclaveURL = "unix://" + filepath.Join(w2.dir, "enclave.sock")
	w2.parentURL = "unix://" + filepath.Join(w2.dir, "parent.sock")
	w2.forwardURL = "unix://" + filepath.Join(w2.dir, "kms.sock")
	w2.linkTap, w2.kmsTap = nil, nil
	return w2.start(t).client
}

// TestTamperedBlobsRefused: the parent (or S3) swapping, editing or
// corrupting stored blobs never makes the enclave use a key: the call fails
// with DataLoss and a message saying the sealed key was refused.
func TestTamperedBlobsRefused(t *testing.T) {
	w := newWorld(t, worldOptions{})
	s := w.start(t)
	a := createKey(t, s.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
	b := createKey(t, s.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
	keyPath := func(k *signerv1.Key) string { return filepath.Join(w.storeDir, "keys", k.GetKeyId()) }
	kekPath := filepath.Join(w.storeDir, "keks", a.GetSealing().GetKekId())
	origA, err := os.ReadFile(keyPath(a))
	require.NoError(t, err)
	origB, err := os.ReadFile(keyPath(b))
	require.NoError(t, err)
	origKEK, err := os.ReadFile(kekPath)
	require.NoError(t, err)
	refused := func(t *testing.T, c signerv1.SignerServiceClient, k *signerv1.Key) {
		t.Helper()
		_, err := signDigest(t, c, k.GetKeyId())
		require.Error(t, err)
		assert.Contains(t, []codes.Code{codes.DataLoss}, status.Code(err), err)
		assert.Contains(t, status.Convert(err).Message(), "refused")
	}

	t.Run("swapped for another key's blob", func(t *testing.T) {
		require.NoError(t, os.WriteFile(keyPath(a), origB, 0o600))
		t.Cleanup(func() { require.NoError(t, os.WriteFile(keyPath(a), origA, 0o600)) })
		refused(t, freshPair(t, w), a)
	})
	t.Run("flipped bytes in the key blob", func(t *testing.T) {
		for _, i := range []int{0, 5, len(origA) / 3, len(origA) / 2, len(origA) - 20, len(origA) - 1} {
			bad := bytes.Clone(origA)
			bad[i] ^= 0x04
			require.NoError(t, os.WriteFile(keyPath(a), bad, 0o600))
			refused(t, freshPair(t, w), a)
		}
		require.NoError(t, os.WriteFile(keyPath(a), origA, 0o600))
	})
	t.Run("flipped bytes in the KEK blob", func(t *testing.T) {
		for _, i := range []int{3, len(origKEK) / 4, len(origKEK) / 2, len(origKEK) - 3} {
			bad := bytes.Clone(origKEK)
			bad[i] ^= 0x10
			require.NoError(t, os.WriteFile(kekPath, bad, 0o600))
			c := freshPair(t, w)
			_, err := signDigest(t, c, a.GetKeyId())
			require.Error(t, err, "byte %d", i)
			assert.Contains(t, []codes.Code{codes.DataLoss, codes.PermissionDenied}, status.Code(err), err)
		}
		require.NoError(t, os.WriteFile(kekPath, origKEK, 0o600))
	})
	t.Run("KEK encryption context edited", func(t *testing.T) {
		var k sealedv1.SealedKEK
		require.NoError(t, proto.Unmarshal(origKEK, &k))
		k.EncryptionContext["nitrosigner:purpose"] = "other"
		edited, err := proto.Marshal(&k)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(kekPath, edited, 0o600))
		refused(t, freshPair(t, w), a)
		// Edited consistently (context and creation time together, so the
		// enclave's own check passes): KMS refuses the ciphertext.
		k.EncryptionContext["nitrosigner:purpose"] = "kek/v1"
		k.CreatedAtUnixMs++
		k.EncryptionContext["nitrosigner:created-at-ms"] = strconv.FormatInt(k.CreatedAtUnixMs, 10)
		edited, err = proto.Marshal(&k)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(kekPath, edited, 0o600))
		refused(t, freshPair(t, w), a)
		require.NoError(t, os.WriteFile(kekPath, origKEK, 0o600))
	})
	// The untouched key still works.
	c := freshPair(t, w)
	sig, err := signDigest(t, c, a.GetKeyId())
	require.NoError(t, err)
	verifyDigestSig(t, a, sig)
}

// TestNoSecretReachesTheParent records every byte between parent and
// enclave, everything the parent logged, every answer and the store, then
// opens the sealed keys the way only KMS's holder could (KEK from KMS,
// AES-GCM per docs/sealing.md) and checks that no private key and no data
// key byte string appears anywhere the parent could see.
func TestNoSecretReachesTheParent(t *testing.T) {
	w := newWorld(t, worldOptions{tapLink: true, tapKMS: true})
	var logs syncbuf.Buffer
	startEnclaveCfg(t, w.enclaveConfig(t))
	pc := w.parentConfig()
	pc.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	startParent(t, pc)
	_, c := dialParent(t, w.parentURL)

	var answers bytes.Buffer
	record := func(m proto.Message) {
		b, err := proto.Marshal(m)
		require.NoError(t, err)
		answers.Write(b)
	}
	var keys []*signerv1.Key
	for _, alg := range []signerv1.Algorithm{signerv1.Algorithm_ALGORITHM_SECP256K1, signerv1.Algorithm_ALGORITHM_ED25519, signerv1.Algorithm_ALGORITHM_P256} {
		r, err := c.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: alg})
		require.NoError(t, err)
		record(r)
		keys = append(keys, r.GetKey())
	}
	for _, k := range keys {
		req := &signerv1.SignRequest{KeyId: k.GetKeyId(), Payload: &signerv1.SignRequest_Digest{Digest: make([]byte, 32)}}
		if k.GetAlgorithm() == signerv1.Algorithm_ALGORITHM_ED25519 {
			req.Payload = &signerv1.SignRequest_Message{Message: []byte("m")}
		}
		r, err := c.Sign(ctx(t), req)
		require.NoError(t, err)
		record(r)
		d, err := c.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: k.GetKeyId()})
		require.NoError(t, err)
		record(d)
		_, err = c.Sign(ctx(t), req)
		answers.WriteString(status.Convert(err).Message())
		e, err := c.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: k.GetKeyId()})
		require.NoError(t, err)
		record(e)
	}

	// Open every stored key the way only someone allowed to call KMS
	// Decrypt without an attestation could (the test's KMS policy allows
	// it; the production policy does not).
	kc := kmssimtest.NewClient(w.kmsURL, w.kmsPool, kmssimtest.AccessKeyID, kmssimtest.SecretAccessKey)
	var secrets [][]byte
	var store bytes.Buffer
	for _, k := range keys {
		blob, err := os.ReadFile(filepath.Join(w.storeDir, "keys", k.GetKeyId()))
		require.NoError(t, err)
		store.Write(blob)
		var sk sealedv1.SealedKey
		require.NoError(t, proto.Unmarshal(blob, &sk))
		var h sealedv1.SealedKeyHeader
		require.NoError(t, proto.Unmarshal(sk.GetHeader(), &h))
		kekBlob, err := os.ReadFile(filepath.Join(w.storeDir, "keks", h.GetKekId()))
		require.NoError(t, err)
		store.Write(kekBlob)
		var kek sealedv1.SealedKEK
		require.NoError(t, proto.Unmarshal(kekBlob, &kek))
		out, err := kc.Decrypt(context.Background(), &kms.DecryptInput{
			CiphertextBlob: kek.GetKmsCiphertext(), EncryptionContext: kek.GetEncryptionContext(), KeyId: aws.String(kek.GetKmsKeyArn()),
		})
		require.NoError(t, err)
		dataKey := out.Plaintext
		block, err := aes.NewCipher(dataKey)
		require.NoError(t, err)
		gcm, err := cipher.NewGCM(block)
		require.NoError(t, err)
		priv, err := gcm.Open(nil, sk.GetNonce(), sk.GetCiphertext(), append([]byte("nitrosigner/sealed-key/v1\x00"), sk.GetHeader()...))
		require.NoError(t, err, "docs/sealing.md describes the format exactly")
		// Prove these are the right bytes to look for.
		switch k.GetAlgorithm() {
		case signerv1.Algorithm_ALGORITHM_SECP256K1:
			assert.Equal(t, k.GetPublicKey(), secp256k1.PrivKeyFromBytes(priv).PubKey().SerializeUncompressed())
		case signerv1.Algorithm_ALGORITHM_ED25519:
			assert.Equal(t, k.GetPublicKey(), []byte(ed25519.PrivateKey(priv).Public().(ed25519.PublicKey)))
			priv = priv[:ed25519.SeedSize]
		}
		secrets = append(secrets, dataKey, priv)
	}
	require.Len(t, secrets, 6)

	seen := map[string][]byte{
		"link traffic": w.linkTap.bytes(),
		"KMS traffic":  w.kmsTap.bytes(),
		"parent logs":  []byte(logs.String()),
		"answers":      answers.Bytes(),
		"store":        store.Bytes(),
	}
	require.NotEmpty(t, seen["link traffic"])
	require.NotEmpty(t, seen["KMS traffic"])
	require.NotEmpty(t, seen["parent logs"])
	for where, data := range seen {
		for i, s := range secrets {
			for _, form := range [][]byte{s, []byte(hex.EncodeToString(s)), []byte(hex.EncodeToString(s)[:32])} {
				assert.False(t, bytes.Contains(data, form), "secret %d (or its hex) found in %s", i, where)
			}
		}
	}
}

// TestAttestationPolicy: with a key policy that admits only the expected
// enclave image, that image works, and a changed binary or a debug-mode
// enclave is refused by KMS with an error that says so.
func TestAttestationPolicy(t *testing.T) {
	good := newWorld(t, worldOptions{})
	policy := imagePolicy(t, good.sim.PCRs())

	t.Run("expected image admitted", func(t *testing.T) {
		w := newWorld(t, worldOptions{policy: policy})
		s := w.start(t)
		k := createKey(t, s.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
		sig, err := signDigest(t, s.client, k.GetKeyId())
		require.NoError(t, err)
		verifyDigestSig(t, k, sig)
	})
	for name, o := range map[string]worldOptions{
		"changed binary": {policy: policy, image: []byte("a different enclave binary")},
		"debug mode":     {policy: policy, debug: true},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, o)
			s := w.start(t)
			_, err := s.client.CreateKey(ctx(t), &signerv1.CreateKeyRequest{Algorithm: signerv1.Algorithm_ALGORITHM_SECP256K1})
			require.Error(t, err)
			code := status.Code(err)
			assert.Contains(t, []codes.Code{codes.PermissionDenied, codes.FailedPrecondition}, code, err)
			assert.Contains(t, status.Convert(err).Message(), "attestation", "the message says the attestation was refused")
			list, lerr := s.client.ListKeys(ctx(t), &signerv1.ListKeysRequest{})
			require.NoError(t, lerr)
			assert.Empty(t, list.GetKeys(), "nothing stored")
		})
	}
}

// waitReady waits until the parent reaches the (re)started enclave.
func waitReady(t *testing.T, c signerv1.SignerServiceClient) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := c.GetAttestation(ctx(t), &signerv1.GetAttestationRequest{Nonce: []byte("ready")})
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "parent reaches the enclave")
}

// imagePolicy is the key policy `nitrosigner kms-policy` makes for the
// simulated enclave's measurements, with the test's KMS principal as the
// parent role.
func imagePolicy(t *testing.T, pcrs map[int][]byte) []byte {
	t.Helper()
	want := map[int]string{}
	for _, i := range []int{0, 1, 2} {
		want[i] = hex.EncodeToString(pcrs[i])
	}
	p, err := kmspolicy.Generate(kmspolicy.GenerateOptions{
		Account:        kmssimtest.Account,
		AdminPrincipal: "arn:aws:iam::" + kmssimtest.Account + ":role/key-admin",
		ParentRole:     kmssimtest.PrincipalARN,
		PCRs:           want,
	})
	require.NoError(t, err)
	return p
}

// TestS3Store: the same custody path with the sealed blobs in S3
// (versitygw, a versioned bucket): keys survive a restart of the whole
// stack, and a deleted key's blob is gone in every version.
func TestS3Store(t *testing.T) {
	w := newWorld(t, worldOptions{s3: true})
	stopEnclave := startEnclaveCfg(t, w.enclaveConfig(t))
	pc := w.parentConfig()
	pc.Listen = "unix://" + filepath.Join(w.dir, "p1.sock")
	stopParent := startParent(t, pc)
	_, c := dialParent(t, pc.Listen)
	k := createKey(t, c, signerv1.Algorithm_ALGORITHM_SECP256K1)
	gone := createKey(t, c, signerv1.Algorithm_ALGORITHM_ED25519)
	_, err := c.DisableKey(ctx(t), &signerv1.DisableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	_, err = c.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: gone.GetKeyId()})
	require.NoError(t, err)
	stopParent()
	stopEnclave()

	s := w.start(t)
	_, err = signDigest(t, s.client, k.GetKeyId())
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "disabled state kept in S3")
	_, err = s.client.EnableKey(ctx(t), &signerv1.EnableKeyRequest{KeyId: k.GetKeyId()})
	require.NoError(t, err)
	sig, err := signDigest(t, s.client, k.GetKeyId())
	require.NoError(t, err)
	verifyDigestSig(t, k, sig)
	list, err := s.client.ListKeys(ctx(t), &signerv1.ListKeysRequest{})
	require.NoError(t, err)
	assert.Len(t, list.GetKeys(), 2)

	_, err = s.client.DeleteKey(ctx(t), &signerv1.DeleteKeyRequest{KeyId: gone.GetKeyId()})
	require.NoError(t, err)
	_, err = s.client.Sign(ctx(t), &signerv1.SignRequest{KeyId: gone.GetKeyId(), Payload: &signerv1.SignRequest_Message{Message: []byte("m")}})
	assert.Equal(t, codes.NotFound, status.Code(err))
	versions, err := s3test.Shared(t).Client().ListObjectVersions(ctx(t), &s3.ListObjectVersionsInput{
		Bucket: aws.String(s3test.BucketVersioned), Prefix: aws.String(filepath.Base(w.dir) + "/keys/" + gone.GetKeyId()),
	})
	require.NoError(t, err)
	assert.Empty(t, versions.Versions, "every version of the deleted key's blob is gone")
	assert.Empty(t, versions.DeleteMarkers)
}

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// TestKMSFaults: KMS throttling, server errors and dropped connections
// reach the client as Unavailable (safe to retry) with KMS's reason, and
// the next call succeeds once KMS recovers; a KMS slower than the call's
// deadline ends in DeadlineExceeded, not a hang.
func TestKMSFaults(t *testing.T) {
	w := newWorld(t, worldOptions{})
	s := w.start(t)
	k := createKey(t, s.client, signerv1.Algorithm_ALGORITHM_SECP256K1)
	for name, f := range map[string]kmssim.Fault{
		"throttled": kmssim.Throttle,
		"5xx":       kmssim.InternalError,
		"dropped":   kmssim.Drop,
	} {
		t.Run(name, func(t *testing.T) {
			w.kms.Faults().Inject(f, 10, "GenerateDataKey")
			t.Cleanup(w.kms.Faults().Reset)
			// Rotation needs a new KEK from KMS.
			_, err := s.client.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: k.GetKeyId()})
			require.Error(t, err)
			assert.Equal(t, codes.Unavailable, status.Code(err), err)
			assert.Contains(t, status.Convert(err).Message(), "KMS")
			w.kms.Faults().Reset()
			_, err = s.client.RotateKey(ctx(t), &signerv1.RotateKeyRequest{KeyId: k.GetKeyId()})
			require.NoError(t, err, "recovers once KMS does")
		})
	}
	t.Run("slow", func(t *testing.T) {
		w.kms.Faults().SetLatency(3 * time.Second)
		t.Cleanup(w.kms.Faults().Reset)
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		_, err := s.client.RotateKey(c, &signerv1.RotateKeyRequest{KeyId: k.GetKeyId()})
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err), err)
		assert.Less(t, time.Since(start), 2*time.Second)
	})
}
