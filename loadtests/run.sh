#!/usr/bin/env bash
# Load scenarios against a Serving server; one PASS / FAIL / SKIP line each; exit 1 if any fails.
#
#   loadtests/run.sh [--short|--full] [--url URL] [--only a,b] [--skip a,b] [--soak-seconds N]
#                    [--configuration Release|Debug] [--no-build] [--keep-data]
#
# Without --url it builds src/Server (dotnet build -c Release, unless --no-build) and starts the
# built Serving.Server.dll itself, with temporary data directories, as many times as the scenarios
# need (the queue, kill -9 and SIGTERM scenarios start their own). With --url it runs against that
# server; the scenarios that must kill or signal the server are skipped, and the queue scenario
# assumes the default queue (--queue-length 256 --max-batch-size 64 to say otherwise).
# --short (the default, the CI set) takes 1.5–2.5 minutes on 2 cores; --full about 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

configuration=Release
build=1
url=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --configuration|-c) configuration="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --url) url="$2"; args+=(--url "$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "loadtests need Node.js 20 or later (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 2
fi

if [ -z "$url" ]; then
  dll="src/Server/bin/$configuration/net10.0/Serving.Server.dll"
  if [ "$build" = 1 ]; then
    dotnet build src/Server -c "$configuration" --nologo -v quiet -clp:ErrorsOnly
  fi
  if [ ! -f "$dll" ]; then
    echo "loadtests: $dll is missing (build it, or drop --no-build)" >&2
    exit 2
  fi
  args+=(--dll "$dll")
fi

exec node loadtests/run.mjs "${args[@]}"
