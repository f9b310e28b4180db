package kmspolicy_test

import (
	"testing"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// FuzzParse feeds mutated policies to Parse, as the KMS simulator does with
// untrusted PutKeyPolicy documents. Seeds are generated policies, the
// documented reference example and the AWS default policy. It asserts that
// Parse never panics, that a rejected document yields no Policy, and that
// an accepted one evaluates deterministically to a valid Decision for
// requests with and without attestation.
func FuzzParse(f *testing.F) {
	for _, pcrs := range []map[int]string{
		{0: realPCR0},
		{0: realPCR0, 3: parentPCR3, 8: pcrC},
		{8: pcrC, 1: realPCR1, 2: realPCR2},
	} {
		opts := genOptions()
		opts.PCRs = pcrs
		doc, err := kmspolicy.Generate(opts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(doc)
	}
	doc, err := kmspolicy.Generate(upgradeOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(referencePolicy))
	f.Add([]byte(awsDefaultPolicy))
	f.Add([]byte(policyOf(withCondition(`{"StringNotLikeIfExists": {"kms:RecipientAttestation:PCR4": "4570*"}, "Null": {"kms:CallerAccount": false}}`))))
	f.Add([]byte(`{"Statement": {"Effect": "Deny", "Principal": {"AWS": ["111122223333"]}, "NotAction": "kms:Describe*", "NotResource": "arn:*"}}`))
	f.Add([]byte(`{}`))

	good := realAttestation(f, map[int]string{3: parentPCR3, 8: pcrC})
	requests := []kmspolicy.Request{
		decrypt(nil),
		decrypt(good),
		decrypt(debugAttestation(f)),
		{Principal: adminARN, Action: "kms:PutKeyPolicy", Resource: keyARN},
		{Principal: "ec2.amazonaws.com", Action: "KMS:ENCRYPT", Resource: "*"},
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := kmspolicy.Parse(doc)
		if err != nil {
			if p != nil {
				t.Fatalf("policy returned with error %v", err)
			}
			return
		}
		for _, r := range requests {
			d, reason := p.Evaluate(r)
			if d != kmspolicy.Allow && d != kmspolicy.ImplicitDeny && d != kmspolicy.ExplicitDeny {
				t.Fatalf("invalid decision %d", d)
			}
			if d2, reason2 := p.Evaluate(r); d2 != d || reason2 != reason {
				t.Fatalf("nondeterministic evaluation: %v %q then %v %q", d, reason, d2, reason2)
			}
		}
	})
}
