#!/usr/bin/env bash
# Runs Custodia's benchmarks and prints them as a table (ops/s from ns/op).
# PostgreSQL variants run on a throwaway cluster (fsync off: figures show
# CPU and protocol cost, not disk durability). BENCHTIME overrides -benchtime.
set -euo pipefail
cd "$(dirname "$0")/.."
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
go test -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-2s}" \
  ./internal/keyring/ ./internal/identity/password/ ./internal/audit/ ./internal/api/ ./internal/subject/ ./internal/blobstore/ ./internal/web/ ./internal/backup/ | tee "$raw" >&2
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 '^cpu:' "$raw" | cut -d' ' -f2-), $(go version | cut -d' ' -f3)"
echo
printf '| %-52s | %12s | %12s | %s\n' benchmark ns/op ops/s extra
printf '|%s|%s|%s|%s\n' "$(printf -- '-%.0s' {1..54})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "------"
awk '/^Benchmark/ {
  name=$1; sub(/-[0-9]+$/, "", name); ns=$3; extra="";
  for (i=5; i<=NF; i+=2) if ($(i+1) != "B/op" && $(i+1) != "allocs/op") extra=extra $i " " $(i+1) " ";
  printf "| %-52s | %12.0f | %12.0f | %s\n", name, ns, 1e9/ns, extra }' "$raw"
