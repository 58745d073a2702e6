#!/usr/bin/env bash
# The fleet test: three replicas of the built server on one PostgreSQL store behind HAProxy, on
# loopback; one PASS / FAIL line per check with its figures; exit 1 if any fails (docs/deploy.md).
#
#   loadtests/fleet.sh [--configuration Release|Debug] [--no-build] [--keep-data]
#
# Starts a throwaway PostgreSQL 15 cluster (Debian's postgresql-15; as the postgres user when run
# as root, since initdb refuses root) in a temporary folder on a free port, builds src/Server
# (unless --no-build), and runs loadtests/fleet.mjs, which starts the replicas and HAProxy.
# About 40 s on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."

configuration=Release
build=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --configuration|-c) configuration="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep-data) args+=(--keep-data); shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "fleet: unknown argument $1" >&2; exit 2 ;;
  esac
done

pg_bin=/usr/lib/postgresql/15/bin
for tool in "$pg_bin/initdb" "$(command -v haproxy || true)" "$(command -v node || true)"; do
  if [ ! -x "$tool" ]; then
    echo "fleet: needs PostgreSQL 15 ($pg_bin), haproxy and node (apt-get install postgresql-15 haproxy nodejs; .ci/run does)" >&2
    exit 2
  fi
done

dll="src/Server/bin/$configuration/net10.0/Serving.Server.dll"
if [ "$build" = 1 ]; then
  dotnet build src/Server -c "$configuration" --nologo -v quiet -clp:ErrorsOnly
fi

work=$(mktemp -d /tmp/serving-fleet-pg-XXXXXX)
as_owner=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$work"
  as_owner=(runuser -u postgres --)
fi
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
stop_postgres() {
  "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop_postgres EXIT
"${as_owner[@]}" "$pg_bin/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 >"$work/initdb.log"
"${as_owner[@]}" "$pg_bin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w \
  -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
echo "fleet: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"

node loadtests/fleet.mjs --dll "$dll" --connection-string "Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres" "${args[@]}"
