#!/usr/bin/env bash
# make loadtest: starts a server on a fresh data dir (SQLite, as in
# production: fsync on), makes a tenant, an owner with a password and a
# token, and drives it over HTTPS with cmd/custodia-load — a short version
# by default (SEED=2000 contacts, CLIENTS=1,16, DURATION=2s a cell). For
# the full run of BENCHMARKS.md: SEED=100000 CLIENTS=1,16,64 DURATION=10s.
# ENGINE=postgres runs it on a throwaway PostgreSQL 15 cluster started
# here (fsync and synchronous commit on, as in production; PGBIN names the
# binaries, /usr/lib/postgresql/15/bin by default);
# CUSTODIA_DATABASE_URL=postgres://… on a database of yours.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pid=
pgdata=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$pgdata" ]; then as_pg "$PGBIN/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "${ENGINE:-sqlite}" = postgres ]; then
  PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
  pgport=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  mkdir "$tmp/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$tmp" "$tmp/pg"; chmod 755 "$tmp"; fi
  pgdata="$tmp/pg/data"
  as_pg "$PGBIN/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$pgdata" -l "$tmp/pg/server.log" -w -t 30 \
    -o "-k $tmp/pg -h 127.0.0.1 -p $pgport -c max_connections=200 -c shared_buffers=1GB" start >/dev/null
  "$PGBIN/createdb" -h 127.0.0.1 -p "$pgport" -U postgres custodia
  export CUSTODIA_DATABASE_URL="postgres://postgres@127.0.0.1:$pgport/custodia?sslmode=disable"
fi
go build -o "$tmp/custodia" ./cmd/custodia
go build -o "$tmp/custodia-load" ./cmd/custodia-load
port=${PORT:-18443}
export CUSTODIA_DATA_DIR="$tmp/data" CUSTODIA_ADDR="127.0.0.1:$port" CUSTODIA_BACKUP_AT=${CUSTODIA_BACKUP_AT:-03:00}
"$tmp/custodia" serve >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 150); do
  if curl -skf "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -skf "https://127.0.0.1:$port/readyz" >/dev/null || { cat "$tmp/serve.log"; exit 1; }
password='quiet harbour lantern 4711'
"$tmp/custodia" tenant create --slug load --name "Load test" --admin-email owner@load.example >/dev/null
printf '%s\n' "$password" | "$tmp/custodia" user create --tenant load --email load@load.example --role owner --password-stdin >/dev/null
token=$("$tmp/custodia" token create --tenant load --email load@load.example --name load --expires 1d 2>/dev/null)
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(go version | cut -d' ' -f3), database: ${CUSTODIA_DATABASE_URL:+PostgreSQL}${CUSTODIA_DATABASE_URL:-SQLite}" >&2
CUSTODIA_LOAD_PASSWORD="$password" "$tmp/custodia-load" -url "https://127.0.0.1:$port" -token "$token" \
  -tenant load -email load@load.example -seed "${SEED:-2000}" -clients "${CLIENTS:-1,16}" -duration "${DURATION:-2s}" ${LOAD_ARGS:-}
