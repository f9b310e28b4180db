package kmspolicy_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nitrosigner/nitrosigner/internal/kmspolicy"
)

// allowAll is a statement that allows everything to everyone.
const allowAll = `{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}`

// withCondition returns an Allow-all statement with the given Condition.
func withCondition(cond string) string {
	return `{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": ` + cond + `}`
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		doc  string
	}{
		{"reference example", referencePolicy},
		{"aws default policy", awsDefaultPolicy},
		{"single statement object", `{"Version": "2012-10-17", "Statement": ` + allowAll + `}`},
		{"no version", `{"Statement": [` + allowAll + `]}`},
		{"2008 version", `{"Version": "2008-10-17", "Statement": [` + allowAll + `]}`},
		{"not action and not resource", policyOf(`{"Effect": "Deny", "Principal": "*", "NotAction": ["kms:Describe*"], "NotResource": "arn:aws:kms:*:111122223333:key/*"}`)},
		{"principal list", policyOf(`{"Effect": "Allow", "Principal": {"AWS": ["111122223333", "arn:aws:iam::111122223333:user/alice", "` + session + `"], "Service": "ec2.amazonaws.com"}, "Action": "kms:DescribeKey", "Resource": "*"}`)},
		{"role with path", policyOf(`{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/ops/signer-parent"}, "Action": "kms:DescribeKey", "Resource": "*"}`)},
		{"lower-case key and boolean null", policyOf(withCondition(`{"Null": {"kms:recipientattestation:imagesha384": true}}`))},
		{"every operator", policyOf(withCondition(`{
			"StringEquals": {"kms:RecipientAttestation:PCR1": "` + pcrA + `"},
			"StringNotEquals": {"kms:RecipientAttestation:PCR2": ["` + pcrA + `", "` + pcrB + `"]},
			"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR3": "` + pcrA + `"},
			"StringNotEqualsIgnoreCase": {"kms:RecipientAttestation:PCR4": "` + pcrA + `"},
			"StringLike": {"kms:RecipientAttestation:PCR8": "a1*"},
			"StringNotLike": {"kms:RecipientAttestation:PCR31": "?"},
			"StringEqualsIfExists": {"kms:CallerAccount": "111122223333"},
			"StringNotEqualsIgnoreCaseIfExists": {"aws:PrincipalAccount": "444455556666"},
			"Null": {"kms:RecipientAttestation:ImageSha384": "false"}}`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kmspolicy.Parse([]byte(tt.doc))
			require.NoError(t, err)
			require.NotNil(t, p)
		})
	}
}

