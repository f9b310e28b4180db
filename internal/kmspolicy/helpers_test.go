package kmspolicy_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

const (
	account   = "111122223333"
	keyARN    = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	parentARN = "arn:aws:iam::111122223333:role/signer-parent"
	adminARN  = "arn:aws:iam::111122223333:role/key-admin"
	session   = "arn:aws:sts::111122223333:assumed-role/signer-parent/i-0123456789abcdef0"
)

// PCR values of the real non-debug attestation document
// (testdata/nitro/att_blocky_2024-09-07.cbor).
const (
	realPCR0 = "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a"
	realPCR1 = "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa"
	realPCR2 = "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c"
	realPCR4 = "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44"
)

var (
	zeroPCR = strings.Repeat("00", 48)
	pcrA    = strings.Repeat("a1", 48)
	pcrB    = strings.Repeat("b2", 48)
	pcrC    = strings.Repeat("c3", 48)
)

// referencePolicy is the documented pattern (nitro-reference §3.5, after
// the AWS KMS developer guide "Condition keys for Nitro Enclaves"): PCR0 of
// the real document, PCR3 measuring the parent role, a synthetic PCR8.
var referencePolicy = `{
  "Version": "2012-10-17",
  "Statement": [{
    "Sid": "EnclaveOnlyDecrypt",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111122223333:role/signer-parent"},
    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
    "Resource": "*",
    "Condition": {"StringEqualsIgnoreCase": {
      "kms:RecipientAttestation:PCR0": "` + realPCR0 + `",
      "kms:RecipientAttestation:PCR3": "` + parentPCR3 + `",
      "kms:RecipientAttestation:PCR8": "` + pcrC + `"}}
  }]
}`

// parentPCR3 is PCR3 of an enclave whose parent has role parentARN:
// SHA-384(48 zero bytes || ARN) (nitro-reference §5.2).
var parentPCR3 = func() string {
	h := sha512.New384()
	h.Write(make([]byte, 48))
	h.Write([]byte(parentARN))
	return hex.EncodeToString(h.Sum(nil))
}()

// awsDefaultPolicy is the default key policy KMS creates.
const awsDefaultPolicy = `{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [{
    "Sid": "Enable IAM User Permissions",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
    "Action": "kms:*",
    "Resource": "*"
  }]
}`

// attestation builds an Attestation from hex PCR values.
func attestation(t testing.TB, hexPCRs map[int]string) *kmspolicy.Attestation {
	t.Helper()
	a := &kmspolicy.Attestation{PCRs: make(map[int][]byte)}
	for i, h := range hexPCRs {
		b, err := hex.DecodeString(h)
		require.NoError(t, err)
		a.PCRs[i] = b
	}
	return a
}

// realAttestation is the PCR set of the real non-debug document (PCR0–15,
// zeros except 0, 1, 2, 4), with overrides applied.
func realAttestation(t testing.TB, overrides map[int]string) *kmspolicy.Attestation {
	t.Helper()
	pcrs := map[int]string{0: realPCR0, 1: realPCR1, 2: realPCR2, 4: realPCR4}
	for i := range 16 {
		if _, ok := pcrs[i]; !ok {
			pcrs[i] = zeroPCR
		}
	}
	for i, v := range overrides {
		if v == "" {
			delete(pcrs, i)
			continue
		}
		pcrs[i] = v
	}
	return attestation(t, pcrs)
}

// debugAttestation is what a debug-mode enclave presents: PCR0–3 and 8
// zero, PCR4 kept.
func debugAttestation(t testing.TB) *kmspolicy.Attestation {
	t.Helper()
	return realAttestation(t, map[int]string{0: zeroPCR, 1: zeroPCR, 2: zeroPCR})
}

// mustParse parses doc and fails the test on error.
func mustParse(t testing.TB, doc string) *kmspolicy.Policy {
	t.Helper()
	p, err := kmspolicy.Parse([]byte(doc))
	require.NoError(t, err)
	return p
}

// policyOf wraps statements (JSON objects, comma-separated) in a policy.
func policyOf(statements ...string) string {
	var b bytes.Buffer
	b.WriteString(`{"Version": "2012-10-17", "Statement": [`)
	b.WriteString(strings.Join(statements, ","))
	b.WriteString(`]}`)
	return b.String()
}
