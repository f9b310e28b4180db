//go:build !nosim

package kmssim_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/attest"
	"github.com/nitrosigner/nitrosigner/internal/cms"
	"github.com/nitrosigner/nitrosigner/internal/kmssim"
	"github.com/nitrosigner/nitrosigner/internal/kmssim/kmssimtest"
	"github.com/nitrosigner/nitrosigner/internal/nsmsim"
)

// recipientFor wraps an attestation document as a Recipient.
func recipientFor(doc []byte) *types.RecipientInfo {
	return &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
}

// managePolicy lets the test principal do everything except use the key
// to decrypt or generate data keys, plus extra statements.
func managePolicy(extra ...string) string {
	stmts := append([]string{fmt.Sprintf(`{"Sid": "Manage", "Effect": "Allow", "Principal": {"AWS": %q}, "Action": ["kms:Describe*", "kms:Get*", "kms:Put*", "kms:Encrypt", "kms:GenerateDataKeyWithoutPlaintext"], "Resource": "*"}`, kmssimtest.PrincipalARN)}, extra...)
	return `{"Version": "2012-10-17", "Statement": [` + strings.Join(stmts, ", ") + `]}`
}

func enclaveStatement(condition string) string {
	return fmt.Sprintf(`{"Sid": "Enclave", "Effect": "Allow", "Principal": {"AWS": %q}, "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*", "Condition": %s}`,
		kmssimtest.PrincipalARN, condition)
}

// recipientWorld is a simulator trusting an NSM root, with enclaves built
// from imageV1 and imageV2 and a debug enclave, all under that root.
type recipientWorld struct {
	*env
	v1, v2, debug *nsmsim.Simulator
	pcr0v1        string
}

func newRecipientWorld(t *testing.T, cfg kmssim.Config) *recipientWorld {
	t.Helper()
	nsmDir := t.TempDir()
	w := &recipientWorld{
		v1:    newNSM(t, imageV1, nsmDir),
		v2:    newNSM(t, imageV2, nsmDir),
		debug: newNSM(t, nil, nsmDir),
	}
	root, err := nsmsim.LoadRoot(nsmDir)
	require.NoError(t, err)
	cfg.NSMRoots = []*x509.Certificate{root}
	w.env = start(t, cfg)
	pcr0, _, _ := nsmsim.MeasureImage(imageV1)
	w.pcr0v1 = hex.EncodeToString(pcr0)
	return w
}

func TestRecipientRoundTrip(t *testing.T) {
	w := newRecipientWorld(t, kmssim.Config{})
	ctx := context.Background()
	priv := recipientKey(t)
	arn := w.createKey(t, managePolicy(enclaveStatement(fmt.Sprintf(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": %q}}`, w.pcr0v1))))
	doc := attestation(t, w.v1, &priv.PublicKey)
	ec := map[string]string{"kek_id": "k1"}

	gen, err := w.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, EncryptionContext: ec, Recipient: recipientFor(doc),
	})
	require.NoError(t, err)
	assert.Nil(t, gen.Plaintext, "plaintext must not accompany CiphertextForRecipient")
	require.NotEmpty(t, gen.CiphertextBlob)
	dataKey, err := cms.Decrypt(priv, gen.CiphertextForRecipient)
	require.NoError(t, err)
	require.Len(t, dataKey, 32)

	dec, err := w.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, EncryptionContext: ec, Recipient: recipientFor(doc)})
	require.NoError(t, err)
	assert.Nil(t, dec.Plaintext)
	assert.Equal(t, arn, aws.ToString(dec.KeyId))
	got, err := cms.Decrypt(priv, dec.CiphertextForRecipient)
	require.NoError(t, err)
	assert.Equal(t, dataKey, got)

	// The context still binds the blob when a Recipient is present.
	_, err = w.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, Recipient: recipientFor(doc)})
	var invalid *types.InvalidCiphertextException
	require.ErrorAs(t, err, &invalid)

	// The same as a plain Decrypt gives, once the policy allows one.
	_, err = w.srv.SetKeyPolicy(arn, []byte(allowPolicy(kmssimtest.PrincipalARN, "kms:*")))
	require.NoError(t, err)
	plain, err := w.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, EncryptionContext: ec})
	require.NoError(t, err)
	assert.Equal(t, dataKey, plain.Plaintext)

	// GenerateRandom, with the algorithm left to its only value.
	rnd, err := w.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(48), Recipient: &types.RecipientInfo{AttestationDocument: doc}})
	require.NoError(t, err)
	assert.Nil(t, rnd.Plaintext)
	random, err := cms.Decrypt(priv, rnd.CiphertextForRecipient)
	require.NoError(t, err)
	assert.Len(t, random, 48)
}

