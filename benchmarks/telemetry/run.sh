#!/usr/bin/env bash
# Telemetry overhead: decode tokens/s of the server with telemetry on (OpenTelemetry metrics and
# traces, /metrics scraped every second, harsher than Prometheus' default 15 s) and off
# (Serving:Telemetry:Enabled=false), in alternating runs, each on a freshly started server.
# Load: benchmarks/serve/load.mjs, CONCURRENCY streaming /v1/completions, greedy, ignore_eos,
# twice per run: the first round warms up (JIT of the telemetry paths), the second is measured.
# Before that, the calls telemetry adds, timed alone (OverheadBench): per decode step, per token, per request.
# usage: benchmarks/telemetry/run.sh [MODEL_DIR=models/kjv-gemma3] [CONCURRENCY=8] [NEW_TOKENS=256] [RUNS=5]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
model="${1:-$root/models/kjv-gemma3}"
concurrency="${2:-8}"
new_tokens="${3:-256}"
runs="${4:-5}"
port="${PORT:-5198}"
url="http://127.0.0.1:$port"

dotnet build -c Release "$root/src/Server" -o "$here/bin/server" >/dev/null
dotnet build -c Release "$here/OverheadBench" -o "$here/bin/overhead" >/dev/null

echo "== the telemetry calls alone, OpenTelemetry SDK listening ($(uptime))"
dotnet "$here/bin/overhead/telemetry-overhead-bench.dll"

one_run() {  # $1 = true|false: prints "aggregate_tok/s median_stream_decode_tok/s"
  local data; data="$(mktemp -d)"
  Serving__DataDirectory="$data" Serving__Models__0__Id=bench Serving__Models__0__Path="$model" \
    Serving__Telemetry__Enabled="$1" Logging__LogLevel__Default=Warning \
    dotnet "$here/bin/server/Serving.Server.dll" --urls "$url" &
  local server=$!
  until curl -fs "$url/health/ready" >/dev/null; do sleep 0.5; done
  local scraper=""
  if [ "$1" = true ]; then
    (while true; do curl -fs "$url/metrics" >/dev/null; sleep 1; done) &
    scraper=$!
  fi
  node "$root/benchmarks/serve/load.mjs" "$url" bench "$concurrency,$concurrency" "$new_tokens" \
    | python3 -c 'import json,sys; d=json.loads(sys.stdin.readlines()[-1]); print(d["aggregate_tokens_per_s"], d["median_stream_decode_tokens_per_s"])'
  [ -n "$scraper" ] && kill "$scraper"
  kill "$server"; wait "$server" 2>/dev/null || true
  rm -rf "$data"
}

echo "== end to end: model=$model concurrency=$concurrency new_tokens=$new_tokens runs=$runs; $(uptime)"
on=(); off=()
for i in $(seq "$runs"); do
  a=$(one_run true); b=$(one_run false)
  echo "run $i: telemetry on: $a   off: $b"
  on+=("$a"); off+=("$b")
done
python3 - "${on[@]}" -- "${off[@]}" <<'PY'
import statistics, sys
args = sys.argv[1:]; cut = args.index('--')
on = [tuple(map(float, a.split())) for a in args[:cut]]; off = [tuple(map(float, a.split())) for a in args[cut + 1:]]
for k, name in enumerate(['aggregate tok/s', 'median per-stream decode tok/s']):
    m_on, m_off = statistics.median(r[k] for r in on), statistics.median(r[k] for r in off)
    print(f'{name}: on {m_on:.1f}, off {m_off:.1f}, on/off {m_on / m_off:.3f}')
PY
echo "$(uptime)"
