#!/usr/bin/env bash
# Runs the whole stack on this machine, the embedded default: the KMS
# simulator (HTTPS on 127.0.0.1:4566), the enclave with the simulated NSM, and
# the parent proxy with a local blob directory, gRPC for clients on
# 127.0.0.1:50051. The enclave reaches KMS through the parent's forwarder, as
# on AWS. State (simulated NSM root, KMS keys, sealed key blobs) lives in .run/
# and survives restarts: keys created in one run sign in the next.
# Ctrl-C stops everything.
#
# Usage: scripts/run-local.sh [--dry-run]
# The environment may move it (tests do): NITROSIGNER_BIN (binaries, default
# bin/), NITROSIGNER_RUN_DIR (state, default .run/), NITROSIGNER_ADDR,
# NITROSIGNER_KMS_ADDR and NITROSIGNER_METRICS_ADDR (host:port).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
run=${NITROSIGNER_RUN_DIR:-$root/.run}
bin=${NITROSIGNER_BIN:-$root/bin}
addr=${NITROSIGNER_ADDR:-127.0.0.1:50051}
grpcurl=${GRPCURL:-grpcurl}

dry=false
if [[ ${1:-} == --dry-run ]]; then dry=true; fi

kms=${NITROSIGNER_KMS_ADDR:-127.0.0.1:4566}
region=us-east-1
# Development credentials for the KMS simulator only; the parent reads them
# from the environment (the default AWS chain) and pushes them to the enclave.
access_key=AKIDNITROSIGNERLOCAL
secret=nitrosigner-local-development-secret
principal=arn:aws:iam::111122223333:role/nitrosigner-parent
metrics=${NITROSIGNER_METRICS_ADDR:-127.0.0.1:9464}

admin=arn:aws:iam::111122223333:role/nitrosigner-key-admin

# The KMS key admits only this enclave image, run by this parent role: the
# policy is generated from the image's measurements exactly as on AWS.
measure_cmd=("$bin/enclave" --sim-measurements)
policy_cmd=("$bin/nitrosigner" kms-policy --role-arn "$principal" --admin-arn "$admin" --pcrs "$run/measurements.json" --out "$run/kms-policy.json")
kmssim_cmd=("$bin/kmssim" --listen "$kms" --state "$run/kmssim" --nsm-state "$run/nsmsim"
	--access-key-id "$access_key" --principal "$principal" --region "$region"
	--create-key nitrosigner --policy "$run/kms-policy.json")
enclave_cmd=("$bin/enclave" --nsm=sim --sim-state "$run/nsmsim" --sim-role-arn "$principal" --listen "unix://$run/enclave.sock"
	--region "$region" --kms-endpoint "https://localhost:${kms##*:}" --kms-dial "unix://$run/kms.sock"
	--kms-key-id "KEY_ARN" --kms-sim-ca "$run/kmssim/ca.pem")
parent_cmd=("$bin/parent" --listen "tcp://$addr" --enclave "unix://$run/enclave.sock" --metrics-listen "tcp://$metrics"
	--store "dir://$run/blobs" --kms-forward-listen "unix://$run/kms.sock" --kms-forward-target "$kms" --credentials aws)

if $dry; then
	echo "would run: ${measure_cmd[*]} > $run/measurements.json"
	echo "would run: ${policy_cmd[*]}"
	echo "would run: ${kmssim_cmd[*]}"
	echo "would run: ${enclave_cmd[*]}   (KEY_ARN from $run/kmssim/key-arn)"
	echo "would run: ${parent_cmd[*]}"
	exit 0
fi

for b in kmssim enclave parent nitrosigner; do
	[[ -x $bin/$b ]] || { echo "run-local: $bin/$b missing; run 'make build'" >&2; exit 1; }
done
mkdir -p "$run/nsmsim" "$run/kmssim" "$run/blobs"
# One stack per run directory: a second one would rewrite the first's
# policy files before kmssim's own lock refused it.
if command -v flock >/dev/null; then
	exec 9>"$run/.run-local.lock"
	flock -n 9 || { echo "run-local: $run is in use by another make run; stop it, or give this one its own NITROSIGNER_RUN_DIR" >&2; exit 1; }