// TestRecipientCMSLayout compares the simulator's answer for a 32-byte
// data key with a real KMS answer for one (testdata/edgebit_cfr.cms): the
// bytes must agree everywhere except the recipient id, encrypted key, IV
// and ciphertext.
func TestRecipientCMSLayout(t *testing.T) {
	w := newRecipientWorld(t, kmssim.Config{})
	priv := recipientKey(t)
	arn := w.createKey(t, "")
	out, err := w.client.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{
		KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, Recipient: recipientFor(attestation(t, w.v1, &priv.PublicKey)),
	})
	require.NoError(t, err)
	real, err := os.ReadFile("testdata/edgebit_cfr.cms")
	require.NoError(t, err)

	skeleton := func(b []byte) []byte {
		t.Helper()
		env, err := cms.Parse(b)
		require.NoError(t, err)
		s := bytes.Clone(b)
		for _, field := range [][]byte{env.RecipientKeyID, env.EncryptedKey, env.IV, env.Ciphertext} {
			i := bytes.Index(s, field)
			require.GreaterOrEqual(t, i, 0)
			clear(s[i : i+len(field)])
		}
		return s
	}
	got := out.CiphertextForRecipient
	require.Len(t, got, len(real))
	assert.Equal(t, hex.EncodeToString(skeleton(real)), hex.EncodeToString(skeleton(got)))

	env, err := cms.Parse(got)
	require.NoError(t, err)
	ski, err := cms.SubjectKeyID(&priv.PublicKey)
	require.NoError(t, err)
	assert.Equal(t, ski, env.RecipientKeyID)
}

