package kmspolicy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalidOptions is wrapped by the errors [Generate] returns for
// unusable [GenerateOptions].
var ErrInvalidOptions = errors.New("kmspolicy: invalid options")

// Statement ids of generated policies.
const (
	SidAdmin          = "KeyAdministration"
	SidEnclaveUse     = "EnclaveUseWithAttestation"
	SidDescribe       = "ParentDescribeKey"
	SidDenyUnattested = "DenyKeyUseWithoutAttestation"
	SidDenyDebug      = "DenyDebugModeEnclaves"
)

// adminActions let the administrator manage the key without using it.
// kms:Create* is not among them: it includes kms:CreateGrant, and a grant
// could give any enclave (of any image) kms:Decrypt; the only Create action
// on a key is CreateAlias.
var adminActions = []string{
	"kms:CancelKeyDeletion",
	"kms:CreateAlias",
	"kms:Delete*",
	"kms:Describe*",
	"kms:Disable*",
	"kms:Enable*",
	"kms:Get*",
	"kms:List*",
	"kms:Put*",
	"kms:Revoke*",
	"kms:ScheduleKeyDeletion",
	"kms:TagResource",
	"kms:UntagResource",
	"kms:Update*",
}

// enclaveActions are what the enclave calls, always with a Recipient.
var enclaveActions = []string{"kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateRandom"}

// keyUseActions are denied without attestation and to debug enclaves. They
// cover every operation that yields or uses the key's plaintext or could
// re-wrap data under another key: the enclave needs none of them without a
// Recipient, and Encrypt, ReEncrypt* and the ...WithoutPlaintext variants
// take no Recipient at all, so they are denied to everyone (a parent that
// could Encrypt could plant chosen KEKs; one that could ReEncrypt could move
// them under a key it controls).
var keyUseActions = []string{
	"kms:Decrypt",
	"kms:DeriveSharedSecret",
	"kms:Encrypt",
	"kms:GenerateDataKey",
	"kms:GenerateDataKeyPair",
	"kms:GenerateDataKeyPairWithoutPlaintext",
	"kms:GenerateDataKeyWithoutPlaintext",
	"kms:GenerateRandom",
	"kms:ReEncrypt*",
}

// debugPCR0 is PCR0 of a debug-mode enclave, as KMS sees it.
var debugPCR0 = strings.Repeat("0", 96)

// GenerateOptions describes the key policy [Generate] writes.
//
// The policy has these statements:
//
//   - KeyAdministration: AdminPrincipal may manage the key (describe, list,
//     enable, disable, tag, rotate settings, alias, key policy, deletion)
//     but has no permission to use it, with or without a Recipient;
//   - EnclaveUseWithAttestation, one per image: ParentRole (and its
//     sessions) may call kms:Decrypt, kms:GenerateDataKey and
//     kms:GenerateRandom only when the request's attestation document
//     matches every PCR of that image (StringEqualsIgnoreCase). PCR0 is
//     pinned through kms:RecipientAttestation:ImageSha384, the key AWS
//     documents for the image on all Recipient operations and the one the
//     deny below tests, so a single key governs both; other PCRs use
//     PCR<N>. With one image the Sid is [SidEnclaveUse]; with several it is
//     SidEnclaveUse followed by the image's index in Images
//     (EnclaveUseWithAttestation0, EnclaveUseWithAttestation1, ...);
//   - ParentDescribeKey: ParentRole may call kms:DescribeKey;
//   - DenyKeyUseWithoutAttestation: everyone is refused every key use
//     (Decrypt, Encrypt, ReEncrypt*, GenerateDataKey*, GenerateRandom,
//     DeriveSharedSecret) when the request has no attestation, tested with
//     {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}. This holds
//     even if someone later adds an Allow (or a grant) for those actions;
//   - DenyDebugModeEnclaves: the same actions are refused when
//     ImageSha384 is 96 zeros, as for every debug-mode enclave, which
//     matters when PCR0 is not pinned (PCR8-only policies).
//
// Several images are admitted during an upgrade, when parents run the old
// and the new image side by side. Each image gets its own statement so
// that an attestation must match all PCRs of one image: one statement
// listing the values of both images per key would OR the values of each
// key separately, and so admit a mix such as the PCR0 of one image with
// the PCR8 (signing certificate) of the other.
//
// The account root is deliberately not a principal, so IAM policies cannot
// widen access to the key; only the principals named here have any. KMS
// checks that the caller of PutKeyPolicy can still manage the key under the
// new policy, so apply it as AdminPrincipal (or bypass that check on
// purpose). kms:GenerateRandom names no key, so real KMS authorizes it by
// the caller's IAM policy, not this key policy; give the parent role the
// same attestation conditions there.
type GenerateOptions struct {
	// Account is the 12-digit id of the account that owns the key and the
	// parent's role.
	Account string

	// AdminPrincipal is the ARN of the IAM role or user that administers
	// the key. It must not be an account root (that would delegate to IAM
	// policies, including the parent's) nor the parent's role.
	AdminPrincipal string

	// ParentRole is the ARN of the parent instance's IAM role
	// (arn:aws:iam::Account:role/NAME), the role the enclave's KMS calls
	// are signed with. Its assumed-role sessions match too.
	ParentRole string

	// Images are the enclave images admitted, each with its own
	// statement; an attestation must match every PCR of one of them.
	// Images must differ from each other. Set either Images or PCRs.
	Images []Image

	// PCRs is shorthand for Images: []Image{{PCRs: PCRs}}, one image.
	PCRs map[int]string
}

