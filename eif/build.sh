#!/usr/bin/env bash
# Build the enclave image file (EIF) of nitrosigner, reproducibly, and record
# its measurements.
#
#   eif/build.sh --region us-east-1 --kms-key-id arn:aws:kms:... [options]
#
# Steps:
#   1. render eif/Dockerfile with the enclave's command line (CMD) from the
#      options below; Docker does not expand build arguments in CMD, and the
#      command is measured in PCR2, so it is written into the Dockerfile;
#   2. docker buildx build with SOURCE_DATE_EPOCH (default: the time of the
#      last commit) and rewrite-timestamp, so the image is byte-identical
#      for the same commit;
#   3. nitro-cli build-enclave, whose {"Measurements": {...}} output is
#      written next to the EIF as NAME.measurements.json;
#   4. nitrosigner eif describe --pcrs on the result, which recomputes the
#      PCRs independently of nitro-cli and checks the CRC and signature
#      (skip with --no-check).
#
# --dry-run prints the commands and the rendered CMD without running them.
# Run on the EC2 parent (or any host with nitro-cli and docker buildx).
set -euo pipefail

usage() {
	cat <<'EOF'
usage: eif/build.sh --region REGION --kms-key-id ARN [--kms-key-id ARN ...] [options]

Enclave command line (measured in PCR2):
  --region REGION          AWS region of the KMS keys (required)
  --kms-key-id ARN         KMS key ARN; repeat for more; the first makes new KEKs (required)
  --kms-endpoint URL       default https://kms.REGION.amazonaws.com
  --kms-dial ADDR          default vsock://3:8000 (the parent's forwarder)
  --listen ADDR            default vsock://:5000
  --kek-max-keys N         default: the enclave's
  --kek-max-age DURATION   default: the enclave's

Build:
  --out FILE               EIF to write (default bin/enclave.eif); measurements go
                           to FILE without .eif plus .measurements.json
  --arch x86_64|aarch64    default x86_64
  --tag NAME               Docker image tag (default nitrosigner-enclave:local)
  --signing-certificate F  sign the EIF (PCR8); needs --private-key
  --private-key F          PEM key or KMS key ARN, as nitro-cli takes it
  --no-check               skip the nitrosigner eif describe cross-check
  --dry-run                print the commands, run nothing
  -h, --help               this help

Environment: SOURCE_DATE_EPOCH (default: last commit time), NITROSIGNER (path
of the nitrosigner CLI; default: go run ./cmd/nitrosigner).
EOF
}

die() {
	printf 'build.sh: %s\n' "$*" >&2
	exit 1
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$script_dir/.." && pwd)
dockerfile=$script_dir/Dockerfile

region=
kms_endpoint=
kms_dial=vsock://3:8000
listen=vsock://:5000
kek_max_keys=
kek_max_age=
key_ids=()
out=$repo/bin/enclave.eif
arch=x86_64
tag="nitrosigner-enclave:local"
cert=
key=
check=1
dry_run=0

while (($# > 0)); do
	opt=$1
	case $opt in
	--no-check) check=0; shift; continue ;;
	--dry-run) dry_run=1; shift; continue ;;
	-h | --help) usage; exit 0 ;;
	--region | --kms-key-id | --kms-endpoint | --kms-dial | --listen | --kek-max-keys | --kek-max-age | \
		--out | --arch | --tag | --signing-certificate | --private-key)
		(($# >= 2)) || die "$opt needs a value"
		val=$2
		shift 2
		;;
	*) usage >&2; die "unknown argument: $opt" ;;
	esac
	case $opt in
	--region) region=$val ;;
	--kms-key-id) key_ids+=("$val") ;;
	--kms-endpoint) kms_endpoint=$val ;;
	--kms-dial) kms_dial=$val ;;
	--listen) listen=$val ;;
	--kek-max-keys) kek_max_keys=$val ;;
	--kek-max-age) kek_max_age=$val ;;
	--out) out=$val ;;
	--arch) arch=$val ;;
	--tag) tag=$val ;;
	--signing-certificate) cert=$val ;;
	--private-key) key=$val ;;
	esac
done