func TestRecipientPolicyConditions(t *testing.T) {
	w := newRecipientWorld(t, kmssim.Config{})
	ctx := context.Background()
	priv := recipientKey(t)
	docV1 := attestation(t, w.v1, &priv.PublicKey)
	docV2 := attestation(t, w.v2, &priv.PublicKey)
	pcr0v2, _, pcr2v2 := nsmsim.MeasureImage(imageV2)
	_, _, pcr2v1 := nsmsim.MeasureImage(imageV1)
	v2 := hex.EncodeToString(pcr0v2)
	upper := strings.ToUpper(w.pcr0v1)

	tests := []struct {
		name      string
		condition string
		doc       []byte // nil: no Recipient
		allowed   bool
	}{
		{"pcr0 matches", fmt.Sprintf(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": %q}}`, w.pcr0v1), docV1, true},
		{"changed binary", fmt.Sprintf(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": %q}}`, w.pcr0v1), docV2, false},
		{"no recipient", fmt.Sprintf(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": %q}}`, w.pcr0v1), nil, false},
		{"image sha384 upper case", fmt.Sprintf(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": %q}}`, upper), docV1, true},
		{"string equals is case sensitive", fmt.Sprintf(`{"StringEquals": {"kms:RecipientAttestation:ImageSha384": %q}}`, upper), docV1, false},
		{"string equals lower case", fmt.Sprintf(`{"StringEquals": {"kms:RecipientAttestation:ImageSha384": %q}}`, w.pcr0v1), docV1, true},
		{"values are ORed", fmt.Sprintf(`{"StringEquals": {"kms:RecipientAttestation:PCR0": [%q, %q]}}`, v2, w.pcr0v1), docV1, true},
		{"keys are ANDed", fmt.Sprintf(`{"StringEquals": {"kms:RecipientAttestation:PCR0": %q, "kms:RecipientAttestation:PCR2": %q}}`, w.pcr0v1, hex.EncodeToString(pcr2v2)), docV1, false},
		{"both keys match", fmt.Sprintf(`{"StringEquals": {"kms:RecipientAttestation:PCR0": %q, "kms:RecipientAttestation:PCR2": %q}}`, w.pcr0v1, hex.EncodeToString(pcr2v1)), docV1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arn := w.createKey(t, managePolicy(enclaveStatement(tt.condition)))
			gen, err := w.client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
			require.NoError(t, err)
			in := &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob}
			gdk := &kms.GenerateDataKeyInput{KeyId: aws.String(arn), NumberOfBytes: aws.Int32(32)}
			if tt.doc != nil {
				in.Recipient, gdk.Recipient = recipientFor(tt.doc), recipientFor(tt.doc)
			}
			_, decErr := w.client.Decrypt(ctx, in)
			_, genErr := w.client.GenerateDataKey(ctx, gdk)
			if tt.allowed {
				require.NoError(t, decErr)
				require.NoError(t, genErr)
				return
			}
			for op, err := range map[string]error{"Decrypt": decErr, "GenerateDataKey": genErr} {
				require.Error(t, err, op)
				assert.Equal(t, "AccessDeniedException", apiCode(err), op)
				assert.Equal(t, fmt.Sprintf("User: %s is not authorized to perform: kms:%s on resource: %s because no resource-based policy allows the kms:%s action",
					kmssimtest.PrincipalARN, op, arn, op), apiMessage(err), op)
			}
		})
	}
}

func TestRecipientGenerateRandomAccountPolicy(t *testing.T) {
	nsmDir := t.TempDir()
	v1, v2 := newNSM(t, imageV1, nsmDir), newNSM(t, imageV2, nsmDir)
	pcr0, _, _ := nsmsim.MeasureImage(imageV1)
	policy := fmt.Sprintf(`{"Version": "2012-10-17", "Statement": [
		{"Effect": "Allow", "Principal": {"AWS": %q}, "Action": "kms:*", "Resource": "*"},
		{"Effect": "Deny", "Principal": {"AWS": %q}, "Action": "kms:GenerateRandom", "Resource": "*",
		 "Condition": {"StringNotEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": %q}}}]}`,
		kmssimtest.PrincipalARN, kmssimtest.PrincipalARN, hex.EncodeToString(pcr0))
	root, err := nsmsim.LoadRoot(nsmDir)
	require.NoError(t, err)
	e := start(t, kmssim.Config{NSMRoots: []*x509.Certificate{root}, AccountPolicy: []byte(policy)})
	priv := recipientKey(t)
	ctx := context.Background()

	_, err = e.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32), Recipient: recipientFor(attestation(t, v1, &priv.PublicKey))})
	require.NoError(t, err)
	_, err = e.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32), Recipient: recipientFor(attestation(t, v2, &priv.PublicKey))})
	assert.Equal(t, "AccessDeniedException", apiCode(err))
	assert.Contains(t, apiMessage(err), "kms:GenerateRandom on resource: * with an explicit deny in a identity-based policy")
}

func TestRecipientRefused(t *testing.T) {
	w := newRecipientWorld(t, kmssim.Config{})
	ctx := context.Background()
	priv := recipientKey(t)
	arn := w.createKey(t, "") // default policy: any principal of the account
	gen, err := w.client.GenerateDataKeyWithoutPlaintext(ctx, &kms.GenerateDataKeyWithoutPlaintextInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256})
	require.NoError(t, err)

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	noKeyDoc, err := w.v1.Attest(ctx, nil, nil, nil)
	require.NoError(t, err)
	foreign := newNSM(t, imageV1, "") // its own root, not trusted
	realDoc, err := os.ReadFile("testdata/att_blocky_2024-09-07.cbor")
	require.NoError(t, err)
	good := attestation(t, w.v1, &priv.PublicKey)

	tests := []struct {
		name      string
		recipient *types.RecipientInfo
		msg       string
	}{
		{"debug enclave", recipientFor(attestation(t, w.debug, &priv.PublicKey)), "debug mode"},
		{"untrusted root", recipientFor(attestation(t, foreign, &priv.PublicKey)), "not valid"},
		{"real AWS document", recipientFor(realDoc), "not valid"},
		{"garbage document", recipientFor([]byte("not a document")), "not valid"},
		{"truncated document", recipientFor(good[:len(good)-1]), "not valid"},
		{"no public key", recipientFor(noKeyDoc), "no public key"},
		{"EC public key", recipientFor(attestation(t, w.v1, &ecKey.PublicKey)), "RSA-2048"},
		{"RSA-1024 public key", recipientFor(attestation(t, w.v1, &smallRSA.PublicKey)), "RSA-2048"},
		{"other algorithm", &types.RecipientInfo{AttestationDocument: good, KeyEncryptionAlgorithm: "RSAES_OAEP_SHA_1"}, "keyEncryptionAlgorithm"},
		{"no document", &types.RecipientInfo{KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}, "attestationDocument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := w.client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob, Recipient: tt.recipient})
			assert.Equal(t, "ValidationException", apiCode(err), "%v", err)
			assert.Contains(t, apiMessage(err), tt.msg)
			_, err = w.client.GenerateRandom(ctx, &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(8), Recipient: tt.recipient})
			assert.Equal(t, "ValidationException", apiCode(err), "%v", err)
		})
	}
}