// Image is one enclave image a generated policy admits.
type Image struct {
	// PCRs are the enclave's expected measurements by index, 96 hex digits
	// each (case is normalised to lower). PCR0 (image) or PCR8 (signing
	// certificate) is required; PCR3 (the parent's role) is recommended,
	// so that only the intended parent's instances can present the
	// document. All-zero values (debug mode, unsigned images) are refused.
	PCRs map[int]string
}

// Generate returns the key policy described by opts as indented JSON
// (two spaces, trailing newline). The output is deterministic: the same
// options give the same bytes. Invalid options, and options whose policy
// would exceed [MaxPolicySize], give an error wrapping [ErrInvalidOptions]
// that names the field.
func Generate(opts GenerateOptions) ([]byte, error) {
	images, err := opts.validate()
	if err != nil {
		return nil, err
	}
	aws := func(arn string) map[string]string { return map[string]string{"AWS": arn} }
	stmts := []statementJSON{
		{Sid: SidAdmin, Effect: "Allow", Principal: aws(opts.AdminPrincipal), Action: adminActions, Resource: "*"},
	}
	for n, pcrs := range images {
		sid := SidEnclaveUse
		if len(images) > 1 {
			sid += strconv.Itoa(n)
		}
		attested := make(map[string]string, len(pcrs))
		for i, v := range pcrs {
			key := fmt.Sprintf("kms:RecipientAttestation:PCR%d", i)
			if i == 0 {
				key = "kms:RecipientAttestation:ImageSha384"
			}
			attested[key] = v
		}
		stmts = append(stmts, statementJSON{
			Sid: sid, Effect: "Allow", Principal: aws(opts.ParentRole), Action: enclaveActions, Resource: "*",
			Condition: map[string]map[string]string{"StringEqualsIgnoreCase": attested},
		})
	}
	stmts = append(stmts,
		statementJSON{Sid: SidDescribe, Effect: "Allow", Principal: aws(opts.ParentRole), Action: []string{"kms:DescribeKey"}, Resource: "*"},
		statementJSON{
			Sid: SidDenyUnattested, Effect: "Deny", Principal: "*", Action: keyUseActions, Resource: "*",
			Condition: map[string]map[string]string{"Null": {"kms:RecipientAttestation:ImageSha384": "true"}},
		},
		statementJSON{
			Sid: SidDenyDebug, Effect: "Deny", Principal: "*", Action: keyUseActions, Resource: "*",
			Condition: map[string]map[string]string{"StringEqualsIgnoreCase": {"kms:RecipientAttestation:ImageSha384": debugPCR0}},
		},
	)
	doc := policyJSON{Version: "2012-10-17", ID: "nitrosigner-enclave-key", Statement: stmts}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("kmspolicy: encode policy: %w", err)
	}
	if buf.Len() > MaxPolicySize {
		return nil, fmt.Errorf("%w: the policy for %d images is %d bytes, over the KMS limit of %d", ErrInvalidOptions, len(images), buf.Len(), MaxPolicySize)
	}
	return buf.Bytes(), nil
}

