#!/usr/bin/env bash
# Telemetry overhead, two ways:
# 1. The calls telemetry adds, timed alone with the OpenTelemetry SDK listening (OverheadBench):
#    per decode step, per token, per request, per eviction; with the bytes they allocate.
# 2. End to end: three warm servers on one model, one with telemetry on (metrics and traces,
#    /metrics scraped every SCRAPE_SECONDS, default 15 as Prometheus does) and two with it off
#    (Serving:Telemetry:Enabled=false). Rounds of load go to each in turn, RUNS times; each round is
#    benchmarks/serve/load.mjs with CONCURRENCY streaming /v1/completions of NEW_TOKENS tokens
#    (greedy, ignore_eos). Reported: aggregate tok/s and the server's CPU ms per token (user +
#    system from /proc, far less disturbed than wall time by other processes on a shared machine).
#    The gap between the two "off" servers is the noise floor.
# usage: benchmarks/telemetry/run.sh [MODEL_DIR=models/kjv-gemma3] [CONCURRENCY=8] [NEW_TOKENS=256] [RUNS=7]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
model="${1:-$root/models/kjv-gemma3}"
concurrency="${2:-8}"
new_tokens="${3:-256}"
runs="${4:-7}"
scrape_seconds="${SCRAPE_SECONDS:-15}"
ports=(5197 5196 5195)
names=(on off-a off-b)
enabled=(true false false)

dotnet build -c Release "$root/src/Server" -o "$here/bin/server" >/dev/null
dotnet build -c Release "$here/OverheadBench" -o "$here/bin/overhead" >/dev/null

echo "== the telemetry calls alone, OpenTelemetry SDK listening ($(uptime))"
dotnet "$here/bin/overhead/telemetry-overhead-bench.dll"

data="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT
for k in 0 1 2; do
  Serving__DataDirectory="$data/$k" Serving__Models__0__Id=bench Serving__Models__0__Path="$model" \
    Serving__Telemetry__Enabled="${enabled[$k]}" Logging__LogLevel__Default=Warning \
    dotnet "$here/bin/server/Serving.Server.dll" --urls "http://127.0.0.1:${ports[$k]}" >/dev/null &
  pids+=($!)
done
servers=("${pids[@]}")
for port in "${ports[@]}"; do
  until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.5; done
done
(while true; do curl -fs "http://127.0.0.1:${ports[0]}/metrics" >/dev/null; sleep "$scrape_seconds"; done) &
pids+=($!)

round() {  # $1 = server index: prints "aggregate_tok/s cpu_ms_per_token"
  local pid=${servers[$1]} before after result
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  result=$(node "$root/benchmarks/serve/load.mjs" "http://127.0.0.1:${ports[$1]}" bench "$concurrency" "$new_tokens" \
    | python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])["aggregate_tokens_per_s"])')
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  # load.mjs's 4-token warm-up request is counted with the round's tokens.
  echo "$result $(python3 -c "print(round(($after - $before) / $(getconf CLK_TCK) * 1000 / ($concurrency * $new_tokens + 4), 4))")"
}

echo "== end to end: model=$model concurrency=$concurrency new_tokens=$new_tokens runs=$runs scrape every ${scrape_seconds}s; $(uptime)"
for k in 0 1 2; do round "$k" >/dev/null; done  # warm-up: JIT, ONNX Runtime's first shapes
results=()
for i in $(seq "$runs"); do
  line="run $i:"
  for k in 0 1 2; do
    r=$(round "$k"); results+=("${names[$k]}=$r"); line+="  ${names[$k]} $r"
  done
  echo "$line"
done
python3 - "${results[@]}" <<'PY'
import statistics, sys
by = {}
for item in sys.argv[1:]:
    name, values = item.split('=')
    by.setdefault(name, []).append(tuple(map(float, values.split())))
for k, metric in enumerate(['aggregate tok/s', 'server CPU ms per token']):
    med = {name: statistics.median(r[k] for r in rows) for name, rows in by.items()}
    off = statistics.median([r[k] for r in by['off-a'] + by['off-b']])
    print(f"{metric}: on {med['on']:.3f}, off-a {med['off-a']:.3f}, off-b {med['off-b']:.3f}; "
          f"on/off {med['on'] / off:.3f}, off-a/off-b {med['off-a'] / med['off-b']:.3f}")
PY
echo "$(uptime)"
