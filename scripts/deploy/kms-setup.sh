#!/usr/bin/env bash
# Creates the KMS key that wraps nitrosigner's KEKs and installs its key
# policy, which lets only an attested enclave with the expected measurements
# use it. Run it as the key administrator, from an administrator's machine.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

usage() {
	cat <<EOF
Usage: $PROG create --admin-arn ARN [--alias NAME] [--region REGION] [--dry-run]
       $PROG put-policy --key-id KEY --role-arn ARN --admin-arn ARN
                        --measurements FILE [--measurements FILE]
                        [--policy FILE] [--out FILE] [--region REGION] [--dry-run]
       $PROG check-policy FILE

create
  Create the symmetric KMS key (or find it by its alias: running create again
  changes nothing), give it the alias, turn on automatic rotation of its
  backing key, and print its ARN. Its first key policy lets only --admin-arn
  administer it and nobody use it; bake the ARN into the enclave image
  (--kms-key-id), build the image, then run put-policy.

put-policy
  Install the key policy made by
    nitrosigner kms-policy --role-arn ARN --admin-arn ARN --pcrs FILE...
  from the measurements JSON of each enclave image to allow (two during an
  upgrade: see upgrade.sh), or the policy in --policy FILE. The policy is
  checked first (see check-policy); the current one is saved next to --out
  as *.previous.json.

check-policy
  Refuse a policy that would let anything but an attested enclave decrypt:
  an Allow of Encrypt, Decrypt, ReEncrypt*, GenerateDataKey*, CreateGrant or
  DeriveSharedSecret (or a wildcard covering one) without a
  kms:RecipientAttestation condition; an Allow with NotAction; Principal "*";
  an ...IfExists operator on an attestation key; PCR0 = zeros (debug mode).

Options:
  --admin-arn ARN        IAM role (or user) that administers the key: the
                         identity you run this script as
  --role-arn ARN         the parent instance's IAM role (its ARN is PCR3)
  --key-id KEY           key ARN, id or alias/NAME
  --measurements FILE    nitro-cli measurements JSON of an enclave image
                         (repeatable; each becomes one allowed image)
  --policy FILE          install this policy instead of generating one
  --out FILE             where to write the generated policy
                         (default ./kms-key-policy.json)
  --alias NAME           alias of the key (default alias/nitrosigner)
  --region REGION        AWS region (default: the AWS CLI's configuration)
  --dry-run              print the commands instead of running them
  -h, --help             show this help
EOF
}

# check_policy FILE fails, naming each problem, if the key policy in FILE
# could let anything but an attested enclave obtain key material.
check_policy() {
	local file=$1 problems p
	[[ -r $file ]] || die "policy file $file is missing"
	problems=$(jq -r '
		def arr: if type == "array" then . elif . == null then [] else [.] end;
		def glob2re: ascii_downcase | gsub("(?<c>[.+^$(){}|\\[\\]\\\\])"; "\\\(.c)")
			| gsub("\\*"; ".*") | gsub("\\?"; ".") | "^" + . + "$";
		def sensitive: ["kms:encrypt", "kms:decrypt", "kms:reencryptfrom", "kms:reencryptto",
			"kms:generatedatakey", "kms:generatedatakeywithoutplaintext",
			"kms:generatedatakeypair", "kms:generatedatakeypairwithoutplaintext",
			"kms:creategrant", "kms:derivesharedsecret"];
		def grants_sensitive: [.Action | arr | .[] | glob2re as $re | sensitive[] | select(test($re))] | length > 0;
		def attkeys: [(.Condition // {}) | to_entries[] | .key as $op | (.value | to_entries[])
			| select(.key | ascii_downcase | startswith("kms:recipientattestation:"))
			| {op: $op, key: (.key | ascii_downcase), values: (.value | arr)}];
		if (.Statement | type) != "array" and (.Statement | type) != "object" then "the policy has no Statement"
		else
			.Statement | arr | .[] | select(.Effect == "Allow")
			| "statement \(.Sid // "without Sid")" as $name |
			(if has("NotAction") then "\($name): Allow with NotAction grants decryption" else empty end),
			(if (.Principal == "*") or ([.Principal | .. | strings] | any(. == "*"))
				then "\($name): Principal \"*\"" else empty end),
			(if has("Action") and grants_sensitive and (attkeys | length == 0)
				then "\($name): allows \([.Action | arr | .[]] | join(", ")) without a kms:RecipientAttestation condition"
				else empty end),
			(attkeys[] | select(.op | ascii_downcase | endswith("ifexists"))
				| "\($name): \(.op) on \(.key) also matches requests without an attestation document"),
			(attkeys[] | select(.key | test("(imagesha384|pcr0)$")) | .values[]
				| select(type == "string" and test("^(0x)?0{96}$"; "i"))
				| "\($name): allows PCR0 = zeros, i.e. debug-mode enclaves")
		end' "$file") || die "$file is not a JSON key policy"
	if [[ -n $problems ]]; then
		printf '%s: policy %s refused:\n' "$PROG" "$file" >&2
		while IFS= read -r p; do
			printf '  - %s\n' "$p" >&2
		done <<<"$problems"
		exit 1
	fi
	say "policy $file passed the checks"
}

# bootstrap_policy ADMIN prints the first key policy: ADMIN may administer
# the key, and nobody may use it for cryptography.
bootstrap_policy() {
	cat <<EOF
{
  "Version": "2012-10-17",
  "Id": "nitrosigner-bootstrap",
  "Statement": [
    {
      "Sid": "KeyAdministration",
      "Effect": "Allow",
      "Principal": {"AWS": "$1"},
      "Action": [
        "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:ListKeyPolicies",
        "kms:GetKeyRotationStatus", "kms:EnableKeyRotation", "kms:DisableKeyRotation",
        "kms:ListResourceTags", "kms:TagResource", "kms:UntagResource",
        "kms:EnableKey", "kms:DisableKey", "kms:UpdateKeyDescription",
        "kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias",
        "kms:ListGrants", "kms:RevokeGrant",
        "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"
      ],
      "Resource": "*"
    }
  ]
}
EOF
}

(($#)) || usage_error "missing command (create, put-policy or check-policy)"
cmd=$1
shift
case $cmd in
-h | --help) usage; exit 0 ;;
create | put-policy) ;;
check-policy)
	[[ ${1:-} == -h || ${1:-} == --help ]] && { usage; exit 0; }
	[[ $# -eq 1 ]] || usage_error "check-policy takes one policy file"
	check_policy "$1"
	exit 0
	;;
*) usage_error "unknown command '$cmd'" ;;
esac

admin=
role=
key=
alias=alias/nitrosigner
region=
policy=
out=./kms-key-policy.json
measurements=()
while (($#)); do
	case $1 in
	--admin-arn) need_value "$@"; admin=$2; shift ;;
	--role-arn) need_value "$@"; role=$2; shift ;;
	--key-id) need_value "$@"; key=$2; shift ;;
	--measurements) need_value "$@"; measurements+=("$2"); shift ;;
	--policy) need_value "$@"; policy=$2; shift ;;
	--out) need_value "$@"; out=$2; shift ;;
	--alias) need_value "$@"; alias=$2; shift ;;
	--region) need_value "$@"; region=$2; shift ;;
	--dry-run) DRY_RUN=true ;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done

