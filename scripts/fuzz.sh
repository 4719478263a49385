#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (default 1m), one after the
# other. A crasher is written under the package's testdata/fuzz/ and fails
# the run: commit it, and it is a seed that every `go test` runs from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${FUZZTIME:-1m}
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' internal cmd | sort | while read -r file; do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | cut -d' ' -f2); do
    echo "== $pkg $target ($time)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
  done
done
