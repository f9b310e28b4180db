package kmspolicy_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// parentUse is an Allow of kms:Decrypt to the parent role with the given
// Condition.
func parentUse(cond string) string {
	return `{"Sid": "Use", "Effect": "Allow", "Principal": {"AWS": "` + parentARN + `"}, "Action": "kms:Decrypt", "Resource": "*", "Condition": ` + cond + `}`
}

// decrypt is a kms:Decrypt request by the parent's session with the given
// attestation (nil: no Recipient).
func decrypt(a *kmspolicy.Attestation) kmspolicy.Request {
	return kmspolicy.Request{Principal: session, Action: "kms:Decrypt", Resource: keyARN, Attestation: a}
}

func TestEvaluateConditions(t *testing.T) {
	att := func(pcrs map[int]string) *kmspolicy.Attestation { return attestation(t, pcrs) }
	tests := []struct {
		name   string
		policy string
		req    kmspolicy.Request
		want   kmspolicy.Decision
	}{
		// AND across keys.
		{"and: both keys match", parentUse(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + pcrA + `", "kms:RecipientAttestation:PCR3": "` + pcrB + `"}}`),
			decrypt(att(map[int]string{0: pcrA, 3: pcrB})), kmspolicy.Allow},
		{"and: second key differs", parentUse(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + pcrA + `", "kms:RecipientAttestation:PCR3": "` + pcrB + `"}}`),
			decrypt(att(map[int]string{0: pcrA, 3: pcrC})), kmspolicy.ImplicitDeny},
		{"and: second key absent", parentUse(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + pcrA + `", "kms:RecipientAttestation:PCR3": "` + pcrB + `"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.ImplicitDeny},
		{"and: across operators", parentUse(`{"StringEquals": {"kms:RecipientAttestation:PCR0": "` + pcrA + `"}, "StringNotEquals": {"kms:RecipientAttestation:PCR8": "` + pcrB + `"}}`),
			decrypt(att(map[int]string{0: pcrA, 8: pcrB})), kmspolicy.ImplicitDeny},
		// OR across values.
		{"or: second value matches", parentUse(`{"StringEquals": {"kms:RecipientAttestation:PCR0": ["` + pcrA + `", "` + pcrC + `"]}}`),
			decrypt(att(map[int]string{0: pcrC})), kmspolicy.Allow},
		{"or: no value matches", parentUse(`{"StringEquals": {"kms:RecipientAttestation:PCR0": ["` + pcrA + `", "` + pcrC + `"]}}`),
			decrypt(att(map[int]string{0: pcrB})), kmspolicy.ImplicitDeny},
		// NOR across values for negated operators.
		{"nor: a value matches", parentUse(`{"StringNotEquals": {"kms:RecipientAttestation:PCR0": ["` + pcrA + `", "` + pcrC + `"]}}`),
			decrypt(att(map[int]string{0: pcrC})), kmspolicy.ImplicitDeny},
		{"nor: no value matches", parentUse(`{"StringNotEquals": {"kms:RecipientAttestation:PCR0": ["` + pcrA + `", "` + pcrC + `"]}}`),
			decrypt(att(map[int]string{0: pcrB})), kmspolicy.Allow},
		// Case rules: the context holds lowercase hex; key names are
		// case-insensitive.
		{"equals is case-sensitive", parentUse(`{"StringEquals": {"kms:RecipientAttestation:ImageSha384": "` + strings.ToUpper(pcrA) + `"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.ImplicitDeny},
		{"equals ignore case", parentUse(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + strings.ToUpper(pcrA) + `"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.Allow},
		{"not equals ignore case", parentUse(`{"StringNotEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + strings.ToUpper(pcrA) + `"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.ImplicitDeny},
		{"key name case", parentUse(`{"StringEquals": {"KMS:RECIPIENTATTESTATION:PCR0": "` + pcrA + `"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.Allow},
		{"like", parentUse(`{"StringLike": {"kms:RecipientAttestation:PCR0": "a1a1*"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.Allow},
		{"like is case-sensitive", parentUse(`{"StringLike": {"kms:RecipientAttestation:PCR0": "A1*"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.ImplicitDeny},
		{"not like", parentUse(`{"StringNotLike": {"kms:RecipientAttestation:PCR0": "a1??*"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.ImplicitDeny},
		// Missing keys, IfExists and Null.
		{"if exists: key absent", parentUse(`{"StringEqualsIfExists": {"kms:RecipientAttestation:PCR16": "` + pcrA + `"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.Allow},
		{"if exists: key present, differs", parentUse(`{"StringEqualsIfExists": {"kms:RecipientAttestation:PCR16": "` + pcrA + `"}}`),
			decrypt(att(map[int]string{0: pcrA, 16: pcrB})), kmspolicy.ImplicitDeny},
		{"null true: no attestation", parentUse(`{"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}`),
			decrypt(nil), kmspolicy.Allow},
		{"null true: attested", parentUse(`{"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.ImplicitDeny},
		{"null false: attested", parentUse(`{"Null": {"kms:RecipientAttestation:ImageSha384": false}}`),
			decrypt(att(map[int]string{0: pcrA})), kmspolicy.Allow},
		{"null false: no attestation", parentUse(`{"Null": {"kms:RecipientAttestation:ImageSha384": false}}`),
			decrypt(nil), kmspolicy.ImplicitDeny},
		{"image key is pcr0", parentUse(`{"Null": {"kms:RecipientAttestation:ImageSha384": "false"}}`),
			decrypt(att(map[int]string{8: pcrA})), kmspolicy.ImplicitDeny},
		// Requests without a Recipient never match attestation conditions...
		{"no recipient: equals", parentUse(`{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": "` + pcrA + `"}}`),
			decrypt(nil), kmspolicy.ImplicitDeny},
		{"no recipient: like star", parentUse(`{"StringLike": {"kms:RecipientAttestation:ImageSha384": "*"}}`),
			decrypt(nil), kmspolicy.ImplicitDeny},
		// ...except negated ones, as in AWS: an absent key makes them true.
		// This is why generated policies test presence with Null.
		{"no recipient: not equals holds", parentUse(`{"StringNotEquals": {"kms:RecipientAttestation:ImageSha384": "` + zeroPCR + `"}}`),
			decrypt(nil), kmspolicy.Allow},
		{"caller account", parentUse(`{"StringEquals": {"kms:CallerAccount": "111122223333", "aws:PrincipalAccount": "111122223333"}}`),
			decrypt(nil), kmspolicy.Allow},
		{"other caller account", parentUse(`{"StringEquals": {"kms:CallerAccount": "444455556666"}}`),
			decrypt(nil), kmspolicy.ImplicitDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, policyOf(tt.policy))
			got, reason := p.Evaluate(tt.req)
			assert.Equal(t, tt.want, got, reason)
			if got == kmspolicy.Allow {
				assert.Equal(t, `statement 0 (Sid "Use") allows kms:Decrypt`, reason)
			}
		})
	}
}

func TestEvaluatePrincipalsActionsResources(t *testing.T) {
	stmt := func(principal, action, resource string) string {
		return `{"Effect": "Allow", "Principal": ` + principal + `, "Action": ` + action + `, "Resource": ` + resource + `}`
	}
	aws := func(arn string) string { return `{"AWS": "` + arn + `"}` }
	req := func(principal, action string) kmspolicy.Request {
		return kmspolicy.Request{Principal: principal, Action: action, Resource: keyARN}
	}
	tests := []struct {
		name   string
		policy string
		req    kmspolicy.Request
		want   kmspolicy.Decision
	}{
		{"star principal", stmt(`"*"`, `"kms:Decrypt"`, `"*"`), req("arn:aws:iam::999988887777:user/mallory", "kms:Decrypt"), kmspolicy.Allow},
		{"star in aws", stmt(aws("*"), `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"role itself", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req(parentARN, "kms:Decrypt"), kmspolicy.Allow},
		{"assumed-role session of the role", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"session of another role", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req("arn:aws:sts::111122223333:assumed-role/other/i-1", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"session of a role with a name prefix", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req("arn:aws:sts::111122223333:assumed-role/signer-parent-2/i-1", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"same role name in another account", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req("arn:aws:sts::444455556666:assumed-role/signer-parent/i-1", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"same role name in another partition", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req("arn:aws-cn:sts::111122223333:assumed-role/signer-parent/i-1", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"role path is not in session arns", stmt(aws("arn:aws:iam::111122223333:role/ops/signer-parent"), `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"iam user is not a role session", stmt(aws(parentARN), `"kms:Decrypt"`, `"*"`), req("arn:aws:iam::111122223333:user/signer-parent", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"exact session principal", stmt(aws(session), `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"exact session principal, other session", stmt(aws(session), `"kms:Decrypt"`, `"*"`), req("arn:aws:sts::111122223333:assumed-role/signer-parent/i-2", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"account root: user", stmt(aws("arn:aws:iam::111122223333:root"), `"kms:Decrypt"`, `"*"`), req("arn:aws:iam::111122223333:user/alice", "kms:Decrypt"), kmspolicy.Allow},
		{"account root: session", stmt(aws("arn:aws:iam::111122223333:root"), `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"account root: other account", stmt(aws("arn:aws:iam::111122223333:root"), `"kms:Decrypt"`, `"*"`), req("arn:aws:iam::444455556666:user/alice", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"bare account id", stmt(aws("111122223333"), `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"unparseable caller", stmt(aws("111122223333"), `"kms:Decrypt"`, `"*"`), req("alice", "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"service principal", stmt(`{"Service": "ec2.amazonaws.com"}`, `"kms:Decrypt"`, `"*"`), req("ec2.amazonaws.com", "kms:Decrypt"), kmspolicy.Allow},
		{"service principal, role caller", stmt(`{"Service": "ec2.amazonaws.com"}`, `"kms:Decrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"action wildcard", stmt(`"*"`, `"kms:Describe*"`, `"*"`), req(session, "kms:DescribeKey"), kmspolicy.Allow},
		{"action case-insensitive", stmt(`"*"`, `"KMS:describekey"`, `"*"`), req(session, "kms:DescribeKey"), kmspolicy.Allow},
		{"action wildcard misses", stmt(`"*"`, `"kms:Describe*"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"action question mark", stmt(`"*"`, `"kms:?ecrypt"`, `"*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"get star is not generate", stmt(`"*"`, `"kms:Get*"`, `"*"`), req(session, "kms:GenerateDataKey"), kmspolicy.ImplicitDeny},
		{"not action excludes", `{"Effect": "Allow", "Principal": "*", "NotAction": "kms:Decrypt", "Resource": "*"}`, req(session, "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"not action includes the rest", `{"Effect": "Allow", "Principal": "*", "NotAction": "kms:Decrypt", "Resource": "*"}`, req(session, "kms:Encrypt"), kmspolicy.Allow},
		{"resource exact", stmt(`"*"`, `"*"`, `"`+keyARN+`"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"resource wildcard", stmt(`"*"`, `"*"`, `"arn:aws:kms:*:111122223333:key/*"`), req(session, "kms:Decrypt"), kmspolicy.Allow},
		{"other resource", stmt(`"*"`, `"*"`, `"arn:aws:kms:us-east-1:111122223333:key/other"`), req(session, "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"resource is case-sensitive", stmt(`"*"`, `"*"`, `"`+strings.Replace(keyARN, "1234abcd", "1234ABCD", 1)+`"`), req(session, "kms:Decrypt"), kmspolicy.ImplicitDeny},
		{"not resource", `{"Effect": "Allow", "Principal": "*", "Action": "*", "NotResource": "` + keyARN + `"}`, req(session, "kms:Decrypt"), kmspolicy.ImplicitDeny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := mustParse(t, policyOf(tt.policy)).Evaluate(tt.req)
			assert.Equal(t, tt.want, got, reason)
		})
	}
}

func TestEvaluateExplicitDenyWins(t *testing.T) {
	p := mustParse(t, policyOf(
		`{"Sid": "All", "Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}`,
		`{"Sid": "NoDecrypt", "Effect": "Deny", "Principal": {"AWS": "`+parentARN+`"}, "Action": "kms:Decrypt", "Resource": "*"}`,
		`{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}`,
	))
	got, reason := p.Evaluate(decrypt(nil))
	assert.Equal(t, kmspolicy.ExplicitDeny, got)
	assert.Equal(t, `statement 1 (Sid "NoDecrypt") explicitly denies kms:Decrypt`, reason)

	got, reason = p.Evaluate(kmspolicy.Request{Principal: adminARN, Action: "kms:Decrypt", Resource: keyARN})
	assert.Equal(t, kmspolicy.Allow, got)
	assert.Equal(t, `statement 0 (Sid "All") allows kms:Decrypt`, reason, "the first applicable Allow is named")

	got, reason = mustParse(t, policyOf(`{"Effect": "Allow", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*"}`)).Evaluate(decrypt(nil))
	assert.Equal(t, kmspolicy.ImplicitDeny, got)
	assert.Equal(t, "no statement allows kms:Decrypt", reason)
}

func TestEvaluateNilAndEmpty(t *testing.T) {
	var p *kmspolicy.Policy
	got, _ := p.Evaluate(decrypt(nil))
	assert.Equal(t, kmspolicy.ImplicitDeny, got)
	got, _ = new(kmspolicy.Policy).Evaluate(decrypt(nil))
	assert.Equal(t, kmspolicy.ImplicitDeny, got)
}

func TestDecisionString(t *testing.T) {
	assert.Equal(t, "ImplicitDeny", kmspolicy.ImplicitDeny.String())
	assert.Equal(t, "Allow", kmspolicy.Allow.String())
	assert.Equal(t, "ExplicitDeny", kmspolicy.ExplicitDeny.String())
	assert.Equal(t, "Decision(7)", kmspolicy.Decision(7).String())
	assert.Equal(t, kmspolicy.ImplicitDeny, kmspolicy.Decision(0), "the zero value denies")
}
