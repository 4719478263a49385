#!/usr/bin/env bash
# The whole check, as CI runs it: gofmt, go mod tidy -diff, go vet, staticcheck, govulncheck
# (when its database can be reached), then every test — SQLite always,
# PostgreSQL on a throwaway cluster the tests start from the PostgreSQL
# binaries, S3 on a versitygw the tests start. Under CI=true a missing
# PostgreSQL or versitygw fails instead of skipping.
#
# Tools (staticcheck, govulncheck, versitygw) are built once per version
# into the user's cache directory, outside the clone, so a fresh clone on
# a machine where they were built does not build them again.
#
# Every package runs under -race, except browser tests (packages named
# …/browsertest), which drive a real Chromium and run in their own
# `go test` without -race. Each step is timed.
#
#   scripts/test.sh         everything
#   scripts/test.sh lint    only the static checks
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2
GOVULNCHECK_VERSION=v1.9.0
VERSITYGW_VERSION=v1.8.0
TOOLS="${CUSTODIA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/custodia/tools}"

timings=()
step_name="" step_start=0
step() {
  end_step
  step_name="$*" step_start=$SECONDS
  printf '\n== %s\n' "$step_name"
}
end_step() {
  if [ -n "$step_name" ]; then timings+=("$(printf '%4ss  %s' $((SECONDS - step_start)) "$step_name")"); fi
  step_name=""
}
summary() {
  end_step
  printf '\n== time taken\n'
  printf '%s\n' "${timings[@]}"
  printf '%4ss  in all\n' "$SECONDS"
}
trap summary EXIT

# tool NAME VERSION PACKAGE: the path of the tool's binary, built into the
# cache the first time this version is asked for.
tool() {
  local dir="$TOOLS/$1@$2"
  if [ ! -x "$dir/$1" ]; then
    echo "building $1 $2 into $dir (once per version)" >&2
    mkdir -p "$dir"
    GOBIN="$dir" go install "$3@$2" >&2
  fi
  echo "$dir/$1"
}

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go mod tidy -diff"
if ! go mod tidy -diff; then
  echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1
fi

step "go vet"
go vet ./...

step "staticcheck $STATICCHECK_VERSION"
"$(tool staticcheck "$STATICCHECK_VERSION" honnef.co/go/tools/cmd/staticcheck)" ./...

step "govulncheck $GOVULNCHECK_VERSION"
# Offline, govulncheck can wait minutes for its database: ask first, briefly.
if ! timeout 5 bash -c 'exec 3<>/dev/tcp/vuln.go.dev/443' 2>/dev/null; then
  echo "*** govulncheck SKIPPED: its vulnerability database (vuln.go.dev) cannot be reached ***"
elif ! govulncheck=$(tool govulncheck "$GOVULNCHECK_VERSION" golang.org/x/vuln/cmd/govulncheck); then
  echo "*** govulncheck SKIPPED: it could not be installed ***"
else
  set +e
  out=$(timeout 120 "$govulncheck" ./... 2>&1); rc=$?
  set -e
  case $rc in
    0) echo "no known vulnerabilities" ;;
    3) echo "$out"; echo "govulncheck found vulnerabilities"; exit 1 ;;
    *) echo "*** govulncheck SKIPPED: it did not finish (exit $rc) ***"
       echo "$out" | tail -n 2 ;;
  esac
fi

[ "${1:-}" = "lint" ] && exit 0

step "versitygw $VERSITYGW_VERSION (the real S3-compatible server the blob store tests run against)"
CUSTODIA_VERSITYGW=$(tool versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw)
export CUSTODIA_VERSITYGW
echo "$CUSTODIA_VERSITYGW"

if [ "${CI:-}" = "true" ]; then
  export CUSTODIA_REQUIRE_POSTGRES=1
fi
if [ ! -x "${CUSTODIA_PGBIN:-/usr/lib/postgresql/15/bin}/initdb" ]; then
  if [ "${CUSTODIA_REQUIRE_POSTGRES:-}" = "1" ]; then
    echo "PostgreSQL binaries are required (CUSTODIA_REQUIRE_POSTGRES=1) but ${CUSTODIA_PGBIN:-/usr/lib/postgresql/15/bin}/initdb is missing"; exit 1
  fi
  echo "*** No PostgreSQL binaries: the PostgreSQL variants of the tests will be SKIPPED ***"
fi

browser=$(go list ./... | grep '/browsertest$' || true)
others=$(go list ./... | grep -v '/browsertest$')

step "go test -race (SQLite and PostgreSQL)"
go test -count=1 -race -timeout 15m $others

if [ -n "$browser" ]; then
  step "go test, browser tests (headless Chromium, without -race)"
  go test -count=1 -timeout 15m $browser
fi