// policyJSON and statementJSON are the generated document's shape.
// encoding/json writes map keys sorted, so the output is deterministic.
type policyJSON struct {
	Version   string          `json:"Version"`
	ID        string          `json:"Id"`
	Statement []statementJSON `json:"Statement"`
}

type statementJSON struct {
	Sid       string                       `json:"Sid"`
	Effect    string                       `json:"Effect"`
	Principal any                          `json:"Principal"`
	Action    []string                     `json:"Action"`
	Resource  string                       `json:"Resource"`
	Condition map[string]map[string]string `json:"Condition,omitempty"`
}

// validate checks the options and returns each image's PCRs as lowercase
// hex.
func (o GenerateOptions) validate() ([]map[int]string, error) {
	if !isAccountID(o.Account) {
		return nil, fmt.Errorf("%w: Account %q is not a 12-digit account id", ErrInvalidOptions, o.Account)
	}
	role, err := parseAWSPrincipal(o.ParentRole, "ParentRole")
	if err != nil || role.roleName == "" {
		return nil, fmt.Errorf("%w: ParentRole %q is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)", ErrInvalidOptions, o.ParentRole)
	}
	if role.account != o.Account {
		return nil, fmt.Errorf("%w: ParentRole %q is not in account %s", ErrInvalidOptions, o.ParentRole, o.Account)
	}
	admin, err := parseAWSPrincipal(o.AdminPrincipal, "AdminPrincipal")
	if err != nil || admin.any || admin.root || admin.partition == "" || !strings.Contains(o.AdminPrincipal, ":iam::") {
		return nil, fmt.Errorf("%w: AdminPrincipal %q is not an IAM role or user ARN", ErrInvalidOptions, o.AdminPrincipal)
	}
	if admin.partition != role.partition {
		return nil, fmt.Errorf("%w: AdminPrincipal and ParentRole are in different partitions", ErrInvalidOptions)
	}
	if o.AdminPrincipal == o.ParentRole {
		return nil, fmt.Errorf("%w: AdminPrincipal must differ from ParentRole: the administrator can rewrite the policy", ErrInvalidOptions)
	}

	if o.PCRs != nil && o.Images != nil {
		return nil, fmt.Errorf("%w: set Images or PCRs, not both", ErrInvalidOptions)
	}
	if o.Images == nil {
		pcrs, err := validPCRs(o.PCRs, "PCRs")
		if err != nil {
			return nil, err
		}
		return []map[int]string{pcrs}, nil
	}
	if len(o.Images) == 0 {
		return nil, fmt.Errorf("%w: Images: no image", ErrInvalidOptions)
	}
	var out []map[int]string
	for n, img := range o.Images {
		where := fmt.Sprintf("Images[%d].PCRs", n)
		pcrs, err := validPCRs(img.PCRs, where)
		if err != nil {
			return nil, err
		}
		for m, prev := range out {
			if maps.Equal(prev, pcrs) {
				return nil, fmt.Errorf("%w: %s: the same image as Images[%d]", ErrInvalidOptions, where, m)
			}
		}
		out = append(out, pcrs)
	}
	return out, nil
}

// validPCRs checks one image's PCRs and returns them as lowercase hex;
// where names them in errors.
func validPCRs(pcrs map[int]string, where string) (map[int]string, error) {
	if len(pcrs) == 0 || (pcrs[0] == "" && pcrs[8] == "") {
		return nil, fmt.Errorf("%w: %s must pin PCR0 (image) or PCR8 (signing certificate)", ErrInvalidOptions, where)
	}
	out := make(map[int]string, len(pcrs))
	for _, i := range slices.Sorted(maps.Keys(pcrs)) {
		if i < 0 || i >= numPCRs {
			return nil, fmt.Errorf("%w: %s: PCR%d: index out of range 0..%d", ErrInvalidOptions, where, i, numPCRs-1)
		}
		v := strings.ToLower(pcrs[i])
		if b, err := hex.DecodeString(v); err != nil || len(b) != 48 {
			return nil, fmt.Errorf("%w: %s: PCR%d: want 96 hex digits (SHA-384)", ErrInvalidOptions, where, i)
		}
		if v == debugPCR0 {
			return nil, fmt.Errorf("%w: %s: PCR%d is all zeros (debug-mode enclave or unsigned image), which admits any such enclave", ErrInvalidOptions, where, i)
		}
		out[i] = v
	}
	return out, nil
}
