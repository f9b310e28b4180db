// Package kmspolicy models the subset of AWS KMS key policies that gates a
// KMS key on Nitro Enclaves attestation: it parses a key policy document,
// evaluates requests against it the way KMS does, and generates the policy
// nitrosigner needs for an enclave image.
//
// Two callers use it: the KMS simulator (internal/kmssim), which parses
// untrusted documents from PutKeyPolicy and authorizes every request with
// [Policy.Evaluate], and the "nitrosigner kms-policy" command, which prints
// the output of [Generate]. The package does no I/O.
//
// # Grammar
//
// [Parse] accepts the IAM policy grammar as KMS key policies use it and
// rejects, with an error naming the element, everything it cannot evaluate
// faithfully, so a policy is never silently evaluated differently from AWS:
//
//   - top level: Version ("2012-10-17" or "2008-10-17", optional), Id
//     (optional), Statement (an object or a non-empty array);
//   - statement: Sid, Effect ("Allow" or "Deny"), Principal, exactly one of
//     Action and NotAction, exactly one of Resource and NotResource, and
//     Condition. NotPrincipal is refused (its semantics for assumed-role
//     sessions are not modelled);
//   - Principal: "*", or an object with "AWS" (and "Service") naming "*",
//     12-digit account ids, or IAM ARNs of an account root, user, role or
//     assumed-role session. Wildcards inside ARNs are refused, as by AWS;
//   - Action, NotAction, Resource, NotResource: a string or a non-empty
//     array of strings. Actions are "*" or "service:Name" and may contain the
//     wildcards * and ?; they match case-insensitively. Resources are "*" or
//     ARN patterns with * and ?, matched case-sensitively;
//   - Condition operators: StringEquals, StringNotEquals,
//     StringEqualsIgnoreCase, StringNotEqualsIgnoreCase, StringLike,
//     StringNotLike, each also with the IfExists suffix, and Null. The set
//     operators ForAnyValue: and ForAllValues:, all other operators (Bool,
//     Numeric*, Date*, Arn*, IpAddress, ...) and policy variables (${...})
//     are refused;
//   - condition keys (names are case-insensitive):
//     kms:RecipientAttestation:ImageSha384, kms:RecipientAttestation:PCR0 to
//     PCR31, kms:CallerAccount and aws:PrincipalAccount. Other keys are
//     refused, because the simulator cannot supply their values.
//
// Duplicate JSON member names are refused at every level (different parsers
// resolve them differently), as are documents over [MaxPolicySize] bytes,
// the KMS key policy quota.
//
// # Evaluation
//
// [Policy.Evaluate] follows the IAM evaluation logic: any statement that
// applies with Effect Deny gives [ExplicitDeny]; otherwise any that applies
// with Effect Allow gives [Allow]; otherwise the result is [ImplicitDeny].
// A statement applies when its principal, action and resource match and all
// its conditions hold. Within a Condition, operators and keys are ANDed and
// the values listed for one key are ORed (NORed for the negated operators).
//
// The attestation keys exist in the request context only when the request
// carries a Recipient ([Request.Attestation] is non-nil):
// kms:RecipientAttestation:ImageSha384 is PCR0 and PCR<N> is PCR N, each as
// lowercase hex. A key absent from the request makes a positive operator
// false and a negated one true; ...IfExists makes any operator true when the
// key is absent; Null tests presence ("true": the key is absent). So an
// Allow conditioned on attestation keys never matches a request without a
// Recipient, and a Deny conditioned on {"Null": {ImageSha384: "true"}}
// matches exactly the requests without one.
//
// Principals match as follows: "*" matches every caller; an account (root
// ARN or 12-digit id) matches every caller ARN in that account; a role ARN
// matches the role itself and its assumed-role sessions
// (arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION, role paths ignored, as in
// the session ARN); other ARNs match exactly; a Service principal matches a
// caller string equal to the service name. Real KMS additionally requires an
// IAM policy for callers admitted only through their account, and resolves
// role ARNs to unique ids when the policy is saved; neither is modelled.
//
// # Generated policies
//
// [Generate] builds the policy documented on [GenerateOptions]: the
// administrator manages the key but cannot use it, the parent's role may use
// it only with a Recipient whose attestation matches every pinned PCR of one
// of the admitted images (one Allow statement per image, so PCRs of
// different images cannot be mixed), and explicit denies refuse every key
// use without attestation and every use by a debug-mode enclave.
package kmspolicy
