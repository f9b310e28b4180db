# shellcheck shell=bash
# Helpers shared by the deploy scripts. Source this file; do not run it.
#
# Every command that changes anything goes through run (or run_out, run_to,
# put_file), so that --dry-run prints it instead of running it. Dry-run lines
# go to the script's standard output, one per action, starting with "+ ";
# progress and warnings go to standard error. Read-only local checks (does a
# file exist, is a value valid) run in dry-run mode too; nothing that talks
# to AWS, systemd, the package manager or nitro-cli does.

# DRY_RUN is true when the script was given --dry-run.
DRY_RUN=false
# PROG names the running script in messages.
PROG=$(basename "$0")

# File descriptor 3 is the script's standard output, also inside $(...), so
# that dry-run lines printed by run_out are not captured as the value.
exec 3>&1

# say prints a progress message to standard error.
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# warn prints a warning to standard error.
warn() { printf '%s: WARNING: %s\n' "$PROG" "$*" >&2; }

# die prints an error to standard error and exits with status 1.
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

# usage_error reports a bad invocation and exits with status 2.
usage_error() {
	printf '%s: %s (see --help)\n' "$PROG" "$*" >&2
	exit 2
}

# quote prints its arguments as one command line that a shell would split
# back into the same words: plain words as they are, others in single quotes.
quote() {
	local words=() a
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9_./:=@,+%^-]+$ ]]; then
			words+=("$a")
		else
			words+=("'${a//\'/\'\\\'\'}'")
		fi
	done
	printf '%s' "${words[*]}"
}

# run runs a command, or prints it in dry-run mode.
run() {
	if "$DRY_RUN"; then
		printf '+ %s\n' "$(quote "$@")" >&3
		return 0
	fi
	"$@"
}

# run_out PLACEHOLDER CMD... runs CMD and lets its standard output through;
# in dry-run mode it prints CMD and outputs PLACEHOLDER instead, so that
# `x=$(run_out '<key ARN>' aws ...)` reads naturally in both modes.
run_out() {
	local placeholder=$1
	shift
	if "$DRY_RUN"; then
		printf '+ %s\n' "$(quote "$@")" >&3
		printf '%s\n' "$placeholder"
		return 0
	fi
	"$@"
}

# run_to FILE CMD... runs CMD with its standard output written to FILE
# (replaced only if CMD succeeds); in dry-run mode it prints the command.
run_to() {
	local file=$1 tmp
	shift
	if "$DRY_RUN"; then
		printf '+ %s > %s\n' "$(quote "$@")" "$(quote "$file")" >&3
		return 0
	fi
	tmp=$(mktemp "$file.XXXXXX")
	if ! "$@" >"$tmp"; then
		rm -f "$tmp"
		return 1
	fi
	mv -f "$tmp" "$file"
}

# CHANGED is set by put_file: true if the file was (or, in dry-run mode,
# would be) written, false if it already had this content and mode.
# shellcheck disable=SC2034 # read by the scripts that source this file
CHANGED=false

