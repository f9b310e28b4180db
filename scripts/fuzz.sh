#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each (default 20s).
# Usage: scripts/fuzz.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-20s}
status=0
while IFS= read -r line; do
	file=${line%%:*}
	name=$(sed -E 's/^.*func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$line")
	pkg=./$(dirname "$file")
	echo "== $pkg $name ($t)"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$t" -fuzzminimizetime=2s "$pkg" || status=1
done < <(git grep -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*.go')
exit $status