# Every value goes into a JSON array in the Dockerfile, so each must match a
# strict pattern (no quotes, backslashes or white space to escape).
[[ -n $region ]] || die "--region is required"
[[ $region =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "--region: '$region' is not an AWS region"
((${#key_ids[@]} > 0)) || die "--kms-key-id is required"
for id in "${key_ids[@]}"; do
	[[ $id =~ ^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+$ ]] ||
		die "--kms-key-id: '$id' is not a KMS key or alias ARN"
done
kms_endpoint=${kms_endpoint:-https://kms.$region.amazonaws.com}
[[ $kms_endpoint =~ ^https://[A-Za-z0-9.-]+(:[0-9]+)?/?$ ]] || die "--kms-endpoint: '$kms_endpoint' is not https://HOST[:PORT]"
for addr in "$kms_dial" "$listen"; do
	[[ $addr =~ ^vsock://[0-9]*:[0-9]+$ ]] || die "'$addr' is not vsock://[CID]:PORT"
done
[[ -z $kek_max_keys || $kek_max_keys =~ ^[1-9][0-9]*$ ]] || die "--kek-max-keys: '$kek_max_keys' is not a positive number"
[[ -z $kek_max_age || $kek_max_age =~ ^([0-9]+(h|m|s|ms))+$ ]] || die "--kek-max-age: '$kek_max_age' is not a duration like 720h"
case $arch in
x86_64) platform=linux/amd64 ;;
aarch64) platform=linux/arm64 ;;
*) die "--arch: '$arch' is neither x86_64 nor aarch64" ;;
esac
[[ -z $cert && -z $key || -n $cert && -n $key ]] || die "--signing-certificate and --private-key go together"
[[ $out == *.eif ]] || die "--out: '$out' does not end in .eif"
measurements=${out%.eif}.measurements.json

# Base images must be pinned by digest: refuse placeholders and tags.
grep -Eq '^ARG [A-Z_]*IMAGE=' "$dockerfile" || die "$dockerfile: no ARG ..._IMAGE= line"
while read -r line; do
	ref=${line#*=}
	[[ $ref =~ @sha256:[0-9a-f]{64}$ && ! $ref =~ @sha256:0{64}$ ]] ||
		die "$dockerfile: base image '$ref' is not pinned by a real sha256 digest; fill it in (docker buildx imagetools inspect)"
done < <(grep -E '^ARG [A-Z_]*IMAGE=' "$dockerfile")
while read -r _ from; do
	from=${from#--platform=* }
	from=${from%% *}
	[[ $from == scratch || $from =~ ^\$\{[A-Z_]+\}$ || $from =~ @sha256:[0-9a-f]{64}$ ]] ||
		die "$dockerfile: FROM $from is not pinned by digest"
done < <(grep -E '^FROM ' "$dockerfile")
[[ $(grep -c '^CMD ' "$dockerfile") == 1 ]] || die "$dockerfile: want exactly one CMD line to replace"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
	SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null) ||
		die "set SOURCE_DATE_EPOCH (not in a git checkout)"
fi
[[ $SOURCE_DATE_EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH='$SOURCE_DATE_EPOCH' is not a number"

# The enclave's command line, as a JSON array.
args=(/enclave --listen "$listen" --nsm device --region "$region"
	--kms-endpoint "$kms_endpoint" --kms-dial "$kms_dial")
for id in "${key_ids[@]}"; do
	args+=(--kms-key-id "$id")
done
[[ -z $kek_max_keys ]] || args+=(--kek-max-keys "$kek_max_keys")
[[ -z $kek_max_age ]] || args+=(--kek-max-age "$kek_max_age")
cmd_json=$(printf '"%s",' "${args[@]}")
cmd_json="[${cmd_json%,}]"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed '/^CMD /d' "$dockerfile" >"$tmp/Dockerfile"
printf 'CMD %s\n' "$cmd_json" >>"$tmp/Dockerfile"
if [[ -f $dockerfile.dockerignore ]]; then
	cp "$dockerfile.dockerignore" "$tmp/Dockerfile.dockerignore"
fi

# show prints a command (on stdout with --dry-run, else on stderr, since
# stdout then carries the measurements); run prints it and, unless
# --dry-run, runs it.
show() {
	printf '+%s\n' "$(printf ' %q' "$@")" >&"$show_fd"
}
run() {
	show "$@"
	((dry_run)) || "$@"
}

show_fd=2
((!dry_run)) || show_fd=1
printf 'enclave command (measured in PCR2): CMD %s\nSOURCE_DATE_EPOCH=%s\n' "$cmd_json" "$SOURCE_DATE_EPOCH" >&"$show_fd"

if ((!dry_run)); then
	command -v docker >/dev/null || die "docker not found"
	docker buildx version >/dev/null 2>&1 || die "docker buildx not found (needed for reproducible timestamps)"
	command -v nitro-cli >/dev/null || die "nitro-cli not found (install aws-nitro-enclaves-cli)"
	mkdir -p "$(dirname "$out")"
fi

run docker buildx build \
	--file "$tmp/Dockerfile" \
	--platform "$platform" \
	--build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" \
	--provenance=false --sbom=false \
	--output "type=docker,name=$tag,rewrite-timestamp=true" \
	"$repo"

nitro=(nitro-cli build-enclave --docker-uri "$tag" --output-file "$out")
[[ -z $cert ]] || nitro+=(--signing-certificate "$cert" --private-key "$key")
show "${nitro[@]}"
if ((!dry_run)); then
	# nitro-cli prints progress on stderr and the JSON on stdout.
	"${nitro[@]}" >"$tmp/nitro-cli.out"
	sed -n '/^{/,$p' "$tmp/nitro-cli.out" >"$tmp/measurements.json"
	grep -q '"PCR0"' "$tmp/measurements.json" || die "no measurements in nitro-cli's output: $(cat "$tmp/nitro-cli.out")"
	mv "$tmp/measurements.json" "$measurements"
	printf 'wrote %s and %s\n' "$out" "$measurements" >&2
	cat "$measurements"
fi

if ((check)); then
	if [[ -n ${NITROSIGNER:-} ]]; then
		nitrosigner=("$NITROSIGNER")
	else
		nitrosigner=(go -C "$repo" run ./cmd/nitrosigner)
	fi
	run "${nitrosigner[@]}" eif describe "$out" --pcrs "$measurements"
fi