[[ -n $admin ]] || usage_error "--admin-arn is required"
check_arn iam "$admin"
aws=(aws)
if [[ -n $region ]]; then
	check_region "$region"
	aws+=(--region "$region")
fi
need_cmd aws jq

if [[ $cmd == create ]]; then
	[[ $alias =~ ^alias/[A-Za-z0-9/_-]+$ && $alias != alias/aws/* ]] ||
		usage_error "--alias must be alias/NAME (not alias/aws/...)"
	if ! "$DRY_RUN" && arn=$("${aws[@]}" kms describe-key --key-id "$alias" \
		--query KeyMetadata.Arn --output text 2>/dev/null); then
		say "$alias already exists; nothing to do"
		printf '%s\n' "$arn"
		exit 0
	fi
	tmp=$(mktemp)
	trap 'rm -f "$tmp"' EXIT
	bootstrap_policy "$admin" >"$tmp"
	if "$DRY_RUN"; then
		say "dry-run: the key's first policy would be:"
		sed 's/^/| /' "$tmp" >&3
	fi
	arn=$(run_out NEW_KEY_ARN "${aws[@]}" kms create-key \
		--description "nitrosigner: wraps the enclave key-encryption keys" \
		--key-spec SYMMETRIC_DEFAULT --key-usage ENCRYPT_DECRYPT \
		--policy "file://$tmp" --tags TagKey=app,TagValue=nitrosigner \
		--query KeyMetadata.Arn --output text)
	run "${aws[@]}" kms create-alias --alias-name "$alias" --target-key-id "$arn"
	run "${aws[@]}" kms enable-key-rotation --key-id "$arn"
	"$DRY_RUN" && exit 0
	say "created $alias; bake this ARN into the enclave image (--kms-key-id):"
	printf '%s\n' "$arn"
	exit 0
fi

# put-policy
[[ -n $key ]] || usage_error "--key-id is required"
check_arn kms "$key"
if [[ -z $policy ]]; then
	[[ -n $role ]] || usage_error "--role-arn is required"
	check_arn role "$role"
	((${#measurements[@]})) || usage_error "--measurements is required (one per allowed image)"
	((${#measurements[@]} <= 2)) || usage_error "at most two --measurements (old and new image)"
	gen=(nitrosigner kms-policy --role-arn "$role" --admin-arn "$admin")
	for m in "${measurements[@]}"; do
		pcr0=$(pcr0_of "$m")
		say "allowing the image with PCR0 ${pcr0:0:16}... ($m)"
		gen+=(--pcrs "$m")
	done
	need_cmd nitrosigner
	run_to "$out" "${gen[@]}"
	policy=$out
	if "$DRY_RUN"; then
		say "dry-run: $policy is not generated, so it is not checked"
	fi
else
	((${#measurements[@]} == 0)) || usage_error "--policy and --measurements exclude each other"
fi

if ! "$DRY_RUN" || [[ $policy != "$out" ]]; then
	check_policy "$policy"
fi

previous=${out%.json}.previous.json
run_to "$previous" "${aws[@]}" kms get-key-policy --key-id "$key" --policy-name default \
	--query Policy --output text
run "${aws[@]}" kms put-key-policy --key-id "$key" --policy-name default --policy "file://$policy"
"$DRY_RUN" && exit 0
say "installed $policy on $key (the previous policy is in $previous)"