# put_file DEST MODE CONTENT writes CONTENT (plus a final newline if it lacks
# one) to DEST with MODE (octal), atomically, and only if the content or mode
# differs. It sets CHANGED. In dry-run mode it prints the content instead,
# each line prefixed with "| ". Take CONTENT from a variable, not a pipe, so
# that a failure to produce it stops the script before anything is written.
put_file() {
	local dest=$1 mode=$2 content=$3 tmp
	[[ -z $content || $content == *$'\n' ]] || content+=$'\n'
	if [[ -f $dest ]] && [[ "$(
		cat -- "$dest"
		printf x
	)" == "${content}x" ]] && [[ "$(stat -c %a -- "$dest")" == "${mode#0}" ]]; then
		CHANGED=false
		say "unchanged: $dest"
		return 0
	fi
	# shellcheck disable=SC2034 # read by the scripts that source this file
	CHANGED=true
	if "$DRY_RUN"; then
		printf '+ write %s (mode %s):\n' "$(quote "$dest")" "$mode" >&3
		printf '%s' "$content" | sed 's/^/| /' >&3
		return 0
	fi
	tmp=$(mktemp "$dest.XXXXXX")
	printf '%s' "$content" >"$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dest"
	say "wrote $dest"
}

# render TEMPLATE KEY=VALUE... prints TEMPLATE with every @KEY@ replaced by
# VALUE. It fails if a placeholder is left over.
render() {
	local tmpl=$1 text kv key left
	shift
	[[ -r $tmpl ]] || die "template $tmpl is missing"
	text=$(
		cat -- "$tmpl"
		printf x
	)
	text=${text%x}
	for kv in "$@"; do
		key=${kv%%=*}
		# Quoted replacement: bash 5.2 would otherwise expand & in it.
		text=${text//"@$key@"/"${kv#*=}"}
	done
	left=$(grep -o '@[A-Z_][A-Z0-9_]*@' <<<"$text" | head -n 1 || true)
	[[ -z $left ]] || die "template $tmpl: no value for $left"
	printf '%s' "$text"
}

# need_cmd fails unless every named command is on PATH (skipped in dry-run
# mode, which runs none of them).
need_cmd() {
	"$DRY_RUN" && return 0
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "$c is not installed (run setup-parent.sh, or install it)"
	done
}

# need_root fails unless the script runs as root (skipped in dry-run mode).
need_root() {
	"$DRY_RUN" && return 0
	[[ $EUID -eq 0 ]] || die "must run as root (use sudo), or pass --dry-run to see what it would do"
}

# need_value FLAG VALUE fails when a flag that takes a value got none.
need_value() {
	[[ $# -ge 2 && -n $2 && $2 != --* ]] || usage_error "$1 needs a value"
}

# is_uint VALUE succeeds if VALUE is a decimal number without sign or
# leading zeros.
is_uint() { [[ $1 =~ ^(0|[1-9][0-9]{0,9})$ ]]; }

# check_cid VALUE fails unless VALUE is a usable enclave CID: 4 to 4294967294
# (0 lets nitro-cli choose, 1-2 are reserved, 3 is the parent,
# 4294967295 is "any").
check_cid() {
	if ! is_uint "$1" || (($1 < 4 || $1 > 4294967294)); then
		usage_error "enclave CID must be a number from 4 to 4294967294, got '$1'"
	fi
}

# need_uint FLAG VALUE MIN fails unless VALUE is a number >= MIN.
need_uint() {
	if ! is_uint "$2" || (($2 < $3)); then
		usage_error "$1 must be a number >= $3, got '$2'"
	fi
}

# check_arn KIND VALUE fails unless VALUE looks like an ARN of KIND (iam or
# kms). It keeps quotes and spaces out of the JSON and command lines built
# from it.
check_arn() {
	local kind=$1 v=$2
	case $kind in
	iam) [[ $v =~ ^arn:aws[a-z-]*:iam::[0-9]{12}:(root|(role|user)/[A-Za-z0-9+=,.@_/-]+)$ ]] ||
		usage_error "not an IAM role, user or root ARN: '$v'" ;;
	role) [[ $v =~ ^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$ ]] ||
		usage_error "not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME): '$v'" ;;
	kms) [[ $v =~ ^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+|alias/[A-Za-z0-9/_-]+|[0-9a-f-]{36}|mrk-[0-9a-f]{32})$ ]] ||
		usage_error "not a KMS key ARN, key id or alias: '$v'" ;;
	*) die "check_arn: unknown kind $kind" ;;
	esac
}

# check_region VALUE fails unless VALUE looks like an AWS region name.
check_region() {
	[[ $1 =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || usage_error "not an AWS region: '$1'"
}

# pcr0_of FILE prints PCR0 (lowercase hex) from a measurements JSON file in
# nitro-cli's shape ({"Measurements": {"PCR0": ...}} or {"PCR0": ...}) or
# keyed by index ({"0": ...}). It fails if the file has no valid PCR0.
pcr0_of() {
	local v
	[[ -r $1 ]] || die "measurements file $1 is missing"
	v=$(jq -r '(.Measurements // .) | (.PCR0 // ."0" // empty)' "$1" 2>/dev/null) ||
		die "$1 is not JSON"
	v=${v,,}
	[[ $v =~ ^[0-9a-f]{96}$ ]] || die "$1 has no PCR0 of 96 hex digits"
	[[ $v != "$(printf '0%.0s' {1..96})" ]] || die "$1 has PCR0 = zeros: that is a debug-mode enclave"
	printf '%s\n' "$v"
}