fi

# Another stack (another clone's make run, say) may hold the ports: refuse
# rather than start half a stack and talk to the other one.
for hp in "$addr" "$kms" "$metrics"; do
	host=${hp%:*} # an IPv6 host comes bracketed ([::1]:50051); /dev/tcp wants it bare
	host=${host#[}
	host=${host%]}
	if (exec 3<>"/dev/tcp/$host/${hp##*:}") 2>/dev/null; then
		echo "run-local: $hp is already in use (another make run?); stop it, or move this one with NITROSIGNER_ADDR, NITROSIGNER_KMS_ADDR and NITROSIGNER_METRICS_ADDR" >&2
		exit 1
	fi
done

pids=()
# stop ends every process; with a status, it also ends the script (Ctrl-C
# during start-up must not fall back into the waits below).
# shellcheck disable=SC2317 # only called from the traps
stop() {
	trap - INT TERM EXIT
	if ((${#pids[@]})); then
		kill -TERM "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	echo "run-local: stopped"
	if (($#)); then exit "$1"; fi
}
trap 'stop 0' INT
trap 'stop 143' TERM
trap stop EXIT

# alive fails, naming the process, if one of ours has exited.
alive() {
	local i names=(kmssim "enclave supervisor" parent)
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			# Ctrl-C reaches the whole process group: the process may have
			# died of the same signal whose trap is still pending. Bash runs
			# a pending trap when a foreground command ends, so let one end
			# first; a clean stop then exits there.
			sleep 0.2
			echo "run-local: ${names[$i]} exited; see the log lines above" >&2
			return 1
		fi
	done
}

"${measure_cmd[@]}" >"$run/measurements.json"
"${policy_cmd[@]}"
rm -f "$run/kmssim/key-arn"
KMSSIM_SECRET_ACCESS_KEY=$secret "${kmssim_cmd[@]}" >/dev/null 2> >(sed -u 's/^/[kmssim]  /' >&2) &
pids+=($!)
for _ in $(seq 1 100); do
	[[ -s $run/kmssim/key-arn ]] && break
	alive || exit 1
	sleep 0.1
done
[[ -s $run/kmssim/key-arn ]] || { echo "run-local: kmssim did not start; see the log lines above" >&2; exit 1; }
key_arn=$(<"$run/kmssim/key-arn")
enclave_cmd=("${enclave_cmd[@]/KEY_ARN/$key_arn}")

# The enclave is started again when it exits, as its supervisor does on a
# Nitro host: the parent notices, reconnects and reloads sealed keys on their
# next use. An enclave that keeps exiting within seconds of its start stops
# the whole stack instead.
supervise_enclave() {
	local rc started quick=0
	# Every job of this subshell: also an enclave started just before the
	# signal, whose pid is not recorded yet.
	trap 'kill -TERM $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; exit 0' TERM INT
	while :; do
		started=$SECONDS
		"${enclave_cmd[@]}" 2> >(sed -u 's/^/[enclave] /' >&2) &
		rc=0
		wait $! || rc=$?
		if ((SECONDS - started < 5)); then
			quick=$((quick + 1))
		else
			quick=0
		fi
		if ((quick >= 3)); then
			echo "run-local: the enclave exited (status $rc) three times within seconds of its start; stopping" >&2
			exit 1
		fi
		echo "run-local: the enclave exited (status $rc); starting it again" >&2
		sleep 1
	done
}
rm -f "$run/enclave.sock" # a stale one from a killed run; the lock above shows the run dir is ours
supervise_enclave &
pids+=($!)
# Start the parent once the enclave listens, so that its first dial works
# (rather than logging warnings about an enclave that is still starting).
for _ in $(seq 1 100); do
	[[ -S $run/enclave.sock ]] && break
	alive || exit 1
	sleep 0.1
done
# The parent takes AWS credentials from the environment here (on EC2: the
# instance role via IMDSv2); nothing from the user's ~/.aws is read.
AWS_ACCESS_KEY_ID=$access_key AWS_SECRET_ACCESS_KEY=$secret AWS_REGION=$region \
	AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
	"${parent_cmd[@]}" 2> >(sed -u 's/^/[parent]  /' >&2) &
pids+=($!)

# Wait until the parent answers (the enclave needs a moment for its RSA key).
ready=false
for _ in $(seq 1 100); do
	alive || exit 1
	if "$bin/nitrosigner" --addr "$addr" --timeout 1s attest >/dev/null 2>&1; then
		ready=true
		break
	fi
	sleep 0.1
done
alive || exit 1
$ready || { echo "run-local: the stack did not come up; see the log lines above" >&2; exit 1; }

# A demo key of each algorithm, so that the examples below run as printed.
# They are kept in .run/demo-keys and reused while they exist: keys are
# sealed under KMS and stored in .run/blobs, so they survive restarts.
key_id() { sed -n 's/.*"key_id": *"\([^"]*\)".*/\1/p'; }
k1='' ed=''
if [[ -s $run/demo-keys ]]; then
	read -r k1 ed <"$run/demo-keys" || true
	for k in "$k1" "$ed"; do
		"$bin/nitrosigner" --addr "$addr" --timeout 5s keys get "$k" >/dev/null 2>&1 || { k1='' ed=''; break; }
	done
fi
if [[ -z $k1 ]]; then
	k1=$("$bin/nitrosigner" --addr "$addr" --json keys create --alg secp256k1 --label demo=make-run | key_id)
	ed=$("$bin/nitrosigner" --addr "$addr" --json keys create --alg ed25519 --label demo=make-run | key_id)
	echo "$k1 $ed" >"$run/demo-keys"
fi

# The examples name paths as the user typed them from the repository root.
rel() { local p=${1#"$root"/}; echo "$p"; }
cli="$(rel "$bin")/nitrosigner"
[[ $addr == 127.0.0.1:50051 ]] || cli+=" --addr $addr"
state=$(rel "$run")

cat <<MSG

nitrosigner is running: gRPC on $addr. Enclave with simulated NSM, KMS simulator on
https://$kms (key $key_arn), sealed keys in $state/blobs; all state in $state/.
Its key policy admits only this enclave image ($state/kms-policy.json, made by
'nitrosigner kms-policy' from $state/measurements.json).
Demo keys (sealed under KMS, kept across restarts): $k1 (secp256k1) and $ed (ed25519).

Try it with the CLI:
  $cli keys list
  $cli keys get $k1 --json
  $cli sign --key $k1 --digest 9c22ff5f21f0b81b113e63f7db6da94fedef11b2119b4088b89664fb9a3cb658
  $cli sign --key $ed --message 68656c6c6f
  $cli keys create --alg ed25519
  $cli keys disable $k1      # then sign again: FailedPrecondition; keys enable $k1
  $cli keys rotate $k1       # new data key; same key and addresses
  $cli attest --verify --root $state/nsmsim/root.pem --pcrs $state/measurements.json

Or with grpcurl (server reflection is on):
  $grpcurl -plaintext -d '{"key_id":"$k1"}' $addr nitrosigner.v1.SignerService/GetKey
  $grpcurl -plaintext -d '{"algorithm":"ALGORITHM_ED25519"}' $addr nitrosigner.v1.SignerService/CreateKey
  $grpcurl -plaintext $addr list nitrosigner.v1.SignerService
  $grpcurl -plaintext $addr grpc.health.v1.Health/Check

Metrics (Prometheus text format):
  curl -s http://$metrics/metrics | grep '^nitrosigner_'

The enclave is restarted if it exits: try 'pkill -f "^$bin/enclave --nsm"', then sign
again; the parent reconnects and reloads the key from its sealed blob.

Press Ctrl-C to stop.
MSG

# Stop when a process dies (the enclave's supervisor only gives up on an
# enclave that keeps failing); the exit trap stops the others.
wait -n "${pids[@]}" || true
alive || true
echo "run-local: a process of the stack exited; stopping the rest" >&2
exit 1
