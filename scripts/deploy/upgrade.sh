#!/usr/bin/env bash
# The upgrade runbook for a new enclave image (new PCRs), as separately
# invocable steps: allow both images in the KMS key policy, roll each parent
# instance to the new image, verify it, then remove the old image.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

usage() {
	cat <<EOF
Usage: $PROG plan --old OLD.json --new NEW.json
       $PROG allow-both --key-id KEY --role-arn ARN --admin-arn ARN --old OLD.json --new NEW.json [--region R]
       $PROG roll --eif NEW.eif --measurements NEW.json [--env-file FILE]
       $PROG verify --measurements NEW.json [--addr ADDR] [--canary KEY_ID] [--timeout SECONDS]
       $PROG finalize --key-id KEY --role-arn ARN --admin-arn ARN --new NEW.json [--region R]
Every step takes --dry-run (print the commands instead of running them).

An upgrade changes the enclave image and so its measurements (PCR0-2). The
KMS key policy allows only listed images, so the new image must be allowed
before it runs and the old one removed once nothing runs it any more:

  1. allow-both  (admin machine) install a key policy that allows the old and
                 the new image (kms-setup.sh put-policy with both files)
  2. roll        (each parent, one at a time) copy the new EIF and its
                 measurements to /opt/nitrosigner/eif/, check the EIF's PCR0
                 with nitro-cli describe-eif, point ENCLAVE_EIF in
                 /etc/nitrosigner/enclave.env at it and restart
                 nitrosigner-enclave.service; the parent reconnects by itself
  3. verify      (each parent, after roll) wait until the enclave answers
                 nitrosigner attest --verify --pcrs NEW.json, then sign with a
                 canary key (--canary) to prove KMS serves the new image
  4. finalize    (admin machine, after every parent passed verify) install a
                 key policy that allows only the new image

Rolling back before finalize: roll --eif OLD.eif --measurements OLD.json.
A release that changes the parent-enclave link protocol (its preamble, NSL2
since request ids reach the enclave) needs the parent binary replaced and
nitrosigner-parent.service restarted in the same roll, and rolled back with
it (docs/deployment.md, section 11).
Sealed keys need no migration: KEKs are bound to the KMS key, not to PCRs.

Options:
  --old FILE, --new FILE   measurements JSON of the old and the new image
  --measurements FILE      measurements JSON of the image being rolled out
  --eif FILE               the new enclave image
  --env-file FILE          (default /etc/nitrosigner/enclave.env)
  --addr ADDR              the parent's client address
                           (default unix:///run/nitrosigner/signer.sock)
  --canary KEY_ID          a secp256k1 key kept for this check; verify signs
                           a fixed digest with it
  --timeout SECONDS        how long verify waits for the enclave (default 120)
  --key-id, --role-arn, --admin-arn, --region, --out
                           as for kms-setup.sh put-policy
  --dry-run                print the commands instead of running them
  -h, --help               show this help
EOF
}

(($#)) || usage_error "missing step (plan, allow-both, roll, verify or finalize)"
step=$1
shift
case $step in
-h | --help) usage; exit 0 ;;
plan | allow-both | roll | verify | finalize) ;;
*) usage_error "unknown step '$step'" ;;
esac

old=
new=
measurements=
eif=
env_file=/etc/nitrosigner/enclave.env
addr=unix:///run/nitrosigner/signer.sock
canary=
timeout=120
kms_args=()
while (($#)); do
	case $1 in
	--old) need_value "$@"; old=$2; shift ;;
	--new) need_value "$@"; new=$2; shift ;;
	--measurements) need_value "$@"; measurements=$2; shift ;;
	--eif) need_value "$@"; eif=$2; shift ;;
	--env-file) need_value "$@"; env_file=$2; shift ;;
	--addr) need_value "$@"; addr=$2; shift ;;
	--canary) need_value "$@"; canary=$2; shift ;;
	--timeout) need_value "$@"; timeout=$2; shift ;;
	--key-id | --role-arn | --admin-arn | --region | --out) need_value "$@"; kms_args+=("$1" "$2"); shift ;;
	--dry-run) DRY_RUN=true ;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done

dry=()
if "$DRY_RUN"; then
	dry=(--dry-run)
fi

# need FLAG VALUE fails when a flag this step requires is missing.
need() { [[ -n $2 ]] || usage_error "$step needs $1"; }

case $step in
plan)
	need --old "$old"
	need --new "$new"
	old_pcr0=$(pcr0_of "$old")
	new_pcr0=$(pcr0_of "$new")
	[[ $old_pcr0 != "$new_pcr0" ]] || die "$old and $new have the same PCR0: nothing to upgrade"
	self=$0
	cat <<EOF
