package kmspolicy_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

// genOptions pins PCR0 of the real document, the parent's PCR3 and a PCR8.
func genOptions() kmspolicy.GenerateOptions {
	return kmspolicy.GenerateOptions{
		Account:        account,
		AdminPrincipal: adminARN,
		ParentRole:     parentARN,
		PCRs:           map[int]string{0: strings.ToUpper(realPCR0), 3: parentPCR3, 8: pcrC},
	}
}

func generate(t *testing.T, opts kmspolicy.GenerateOptions) *kmspolicy.Policy {
	t.Helper()
	doc, err := kmspolicy.Generate(opts)
	require.NoError(t, err)
	return mustParse(t, string(doc))
}

// upgradeOptions admits two images during a roll: the old one (PCR0 of the
// real document, signed with certificate C) and the new one (PCR0 A,
// signed with certificate B).
func upgradeOptions() kmspolicy.GenerateOptions {
	opts := genOptions()
	opts.PCRs = nil
	opts.Images = []kmspolicy.Image{
		{PCRs: map[int]string{0: realPCR0, 3: parentPCR3, 8: pcrC}},
		{PCRs: map[int]string{0: pcrA, 3: parentPCR3, 8: pcrB}},
	}
	return opts
}

func TestGenerateGolden(t *testing.T) {
	tests := []struct {
		golden string
		opts   func() kmspolicy.GenerateOptions
	}{
		{"generated.golden.json", genOptions},
		{"generated-two-images.golden.json", upgradeOptions},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			doc, err := kmspolicy.Generate(tt.opts())
			require.NoError(t, err)
			again, err := kmspolicy.Generate(tt.opts())
			require.NoError(t, err)
			assert.Equal(t, doc, again, "deterministic")
			assert.NotContains(t, string(doc), strings.ToUpper(realPCR0), "PCR values are lower-cased")

			golden := filepath.Join("testdata", tt.golden)
			if *update {
				require.NoError(t, os.MkdirAll("testdata", 0o755))
				require.NoError(t, os.WriteFile(golden, doc, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(doc), "run go test -update to accept a change")
		})
	}
}