func TestParseRejects(t *testing.T) {
	stmt := func(extra string) string {
		return policyOf(`{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", ` + extra + `}`)
	}
	tests := []struct {
		name    string
		doc     string
		wantErr error
		want    string // substring of the message: names the element
	}{
		{"not json", `{"Statement": `, kmspolicy.ErrMalformed, "not valid JSON"},
		{"not an object", `[]`, kmspolicy.ErrMalformed, "want a JSON object"},
		{"trailing data", `{"Statement": ` + allowAll + `} {}`, kmspolicy.ErrMalformed, "not valid JSON"},
		{"too large", `{"Id": "` + strings.Repeat("x", kmspolicy.MaxPolicySize) + `", "Statement": ` + allowAll + `}`, kmspolicy.ErrMalformed, "limit 32768"},
		{"unknown top-level element", `{"Statement": ` + allowAll + `, "Extra": 1}`, kmspolicy.ErrMalformed, `top-level element "Extra"`},
		{"duplicate top-level member", `{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": ` + allowAll + `}`, kmspolicy.ErrMalformed, `"Version" appears twice`},
		{"bad version", `{"Version": "2020-01-01", "Statement": ` + allowAll + `}`, kmspolicy.ErrMalformed, "Version"},
		{"numeric version", `{"Version": 1, "Statement": ` + allowAll + `}`, kmspolicy.ErrMalformed, "Version"},
		{"no statement", `{"Version": "2012-10-17"}`, kmspolicy.ErrMalformed, "no Statement"},
		{"empty statement list", `{"Statement": []}`, kmspolicy.ErrMalformed, "empty list"},
		{"scalar statement", `{"Statement": "x"}`, kmspolicy.ErrMalformed, "Statement"},
		{"statement not an object", policyOf(`"x"`), kmspolicy.ErrMalformed, "Statement[0]"},
		{"unknown statement element", stmt(`"Actions": "kms:Decrypt"`), kmspolicy.ErrMalformed, `Statement[0]: unknown element "Actions"`},
		{"duplicate effect", policyOf(`{"Effect": "Allow", "Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, `"Effect" appears twice`},
		{"lower-case effect", policyOf(`{"Effect": "allow", "Principal": "*", "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "Effect"},
		{"no effect", policyOf(`{"Principal": "*", "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "Effect"},
		{"not principal", policyOf(`{"Effect": "Deny", "NotPrincipal": {"AWS": "` + adminARN + `"}, "Action": "*", "Resource": "*"}`), kmspolicy.ErrUnsupported, "NotPrincipal"},
		{"no principal", policyOf(`{"Effect": "Allow", "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "no Principal"},
		{"string principal not star", policyOf(`{"Effect": "Allow", "Principal": "` + parentARN + `", "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "Principal"},
		{"federated principal", policyOf(`{"Effect": "Allow", "Principal": {"Federated": "cognito-identity.amazonaws.com"}, "Action": "*", "Resource": "*"}`), kmspolicy.ErrUnsupported, `principal type "Federated"`},
		{"wildcard in principal arn", policyOf(`{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/*"}, "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "wildcards"},
		{"group principal", policyOf(`{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:group/admins"}, "Action": "*", "Resource": "*"}`), kmspolicy.ErrUnsupported, "principal kind"},
		{"short account", policyOf(`{"Effect": "Allow", "Principal": {"AWS": "1111"}, "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, `"1111"`},
		{"empty principal object", policyOf(`{"Effect": "Allow", "Principal": {}, "Action": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "Principal: empty"},
		{"action and not action", stmt(`"NotAction": "kms:Decrypt"`), kmspolicy.ErrMalformed, "both Action and NotAction"},
		{"no action", policyOf(`{"Effect": "Allow", "Principal": "*", "Resource": "*"}`), kmspolicy.ErrMalformed, "no Action"},
		{"action without service", policyOf(`{"Effect": "Allow", "Principal": "*", "Action": "Decrypt", "Resource": "*"}`), kmspolicy.ErrMalformed, `Action "Decrypt"`},
		{"empty action list", policyOf(`{"Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*"}`), kmspolicy.ErrMalformed, "empty list"},
		{"numeric action", policyOf(`{"Effect": "Allow", "Principal": "*", "Action": [1], "Resource": "*"}`), kmspolicy.ErrMalformed, "Action[0]"},
		{"no resource", policyOf(`{"Effect": "Allow", "Principal": "*", "Action": "*"}`), kmspolicy.ErrMalformed, "no Resource"},
		{"resource not an arn", policyOf(`{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "key/1"}`), kmspolicy.ErrMalformed, `Resource "key/1"`},
		{"resource variable", policyOf(`{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "arn:aws:kms:us-east-1:111122223333:key/${aws:username}"}`), kmspolicy.ErrUnsupported, "policy variables"},
		{"bool operator", policyOf(withCondition(`{"Bool": {"kms:GrantIsForAWSResource": "true"}}`)), kmspolicy.ErrUnsupported, `condition operator "Bool"`},
		{"numeric operator", policyOf(withCondition(`{"NumericLessThan": {"kms:RecipientAttestation:PCR0": "1"}}`)), kmspolicy.ErrUnsupported, `"NumericLessThan"`},
		{"arn operator", policyOf(withCondition(`{"ArnLike": {"aws:PrincipalArn": "arn:*"}}`)), kmspolicy.ErrUnsupported, `"ArnLike"`},
		{"for any value", policyOf(withCondition(`{"ForAnyValue:StringEquals": {"kms:RecipientAttestation:PCR0": "x"}}`)), kmspolicy.ErrUnsupported, `set operator "ForAnyValue:StringEquals"`},
		{"for all values", policyOf(withCondition(`{"ForAllValues:StringLike": {"kms:RecipientAttestation:PCR0": "x"}}`)), kmspolicy.ErrUnsupported, "ForAllValues"},
		{"null if exists", policyOf(withCondition(`{"NullIfExists": {"kms:RecipientAttestation:PCR0": "true"}}`)), kmspolicy.ErrUnsupported, `"NullIfExists"`},
		{"lower-case operator", policyOf(withCondition(`{"stringequals": {"kms:RecipientAttestation:PCR0": "x"}}`)), kmspolicy.ErrUnsupported, `"stringequals"`},
		{"unmodelled key", policyOf(withCondition(`{"StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}}`)), kmspolicy.ErrUnsupported, `condition key "kms:ViaService"`},
		{"encryption context key", policyOf(withCondition(`{"StringEquals": {"kms:EncryptionContext:kek_id": "1"}}`)), kmspolicy.ErrUnsupported, "kms:EncryptionContext:kek_id"},
		{"principal arn key", policyOf(withCondition(`{"StringEquals": {"aws:PrincipalArn": "` + parentARN + `"}}`)), kmspolicy.ErrUnsupported, "aws:PrincipalArn"},
		{"pcr index too large", policyOf(withCondition(`{"StringEquals": {"kms:RecipientAttestation:PCR32": "x"}}`)), kmspolicy.ErrUnsupported, "PCR32"},
		{"pcr leading zero", policyOf(withCondition(`{"StringEquals": {"kms:RecipientAttestation:PCR01": "x"}}`)), kmspolicy.ErrUnsupported, "PCR01"},
		{"null value", policyOf(withCondition(`{"Null": {"kms:RecipientAttestation:ImageSha384": "yes"}}`)), kmspolicy.ErrMalformed, `not "yes"`},
		{"numeric condition value", policyOf(withCondition(`{"StringEquals": {"kms:RecipientAttestation:PCR0": 1}}`)), kmspolicy.ErrMalformed, "want a string or a boolean"},
		{"empty value list", policyOf(withCondition(`{"StringEquals": {"kms:RecipientAttestation:PCR0": []}}`)), kmspolicy.ErrMalformed, "empty list"},
		{"condition variable", policyOf(withCondition(`{"StringEquals": {"kms:CallerAccount": "${aws:PrincipalAccount}"}}`)), kmspolicy.ErrUnsupported, "policy variables"},
		{"operator without keys", policyOf(withCondition(`{"StringEquals": {}}`)), kmspolicy.ErrMalformed, "no condition keys"},
		{"duplicate condition key", policyOf(withCondition(`{"StringEquals": {"kms:RecipientAttestation:PCR0": "` + pcrA + `", "kms:RecipientAttestation:PCR0": "` + pcrB + `"}}`)), kmspolicy.ErrMalformed, "appears twice"},
		{"condition not an object", policyOf(withCondition(`[]`)), kmspolicy.ErrMalformed, "Condition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kmspolicy.Parse([]byte(tt.doc))
			require.ErrorIs(t, err, tt.wantErr)
			assert.Nil(t, p)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}