// TestRecipientExpired checks that a document is judged at the server's
// clock: the leaf certificate lives three hours.
func TestRecipientExpired(t *testing.T) {
	nsmDir := t.TempDir()
	docTime := newClock(time.Now().Add(-4 * time.Hour))
	sim, err := nsmsim.New(nsmsim.Config{Image: imageV1, Now: docTime.Now, DevicePath: t.TempDir() + "/no-nsm", StateDir: nsmDir})
	require.NoError(t, err)
	t.Cleanup(func() { sim.Close() })
	priv := recipientKey(t)
	doc := attestation(t, sim, &priv.PublicKey)

	serverTime := newClock(docTime.Now())
	e := start(t, kmssim.Config{NSMRoots: []*x509.Certificate{sim.Root()}, Now: serverTime.Now})
	ctx := context.Background()
	arn := e.createKey(t, "")

	// At the document's time it is accepted (the SDK corrects its clock
	// from the server's Date header, as it would with real KMS).
	_, err = e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, Recipient: recipientFor(doc)})
	require.NoError(t, err)
	serverTime.Add(3*time.Hour + time.Minute)
	_, err = e.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(arn), KeySpec: types.DataKeySpecAes256, Recipient: recipientFor(doc)})
	assert.Equal(t, "ValidationException", apiCode(err), "%v", err)
	assert.Contains(t, apiMessage(err), "not valid")
}

// TestRecipientRealDocuments runs real AWS documents through the whole
// path with the AWS root trusted and the server clock at their time.
func TestRecipientRealDocuments(t *testing.T) {
	tests := []struct {
		file       string
		at         time.Time
		allowDebug bool
		msg        string
	}{
		// Verifies, then fails on its public_key (1024 bytes of 0x01).
		{"att_blocky_2024-09-07.cbor", time.UnixMilli(1725719859545), false, "RSA-2048"},
		{"att_blocky_debug_2024-09-07.cbor", time.UnixMilli(1725719886508), false, "debug mode"},
		{"att_blocky_debug_2024-09-07.cbor", time.UnixMilli(1725719886508), true, "RSA-2048"},
		// Past the leaf certificate's three hours.
		{"att_blocky_2024-09-07.cbor", time.Unix(1725730660, 0), false, "not valid"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s at %d debug %v", tt.file, tt.at.Unix(), tt.allowDebug), func(t *testing.T) {
			doc, err := os.ReadFile("testdata/" + tt.file)
			require.NoError(t, err)
			e := start(t, kmssim.Config{NSMRoots: []*x509.Certificate{attest.AWSRoot()}, Now: func() time.Time { return tt.at }, AllowDebug: tt.allowDebug})
			_, err = e.client.GenerateRandom(context.Background(), &kms.GenerateRandomInput{NumberOfBytes: aws.Int32(32), Recipient: recipientFor(doc)})
			assert.Equal(t, "ValidationException", apiCode(err), "%v", err)
			assert.Contains(t, apiMessage(err), tt.msg)
		})
	}
}

func TestRecipientAllowDebug(t *testing.T) {
	w := newRecipientWorld(t, kmssim.Config{AllowDebug: true})
	priv := recipientKey(t)
	ctx := context.Background()
	debugDoc := attestation(t, w.debug, &priv.PublicKey)

	// Accepted by a policy that does not pin PCR0 ...
	open := w.createKey(t, "")
	_, err := w.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(open), KeySpec: types.DataKeySpecAes256, Recipient: recipientFor(debugDoc)})
	require.NoError(t, err)
	// ... and refused by one that does: debug PCR0 is all zeros.
	pinned := w.createKey(t, managePolicy(enclaveStatement(fmt.Sprintf(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": %q}}`, w.pcr0v1))))
	_, err = w.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(pinned), KeySpec: types.DataKeySpecAes256, Recipient: recipientFor(debugDoc)})
	assert.Equal(t, "AccessDeniedException", apiCode(err))
}