func TestGeneratedPolicyRoundTrip(t *testing.T) {
	p := generate(t, genOptions())
	good := realAttestation(t, map[int]string{3: parentPCR3, 8: pcrC})
	req := func(principal, action string, a *kmspolicy.Attestation) kmspolicy.Request {
		return kmspolicy.Request{Principal: principal, Action: action, Resource: keyARN, Attestation: a}
	}
	tests := []struct {
		name    string
		req     kmspolicy.Request
		want    kmspolicy.Decision
		wantSid string
	}{
		{"enclave decrypt", req(session, "kms:Decrypt", good), kmspolicy.Allow, kmspolicy.SidEnclaveUse},
		{"enclave generate data key", req(session, "kms:GenerateDataKey", good), kmspolicy.Allow, kmspolicy.SidEnclaveUse},
		{"enclave generate random", req(session, "kms:GenerateRandom", good), kmspolicy.Allow, kmspolicy.SidEnclaveUse},
		{"role arn itself", req(parentARN, "kms:Decrypt", good), kmspolicy.Allow, kmspolicy.SidEnclaveUse},
		{"changed pcr0", req(session, "kms:Decrypt", realAttestation(t, map[int]string{0: pcrA, 3: parentPCR3, 8: pcrC})), kmspolicy.ImplicitDeny, ""},
		{"changed pcr3 (other parent role)", req(session, "kms:Decrypt", realAttestation(t, map[int]string{3: pcrB, 8: pcrC})), kmspolicy.ImplicitDeny, ""},
		{"missing pcr8", req(session, "kms:Decrypt", realAttestation(t, map[int]string{3: parentPCR3, 8: ""})), kmspolicy.ImplicitDeny, ""},
		{"debug enclave", req(session, "kms:Decrypt", debugAttestation(t)), kmspolicy.ExplicitDeny, kmspolicy.SidDenyDebug},
		{"no attestation: decrypt", req(session, "kms:Decrypt", nil), kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"no attestation: generate data key", req(session, "kms:GenerateDataKey", nil), kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"no attestation: without plaintext", req(session, "kms:GenerateDataKeyWithoutPlaintext", nil), kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"no attestation: encrypt", req(session, "kms:Encrypt", nil), kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"no attestation: re-encrypt", req(session, "kms:ReEncryptFrom", nil), kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"no attestation: admin decrypt", req(adminARN, "kms:Decrypt", nil), kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"admin decrypt with recipient", req(adminARN, "kms:Decrypt", good), kmspolicy.ImplicitDeny, ""},
		{"admin generate data key with recipient", req(adminARN, "kms:GenerateDataKey", good), kmspolicy.ImplicitDeny, ""},
		{"admin session decrypt with recipient", req("arn:aws:sts::111122223333:assumed-role/key-admin/alice", "kms:Decrypt", good), kmspolicy.ImplicitDeny, ""},
		{"admin may not create grants", req(adminARN, "kms:CreateGrant", nil), kmspolicy.ImplicitDeny, ""},
		{"admin puts key policy", req(adminARN, "kms:PutKeyPolicy", nil), kmspolicy.Allow, kmspolicy.SidAdmin},
		{"admin schedules deletion", req(adminARN, "kms:ScheduleKeyDeletion", nil), kmspolicy.Allow, kmspolicy.SidAdmin},
		{"admin describes", req(adminARN, "kms:DescribeKey", nil), kmspolicy.Allow, kmspolicy.SidAdmin},
		{"parent describes", req(session, "kms:DescribeKey", nil), kmspolicy.Allow, kmspolicy.SidDescribe},
		{"parent may not manage", req(session, "kms:PutKeyPolicy", nil), kmspolicy.ImplicitDeny, ""},
		{"other role with a matching document", req("arn:aws:sts::111122223333:assumed-role/other/i-1", "kms:Decrypt", good), kmspolicy.ImplicitDeny, ""},
		{"account root is not a principal", req("arn:aws:iam::111122223333:user/alice", "kms:DescribeKey", nil), kmspolicy.ImplicitDeny, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := p.Evaluate(tt.req)
			assert.Equal(t, tt.want, got, reason)
			if tt.wantSid != "" {
				assert.Contains(t, reason, `"`+tt.wantSid+`"`)
			}
		})
	}
}

// TestGeneratedPCR8Only checks that a policy pinning only the signing
// certificate still refuses debug-mode enclaves, even if the NSM kept
// PCR8 in debug mode (undocumented, nitro-reference §8).
func TestGeneratedPCR8Only(t *testing.T) {
	opts := genOptions()
	opts.PCRs = map[int]string{8: pcrC}
	p := generate(t, opts)

	got, reason := p.Evaluate(decrypt(realAttestation(t, map[int]string{8: pcrC})))
	assert.Equal(t, kmspolicy.Allow, got, reason)
	got, reason = p.Evaluate(decrypt(realAttestation(t, map[int]string{0: zeroPCR, 1: zeroPCR, 2: zeroPCR, 8: pcrC})))
	assert.Equal(t, kmspolicy.ExplicitDeny, got, reason)
	assert.Contains(t, reason, kmspolicy.SidDenyDebug)
	got, reason = p.Evaluate(decrypt(realAttestation(t, map[int]string{8: pcrB})))
	assert.Equal(t, kmspolicy.ImplicitDeny, got, reason)
}

func TestGenerateRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(o *kmspolicy.GenerateOptions)
		want   string
	}{
		{"short account", func(o *kmspolicy.GenerateOptions) { o.Account = "1111" }, "Account"},
		{"parent is a user", func(o *kmspolicy.GenerateOptions) { o.ParentRole = "arn:aws:iam::111122223333:user/parent" }, "ParentRole"},
		{"parent is a session", func(o *kmspolicy.GenerateOptions) { o.ParentRole = session }, "ParentRole"},
		{"parent in another account", func(o *kmspolicy.GenerateOptions) {
			o.ParentRole = "arn:aws:iam::444455556666:role/signer-parent"
		}, "not in account 111122223333"},
		{"admin is the account root", func(o *kmspolicy.GenerateOptions) { o.AdminPrincipal = "arn:aws:iam::111122223333:root" }, "AdminPrincipal"},
		{"admin is an account id", func(o *kmspolicy.GenerateOptions) { o.AdminPrincipal = account }, "AdminPrincipal"},
		{"admin is star", func(o *kmspolicy.GenerateOptions) { o.AdminPrincipal = "*" }, "AdminPrincipal"},
		{"admin is a session", func(o *kmspolicy.GenerateOptions) { o.AdminPrincipal = session }, "AdminPrincipal"},
		{"admin is the parent", func(o *kmspolicy.GenerateOptions) { o.AdminPrincipal = parentARN }, "must differ"},
		{"admin in another partition", func(o *kmspolicy.GenerateOptions) { o.AdminPrincipal = "arn:aws-cn:iam::111122223333:role/key-admin" }, "partitions"},
		{"no pcrs", func(o *kmspolicy.GenerateOptions) { o.PCRs = nil }, "PCR0"},
		{"neither pcr0 nor pcr8", func(o *kmspolicy.GenerateOptions) { o.PCRs = map[int]string{1: realPCR1, 3: parentPCR3} }, "PCR0 (image) or PCR8"},
		{"index out of range", func(o *kmspolicy.GenerateOptions) { o.PCRs[32] = pcrA }, "PCR32"},
		{"negative index", func(o *kmspolicy.GenerateOptions) { o.PCRs[-1] = pcrA }, "PCR-1"},
		{"not hex", func(o *kmspolicy.GenerateOptions) { o.PCRs[3] = strings.Repeat("zz", 48) }, "PCR3: want 96 hex digits"},
		{"short value", func(o *kmspolicy.GenerateOptions) { o.PCRs[3] = "abcd" }, "PCR3: want 96 hex digits"},
		{"0x prefix", func(o *kmspolicy.GenerateOptions) { o.PCRs[3] = "0x" + parentPCR3[2:] }, "PCR3"},
		{"debug pcr0", func(o *kmspolicy.GenerateOptions) { o.PCRs[0] = zeroPCR }, "PCR0 is all zeros"},
		{"unsigned pcr8", func(o *kmspolicy.GenerateOptions) { o.PCRs[8] = zeroPCR }, "PCR8 is all zeros"},
		{"images and pcrs", func(o *kmspolicy.GenerateOptions) { o.Images = upgradeOptions().Images }, "not both"},
		{"empty images", func(o *kmspolicy.GenerateOptions) { o.PCRs, o.Images = nil, []kmspolicy.Image{} }, "Images: no image"},
		{"image without pcrs", func(o *kmspolicy.GenerateOptions) {
			*o = upgradeOptions()
			o.Images[1].PCRs = nil
		}, "Images[1].PCRs must pin PCR0"},
		{"bad pcr in second image", func(o *kmspolicy.GenerateOptions) {
			*o = upgradeOptions()
			o.Images[1].PCRs[3] = "abcd"
		}, "Images[1].PCRs: PCR3: want 96 hex digits"},
		{"debug second image", func(o *kmspolicy.GenerateOptions) {
			*o = upgradeOptions()
			o.Images[1].PCRs[0] = zeroPCR
		}, "Images[1].PCRs: PCR0 is all zeros"},
		{"same image twice", func(o *kmspolicy.GenerateOptions) {
			*o = upgradeOptions()
			o.Images = append(o.Images, kmspolicy.Image{PCRs: map[int]string{0: strings.ToUpper(pcrA), 3: parentPCR3, 8: pcrB}})
		}, "Images[2].PCRs: the same image as Images[1]"},
		{"over the policy size limit", func(o *kmspolicy.GenerateOptions) {
			o.PCRs = nil
			for i := range 100 {
				o.Images = append(o.Images, kmspolicy.Image{PCRs: map[int]string{0: fmt.Sprintf("%096x", i+1), 3: parentPCR3}})
			}
		}, "over the KMS limit of 32768"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := genOptions()
			tt.change(&opts)
			doc, err := kmspolicy.Generate(opts)
			require.ErrorIs(t, err, kmspolicy.ErrInvalidOptions)
			assert.Nil(t, doc)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// TestGeneratedImages checks a policy for two images, as during an
// upgrade: each image is admitted alone, a mix of their PCRs is not, and
// the policy that follows (only the new image) refuses the old one.
func TestGeneratedImages(t *testing.T) {
	oldImage := realAttestation(t, map[int]string{3: parentPCR3, 8: pcrC})
	newImage := realAttestation(t, map[int]string{0: pcrA, 3: parentPCR3, 8: pcrB})
	oldPCR0NewCert := realAttestation(t, map[int]string{3: parentPCR3, 8: pcrB})
	newPCR0OldCert := realAttestation(t, map[int]string{0: pcrA, 3: parentPCR3, 8: pcrC})
	otherRole := realAttestation(t, map[int]string{0: pcrA, 3: pcrC, 8: pcrB})

	both := generate(t, upgradeOptions())
	finalOpts := upgradeOptions()
	finalOpts.Images = finalOpts.Images[1:]
	final := generate(t, finalOpts)

	tests := []struct {
		name    string
		policy  *kmspolicy.Policy
		att     *kmspolicy.Attestation
		want    kmspolicy.Decision
		wantSid string
	}{
		{"both: old image", both, oldImage, kmspolicy.Allow, kmspolicy.SidEnclaveUse + "0"},
		{"both: new image", both, newImage, kmspolicy.Allow, kmspolicy.SidEnclaveUse + "1"},
		{"both: old pcr0 with new pcr8", both, oldPCR0NewCert, kmspolicy.ImplicitDeny, ""},
		{"both: new pcr0 with old pcr8", both, newPCR0OldCert, kmspolicy.ImplicitDeny, ""},
		{"both: other parent role", both, otherRole, kmspolicy.ImplicitDeny, ""},
		{"both: debug enclave", both, debugAttestation(t), kmspolicy.ExplicitDeny, kmspolicy.SidDenyDebug},
		{"both: no attestation", both, nil, kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
		{"final: new image", final, newImage, kmspolicy.Allow, kmspolicy.SidEnclaveUse},
		{"final: old image refused", final, oldImage, kmspolicy.ImplicitDeny, ""},
		{"final: no attestation", final, nil, kmspolicy.ExplicitDeny, kmspolicy.SidDenyUnattested},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := tt.policy.Evaluate(decrypt(tt.att))
			assert.Equal(t, tt.want, got, reason)
			if tt.wantSid != "" {
				assert.Contains(t, reason, `"`+tt.wantSid+`"`)
			}
		})
	}

	// The mixes above are what one statement listing both images' values
	// per key would admit; separate statements are what refuses them.
	lists := mustParse(t, policyOf(parentUse(`{"StringEqualsIgnoreCase": {
		"kms:RecipientAttestation:ImageSha384": ["`+realPCR0+`", "`+pcrA+`"],
		"kms:RecipientAttestation:PCR3": "`+parentPCR3+`",
		"kms:RecipientAttestation:PCR8": ["`+pcrC+`", "`+pcrB+`"]}}`)))
	for _, mix := range []*kmspolicy.Attestation{oldPCR0NewCert, newPCR0OldCert} {
		got, reason := lists.Evaluate(decrypt(mix))
		assert.Equal(t, kmspolicy.Allow, got, reason)
	}
}

// TestGeneratedSids checks the statement ids: unique, and numbered only
// when there are several images.
func TestGeneratedSids(t *testing.T) {
	sids := func(opts kmspolicy.GenerateOptions) []string {
		doc, err := kmspolicy.Generate(opts)
		require.NoError(t, err)
		var p struct{ Statement []struct{ Sid string } }
		require.NoError(t, json.Unmarshal(doc, &p))
		var out []string
		for _, s := range p.Statement {
			out = append(out, s.Sid)
		}
		return out
	}
	assert.Equal(t, []string{kmspolicy.SidAdmin, kmspolicy.SidEnclaveUse, kmspolicy.SidDescribe,
		kmspolicy.SidDenyUnattested, kmspolicy.SidDenyDebug}, sids(genOptions()))
	one := genOptions()
	one.Images, one.PCRs = []kmspolicy.Image{{PCRs: one.PCRs}}, nil
	assert.Equal(t, sids(genOptions()), sids(one), "PCRs is shorthand for one image")
	assert.Equal(t, []string{kmspolicy.SidAdmin, "EnclaveUseWithAttestation0", "EnclaveUseWithAttestation1",
		kmspolicy.SidDescribe, kmspolicy.SidDenyUnattested, kmspolicy.SidDenyDebug}, sids(upgradeOptions()))
}
