#!/usr/bin/env bash
# Starts the nitrosigner enclave on this parent instance with a fixed vsock
# CID, after terminating any enclave that holds the CID or the name, and
# waits until nitro-cli reports it RUNNING. With --terminate it only stops it.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	cat <<EOF
Usage: $PROG --eif FILE [options]
       $PROG --terminate [--cid N] [--name NAME] [--dry-run]

Start the nitrosigner enclave from an EIF with a fixed vsock CID (the parent
dials vsock://CID:5000), replacing any enclave that holds the same CID or
name, and wait until nitro-cli describe-enclaves shows it RUNNING.

Options:
  --eif FILE          enclave image (required unless --terminate)
  --cid N             vsock CID, 4..4294967294 (default 16)
  --cpus N            vCPUs for the enclave (default 2)
  --memory-mib N      memory for the enclave in MiB, at least 64 (default 2048)
  --name NAME         nitro-cli enclave name (default nitrosigner)
  --timeout SECONDS   how long to wait for RUNNING (default 120)
  --terminate         only terminate the enclave with this CID or name
  --debug             start in DEBUG MODE: never with production keys
                      (see below)
  --dry-run           print the commands instead of running them
  -h, --help          show this help

The CPUs and memory must fit in /etc/nitro_enclaves/allocator.yaml
(setup-parent.sh writes it).

Debug mode lets the parent read the enclave's console and makes PCR0-2 zero.
A debug enclave has no usable attestation: the KMS key policy refuses it and
nitrosigner attest --verify rejects it (unless --allow-debug). Use it only to
diagnose a boot failure, on an image and KMS key that hold no real keys.
EOF
}

eif=
cid=16
cpus=2
memory=2048
name=nitrosigner
timeout=120
terminate_only=false
debug=false
while (($#)); do
	case $1 in
	--eif) need_value "$@"; eif=$2; shift ;;
	--cid) need_value "$@"; cid=$2; shift ;;
	--cpus) need_value "$@"; cpus=$2; shift ;;
	--memory-mib) need_value "$@"; memory=$2; shift ;;
	--name) need_value "$@"; name=$2; shift ;;
	--timeout) need_value "$@"; timeout=$2; shift ;;
	--terminate) terminate_only=true ;;
	--debug) debug=true ;;
	--dry-run) DRY_RUN=true ;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done

check_cid "$cid"
[[ $name =~ ^[A-Za-z0-9._-]{1,64}$ ]] || usage_error "--name must be 1-64 letters, digits, '.', '_' or '-'"
if ! $terminate_only; then
	[[ -n $eif ]] || usage_error "--eif is required"
	[[ -f $eif ]] || usage_error "--eif $eif: no such file"
	need_uint --cpus "$cpus" 1
	need_uint --memory-mib "$memory" 64
	need_uint --timeout "$timeout" 1
fi
need_cmd nitro-cli jq

# enclave_ids prints the ids of enclaves that hold our CID or name.
enclave_ids() {
	nitro-cli describe-enclaves |
		jq -r --argjson cid "$cid" --arg name "$name" \
			'.[] | select(.EnclaveCID == $cid or .EnclaveName == $name) | .EnclaveID'
}

terminate() {
	if "$DRY_RUN"; then
		run nitro-cli describe-enclaves
		say "dry-run: each enclave with CID $cid or name $name (ENCLAVE_ID) would be terminated"
		run nitro-cli terminate-enclave --enclave-id ENCLAVE_ID
		return 0
	fi
	local ids id
	ids=$(enclave_ids) || die "nitro-cli describe-enclaves failed"
	if [[ -z $ids ]]; then
		say "no enclave with CID $cid or name $name is running"
		return 0
	fi
	for id in $ids; do
		say "terminating enclave $id"
		run nitro-cli terminate-enclave --enclave-id "$id" >/dev/null
	done
}

terminate
$terminate_only && exit 0

args=(nitro-cli run-enclave --eif-path "$eif" --cpu-count "$cpus" --memory "$memory"
	--enclave-cid "$cid" --enclave-name "$name")
if $debug; then
	warn "*******************************************************************"
	warn "DEBUG MODE: the parent can read this enclave's console, and its"
	warn "PCR0-2 are zero, so KMS refuses it. Never use it with real keys."
	warn "*******************************************************************"
	args+=(--debug-mode)
fi
run "${args[@]}" >&2

if "$DRY_RUN"; then
	say "dry-run: would wait up to ${timeout}s until describe-enclaves shows CID $cid RUNNING"
	exit 0
fi

deadline=$((SECONDS + timeout))
while :; do
	# "STATE FLAGS" of the enclave with our CID, or "" if there is none.
	line=$(nitro-cli describe-enclaves |
		jq -r --argjson cid "$cid" '.[] | select(.EnclaveCID == $cid) | "\(.State) \(.Flags)"' | head -n 1)
	case $line in
	RUNNING\ *)
		if ! $debug && [[ $line == *DEBUG* ]]; then
			die "enclave with CID $cid runs in debug mode although --debug was not given; terminate it"
		fi
		break
		;;
	esac
	((SECONDS < deadline)) || die "enclave with CID $cid is not RUNNING after ${timeout}s (state: '${line:-absent}'); see /var/log/nitro_enclaves/"
	sleep 1
done
say "enclave $name is RUNNING with CID $cid"