Upgrade from PCR0 ${old_pcr0:0:16}... ($old)
          to PCR0 ${new_pcr0:0:16}... ($new)

1. On the administrator's machine (as the key administrator):
   $self allow-both --key-id KEY --role-arn ROLE_ARN --admin-arn ADMIN_ARN --old $old --new $new
2. On each parent instance in turn (copy the new EIF and $new there):
   sudo $self roll --eif NEW.eif --measurements $new
3. On the same instance, before moving to the next:
   $self verify --measurements $new --canary CANARY_KEY_ID
   If it fails: sudo $self roll --eif OLD.eif --measurements $old
4. When every instance passed verify:
   $self finalize --key-id KEY --role-arn ROLE_ARN --admin-arn ADMIN_ARN --new $new
EOF
	;;

allow-both)
	need --old "$old"
	need --new "$new"
	old_pcr0=$(pcr0_of "$old")
	new_pcr0=$(pcr0_of "$new")
	[[ $old_pcr0 != "$new_pcr0" ]] || die "$old and $new have the same PCR0"
	exec "$here/kms-setup.sh" put-policy "${kms_args[@]}" --measurements "$old" --measurements "$new" "${dry[@]}"
	;;

finalize)
	need --new "$new"
	pcr0_of "$new" >/dev/null
	exec "$here/kms-setup.sh" put-policy "${kms_args[@]}" --measurements "$new" "${dry[@]}"
	;;

roll)
	need --eif "$eif"
	need --measurements "$measurements"
	[[ -f $eif ]] || usage_error "--eif $eif: no such file"
	pcr0=$(pcr0_of "$measurements")
	need_root
	need_cmd nitro-cli jq systemctl
	dir=/opt/nitrosigner/eif
	dest=$dir/${pcr0:0:16}.eif
	dest_json=$dir/${pcr0:0:16}.json

	# The EIF must be the image the measurements (and so the key policy)
	# describe; describe-eif recomputes its PCRs.
	if "$DRY_RUN"; then
		run nitro-cli describe-eif --eif-path "$eif"
		say "dry-run: its PCR0 would have to be $pcr0"
	else
		actual=$(nitro-cli describe-eif --eif-path "$eif" | jq -r '.Measurements.PCR0') ||
			die "nitro-cli describe-eif $eif failed"
		[[ ${actual,,} == "$pcr0" ]] || die "$eif has PCR0 $actual, but $measurements says $pcr0"
	fi

	run install -d -m 0755 "$dir"
	run install -m 0644 "$eif" "$dest"
	run install -m 0644 "$measurements" "$dest_json"

	if [[ -f $env_file ]]; then
		content=
		found=false
		while IFS= read -r line || [[ -n $line ]]; do
			if [[ $line == ENCLAVE_EIF=* ]]; then
				line=ENCLAVE_EIF=$dest
				found=true
			fi
			content+=$line$'\n'
		done <"$env_file"
		$found || content+=ENCLAVE_EIF=$dest$'\n'
		put_file "$env_file" 0644 "$content"
	elif "$DRY_RUN"; then
		say "dry-run: $env_file does not exist here; it would get ENCLAVE_EIF=$dest"
	else
		die "$env_file is missing: run setup-parent.sh first"
	fi
	run systemctl restart nitrosigner-enclave.service
	"$DRY_RUN" && exit 0
	say "rolled to $dest; now run: $0 verify --measurements $dest_json"
	;;

verify)
	need --measurements "$measurements"
	pcr0_of "$measurements" >/dev/null
	need_uint --timeout "$timeout" 1
	if [[ -n $canary ]]; then
		[[ $canary =~ ^key_[0-9a-f]{32}$ ]] || usage_error "--canary must be a key id (key_ and 32 hex digits)"
	fi
	need_cmd nitrosigner
	cli=(nitrosigner --addr "$addr")
	attest=("${cli[@]}" attest --verify --pcrs "$measurements")
	if "$DRY_RUN"; then
		say "dry-run: would retry for up to ${timeout}s:"
		run "${attest[@]}"
	else
		deadline=$((SECONDS + timeout))
		until answer=$("${attest[@]}" 2>&1); do
			((SECONDS < deadline)) || die "attestation did not verify within ${timeout}s: $answer"
			sleep 2
		done
		printf '%s\n' "$answer"
		say "the enclave runs the image in $measurements"
	fi
	if [[ -n $canary ]]; then
		# SHA-256 of "nitrosigner canary"; any fixed digest would do.
		run "${cli[@]}" sign --key "$canary" \
			--digest 2492a633d2a1c82b6ab405fd33e0af1d377a27e336df43ad9f2f093ed2f2fe28
		"$DRY_RUN" || say "canary $canary signed: KMS serves the new image"
	else
		warn "no --canary: KMS access of the new image is not checked"
	fi
	;;
esac
