#!/usr/bin/env bash
# The whole check, as CI runs it: gofmt, go vet, staticcheck, govulncheck
# (when its database can be reached), then every test — SQLite always,
# PostgreSQL on a throwaway cluster the tests start from the PostgreSQL
# binaries, S3 on a versitygw the tests start (built into .tools/ here).
# Under CI=true a missing PostgreSQL or versitygw fails instead of skipping.
#
#   scripts/test.sh         everything
#   scripts/test.sh lint    only the static checks
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2
GOVULNCHECK_VERSION=v1.9.0
TOOLS="$PWD/.tools"
export PATH="$TOOLS:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "staticcheck $STATICCHECK_VERSION"
if ! "$TOOLS/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
  GOBIN="$TOOLS" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
staticcheck ./...

step "govulncheck $GOVULNCHECK_VERSION"
if [ ! -x "$TOOLS/govulncheck" ]; then
  GOBIN="$TOOLS" go install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" || true
fi
if [ -x "$TOOLS/govulncheck" ]; then
  set +e
  out=$(timeout 120 govulncheck ./... 2>&1); rc=$?
  set -e
  case $rc in
    0) echo "no known vulnerabilities" ;;
    3) echo "$out"; echo "govulncheck found vulnerabilities"; exit 1 ;;
    *) echo "*** govulncheck SKIPPED: its vulnerability database could not be reached (exit $rc) ***"
       echo "$out" | tail -n 2 ;;
  esac
else
  echo "*** govulncheck SKIPPED: it could not be installed ***"
fi

[ "${1:-}" = "lint" ] && exit 0

VERSITYGW_VERSION=v1.8.0
step "versitygw $VERSITYGW_VERSION (the real S3-compatible server the blob store tests run against)"
if [ ! -x "$TOOLS/versitygw" ]; then
  echo "building it into .tools/ (about 3 minutes, once)"
  GOBIN="$TOOLS" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
export CUSTODIA_VERSITYGW="$TOOLS/versitygw"

step "go test (SQLite and PostgreSQL)"
if [ "${CI:-}" = "true" ]; then
  export CUSTODIA_REQUIRE_POSTGRES=1
fi
if [ ! -x "${CUSTODIA_PGBIN:-/usr/lib/postgresql/15/bin}/initdb" ]; then
  if [ "${CUSTODIA_REQUIRE_POSTGRES:-}" = "1" ]; then
    echo "PostgreSQL binaries are required (CUSTODIA_REQUIRE_POSTGRES=1) but ${CUSTODIA_PGBIN:-/usr/lib/postgresql/15/bin}/initdb is missing"; exit 1
  fi
  echo "*** No PostgreSQL binaries: the PostgreSQL variants of the tests will be SKIPPED ***"
fi
# internal/api, the largest package, takes about 14 minutes under -race on
# a 2-core machine: the timeout leaves room for a slower one.
go test -count=1 -race -timeout 40m ./...
