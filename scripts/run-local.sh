#!/usr/bin/env bash
# Runs the whole stack on this machine, the embedded default: the enclave with
# the simulated NSM and the parent proxy, joined by a unix socket, gRPC for
# clients on 127.0.0.1:50051. State lives in .run/. Ctrl-C stops everything.
#
# Usage: scripts/run-local.sh [--dry-run]
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
run=$root/.run
bin=$root/bin
addr=127.0.0.1:50051
grpcurl=${GRPCURL:-grpcurl}

dry=false
if [[ ${1:-} == --dry-run ]]; then dry=true; fi

enclave_cmd=("$bin/enclave" --nsm=sim --sim-state "$run/nsmsim" --listen "unix://$run/enclave.sock")
metrics=127.0.0.1:9464
parent_cmd=("$bin/parent" --listen "tcp://$addr" --enclave "unix://$run/enclave.sock" --metrics-listen "tcp://$metrics")

if $dry; then
	echo "would run: ${enclave_cmd[*]}"
	echo "would run: ${parent_cmd[*]}"
	exit 0
fi

for b in enclave parent nitrosigner; do
	[[ -x $bin/$b ]] || { echo "run-local: $bin/$b missing; run 'make build'" >&2; exit 1; }
done
mkdir -p "$run/nsmsim"

pids=()
stop() {
	trap - INT TERM EXIT
	if ((${#pids[@]})); then
		kill -TERM "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	echo "run-local: stopped"
}
trap stop INT TERM EXIT

"${enclave_cmd[@]}" 2> >(sed -u 's/^/[enclave] /' >&2) &
pids+=($!)
"${parent_cmd[@]}" 2> >(sed -u 's/^/[parent]  /' >&2) &
pids+=($!)

# Wait until the parent answers (the enclave needs a moment for its RSA key).
ready=false
for _ in $(seq 1 100); do
	if "$bin/nitrosigner" --addr "$addr" --timeout 1s keys list >/dev/null 2>&1; then
		ready=true
		break
	fi
	sleep 0.1
done
$ready || { echo "run-local: the stack did not come up; see the log lines above" >&2; exit 1; }

# A demo key of each algorithm, so that the examples below run as printed.
key_id() { sed -n 's/.*"key_id": *"\([^"]*\)".*/\1/p'; }
k1=$("$bin/nitrosigner" --addr "$addr" --json keys create --alg secp256k1 --label demo=make-run | key_id)
ed=$("$bin/nitrosigner" --addr "$addr" --json keys create --alg ed25519 --label demo=make-run | key_id)

cat <<MSG

nitrosigner is running: gRPC on $addr (enclave with simulated NSM, state in .run/).
Two demo keys were created: $k1 (secp256k1) and $ed (ed25519).

Try it with the CLI:
  bin/nitrosigner keys list
  bin/nitrosigner keys get $k1 --json
  bin/nitrosigner sign --key $k1 --digest 9c22ff5f21f0b81b113e63f7db6da94fedef11b2119b4088b89664fb9a3cb658
  bin/nitrosigner sign --key $ed --message 68656c6c6f
  bin/nitrosigner keys create --alg ed25519
  bin/nitrosigner attest --verify --root .run/nsmsim/root.pem

Or with grpcurl (server reflection is on):
  $grpcurl -plaintext -d '{"key_id":"$k1"}' $addr nitrosigner.v1.SignerService/GetKey
  $grpcurl -plaintext -d '{"algorithm":"ALGORITHM_ED25519"}' $addr nitrosigner.v1.SignerService/CreateKey
  $grpcurl -plaintext $addr list nitrosigner.v1.SignerService
  $grpcurl -plaintext $addr grpc.health.v1.Health/Check

Metrics (Prometheus text format):
  curl -s http://$metrics/metrics | grep '^nitrosigner_'

Press Ctrl-C to stop.
MSG

# Exit when either process dies; the trap stops the other.
wait -n "${pids[@]}"
