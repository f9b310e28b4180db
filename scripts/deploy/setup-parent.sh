#!/usr/bin/env bash
# Prepares an enclave-enabled EC2 instance (Amazon Linux 2023) to run
# nitrosigner: installs nitro-cli, reserves CPUs and memory for the enclave,
# installs the systemd units and their configuration. Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$here/lib.sh"

usage() {
	cat <<EOF
Usage: sudo $PROG --region REGION [options]

Set up this parent instance for nitrosigner (Amazon Linux 2023, launched with
enclave support enabled). Run it again after changing an option.

  1. dnf install aws-nitro-enclaves-cli and jq
  2. write /etc/nitro_enclaves/allocator.yaml (cpu_count, memory_mib) and
     enable nitro-enclaves-allocator.service
  3. add --user to the ne group (nitro-cli without root)
  4. create the system user nitrosigner; install the binaries (--bin),
     run-enclave.sh, the systemd units and /etc/nitrosigner/*.env
  5. set up KMS forwarding (--kms-forwarder) and enable the units

Options:
  --region REGION        AWS region of the KMS key (required), e.g. us-east-1
  --cpus N               vCPUs reserved for the enclave (default 2)
  --memory-mib N         memory reserved for the enclave in MiB (default 2048)
  --cid N                the enclave's vsock CID (default 16)
  --eif FILE             where the enclave image will be
                         (default /opt/nitrosigner/eif/enclave.eif)
  --store URL            blob store of the parent (default
                         dir:///var/lib/nitrosigner/blobs; a dir:// store must
                         be below /var/lib/nitrosigner), e.g.
                         's3://BUCKET/PREFIX?region=REGION&sse=aws:kms&sse-kms-key-id=ARN'
  --listen ADDR          client address of the parent (default
                         unix:///run/nitrosigner/signer.sock)
  --kms-forwarder MODE   parent (default): the parent forwards vsock:8000 to
                         KMS; vsock-proxy: AWS's vsock-proxy does, as
                         nitrosigner-kms-forward.service
  --user NAME            login user to add to the ne group (default ec2-user)
  --bin DIR              install DIR/parent as /usr/local/bin/nitrosigner-parent
                         and DIR/nitrosigner as /usr/local/bin/nitrosigner
  --build-tools          also install aws-nitro-enclaves-cli-devel and docker,
                         to build EIFs on this host (a trusted builder is
                         better: see docs/deployment.md)
  --dry-run              print what would be done, change nothing
  -h, --help             show this help

Changing --cpus or --memory-mib restarts the allocator, which fails while an
enclave runs: stop nitrosigner-enclave.service first.
EOF
}

region=
cpus=2
memory=2048
cid=16
eif=/opt/nitrosigner/eif/enclave.eif
store=dir:///var/lib/nitrosigner/blobs
listen=unix:///run/nitrosigner/signer.sock
forwarder=parent
user=ec2-user
bindir=
build_tools=false
while (($#)); do
	case $1 in
	--region) need_value "$@"; region=$2; shift ;;
	--cpus) need_value "$@"; cpus=$2; shift ;;
	--memory-mib) need_value "$@"; memory=$2; shift ;;
	--cid) need_value "$@"; cid=$2; shift ;;
	--eif) need_value "$@"; eif=$2; shift ;;
	--store) need_value "$@"; store=$2; shift ;;
	--listen) need_value "$@"; listen=$2; shift ;;
	--kms-forwarder) need_value "$@"; forwarder=$2; shift ;;
	--user) need_value "$@"; user=$2; shift ;;
	--bin) need_value "$@"; bindir=$2; shift ;;
	--build-tools) build_tools=true ;;
	--dry-run) DRY_RUN=true ;;
	-h | --help) usage; exit 0 ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done

[[ -n $region ]] || usage_error "--region is required"
check_region "$region"
need_uint --cpus "$cpus" 1
need_uint --memory-mib "$memory" 64
check_cid "$cid"
[[ $eif == /* && $eif != *[[:space:]]* ]] || usage_error "--eif must be an absolute path without spaces"
# Values end up in PARENT_FLAGS, which systemd splits at spaces.
[[ $store =~ ^(dir:///|s3://)[^[:space:]\"\\]+$ ]] || usage_error "--store must be dir:///PATH or s3://BUCKET/PREFIX?... without spaces or quotes"
# nitrosigner-parent.service may write only below /var/lib/nitrosigner.
[[ $store != dir://* || $store == dir:///var/lib/nitrosigner/* ]] ||
	usage_error "--store dir:// must be below /var/lib/nitrosigner (the parent's only writable directory)"
[[ $listen =~ ^(unix:///|tcp://)[^[:space:]\"\\]+$ ]] || usage_error "--listen must be unix:///PATH or tcp://HOST:PORT"
case $forwarder in
parent | vsock-proxy) ;;
*) usage_error "--kms-forwarder must be parent or vsock-proxy, got '$forwarder'" ;;
esac
[[ $user =~ ^[a-z_][a-z0-9_-]*$ ]] || usage_error "--user: not a user name: '$user'"
if [[ -n $bindir ]]; then
	[[ -x $bindir/parent && -x $bindir/nitrosigner ]] ||
		usage_error "--bin $bindir must hold the executables parent and nitrosigner (make build)"
fi
if ((cpus % 2)); then
	warn "--cpus $cpus is odd: on instances with hyperthreading enclaves get whole cores (2 vCPUs each)"
fi
need_root

kms_host=kms.$region.amazonaws.com
libexec=/usr/local/libexec/nitrosigner
units=/etc/systemd/system

say "installing packages"
pkgs=(aws-nitro-enclaves-cli jq)
if $build_tools; then
	pkgs+=(aws-nitro-enclaves-cli-devel docker)
fi
run dnf install -y "${pkgs[@]}"

say "reserving $cpus vCPUs and $memory MiB for enclaves"
run install -d -m 0755 /etc/nitro_enclaves
content=$(render "$here/config/allocator.yaml.tmpl" CPUS="$cpus" MEMORY_MIB="$memory")
put_file /etc/nitro_enclaves/allocator.yaml 0644 "$content"
run systemctl enable nitro-enclaves-allocator.service
if $CHANGED; then
	run systemctl restart nitro-enclaves-allocator.service
else
	run systemctl start nitro-enclaves-allocator.service
fi

run usermod -aG ne "$user"
if $build_tools; then
	run usermod -aG docker "$user"
	run systemctl enable --now docker.service
fi

if ! id -u nitrosigner >/dev/null 2>&1; then
	run useradd --system --user-group --no-create-home --home-dir /var/lib/nitrosigner \
		--shell /sbin/nologin nitrosigner
fi

say "installing files"
if [[ -n $bindir ]]; then
	run install -m 0755 "$bindir/parent" /usr/local/bin/nitrosigner-parent
	run install -m 0755 "$bindir/nitrosigner" /usr/local/bin/nitrosigner
fi
run install -d -m 0755 "$libexec" /etc/nitrosigner "$(dirname "$eif")"
run install -m 0644 "$here/lib.sh" "$libexec/lib.sh"
run install -m 0755 "$here/run-enclave.sh" "$libexec/run-enclave.sh"
for u in nitrosigner-enclave.service nitrosigner-parent.service nitrosigner-kms-forward.service; do
	run install -m 0644 "$here/systemd/$u" "$units/$u"
done

content=$(render "$here/config/enclave.env.tmpl" EIF="$eif" CID="$cid" CPUS="$cpus" MEMORY_MIB="$memory")
put_file /etc/nitrosigner/enclave.env 0644 "$content"

forward_flags=
if [[ $forwarder == parent ]]; then
	forward_flags=" --kms-forward-listen vsock://any:8000 --kms-forward-target $kms_host:443"
fi
content=$(render "$here/config/parent.env.tmpl" LISTEN="$listen" CID="$cid" STORE="$store" \
	KMS_FORWARDER="$forwarder" KMS_FORWARD_FLAGS="$forward_flags")
put_file /etc/nitrosigner/parent.env 0644 "$content"

say "KMS forwarding: $forwarder (vsock port 8000 -> $kms_host:443)"
# AWS's own proxy service would hold vsock port 8000 too.
if "$DRY_RUN" || systemctl cat nitro-enclaves-vsock-proxy.service >/dev/null 2>&1; then
	run systemctl disable --now nitro-enclaves-vsock-proxy.service
fi
run systemctl daemon-reload
if [[ $forwarder == vsock-proxy ]]; then
	content=$(render "$here/config/kms-forward.env.tmpl" REGION="$region")
	put_file /etc/nitrosigner/kms-forward.env 0644 "$content"
	content=$(render "$here/config/vsock-proxy.yaml.tmpl" REGION="$region")
	put_file /etc/nitrosigner/vsock-proxy.yaml 0644 "$content"
	run systemctl enable --now nitrosigner-kms-forward.service
else
	run systemctl disable --now nitrosigner-kms-forward.service
fi
run systemctl enable nitrosigner-enclave.service nitrosigner-parent.service

if "$DRY_RUN"; then
	say "dry-run: nothing was changed"
	exit 0
fi
cat >&2 <<EOF

$PROG: done. Next:
  - log out and in again, so that $user is in the ne group;
  - put the EIF built for this deployment at $eif (docs/deployment.md,
    "Build the enclave image"), and its measurements in the KMS key policy;
  - sudo systemctl start nitrosigner-enclave.service nitrosigner-parent.service
  - nitrosigner --addr $listen attest --verify --pcrs MEASUREMENTS.json
EOF
