#!/usr/bin/env bash
# The cost of constrained decoding (issue 20): decode tokens/s with and without a JSON schema on
# the same model, alternating, at batch 1 (`serving generate --json-schema`, the engine's path)
# and batch 16 (the server: one chat request with n = 16, response_format json_schema). Two
# schemas: string.json (long strings: the plain-text mask, cached) and records.json (an array of
# objects of enums, integers, booleans and anyOf: structural states all the time). Temperature 1,
# ignore_eos off; tokens/s counts the tokens each run generated.
# usage: benchmarks/structured/run.sh [PRESET=gemma3-270m] [DTYPE=q4] [RUNS=3] [NEW_TOKENS=96]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
preset="${1:-gemma3-270m}"
dtype="${2:-q4}"
runs="${3:-3}"
new_tokens="${4:-96}"
model="${MODEL_DIR:-/tmp/serving-bench/$preset-all}"
port="${PORT:-5198}"

dotnet build -c Release "$root/src/Cli" -o "$here/bin/cli" >/dev/null
dotnet build -c Release "$root/src/Server" -o "$here/bin/server" >/dev/null
serving() { dotnet "$here/bin/cli/serving.dll" "$@"; }
[ -f "$model/onnx/model.onnx" ] || serving models create --preset "$preset" --out "$model" --seed 1 --dtypes "fp32,$dtype" >/dev/null
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), load average: $(cut -d' ' -f1-3 /proc/loadavg); model $preset $dtype"

echo "== batch 1: serving generate, $new_tokens tokens, $runs alternating rounds"
for i in $(seq "$runs"); do
  for schema in none string records; do
    args=(); [ "$schema" = none ] || args=(--json-schema "$here/$schema.json")
    serving generate --model "$model" --dtype "$dtype" --prompt "Write it as JSON:" --max-tokens "$new_tokens" --temperature 1 --seed "$i" --json "${args[@]}" \
      | python3 -c "
import json,sys; d=json.load(sys.stdin); t=d['timings']; n=len(d['token_ids']); step=1000/t['decode_tokens_per_second'] if t['decode_tokens_per_second'] else 0
mask=t.get('json_mask_ms',0)/max(n,1)
print(f'round $i $schema: {n} tokens, decode {t[\"decode_tokens_per_second\"]:.2f} tok/s ({step:.1f} ms/step), JSON mask {mask:.3f} ms/token ({100*mask/step if step else 0:.1f}% of a step), finish {d[\"finish_reason\"]}')"
  done
done

data="$(mktemp -d)"
Serving__DataDirectory="$data" Serving__Models__0__Id=bench Serving__Models__0__Path="$model" Serving__Models__0__Dtype="$dtype" \
  Serving__KvCacheBytes=1073741824 Logging__LogLevel__Default=Warning \
  dotnet "$here/bin/server/Serving.Server.dll" --urls "http://127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 1; done

echo "== batch 16: one chat request, n = 16, max_tokens $new_tokens, $runs alternating rounds (mask time from /metrics)"
for i in $(seq "$runs"); do
  for schema in none string records; do
    python3 - "$port" "$schema" "$here" "$i" "$new_tokens" <<'PY'
import json, sys, time, urllib.request
port, schema, here, seed, new_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
body = {"model": "bench", "messages": [{"role": "user", "content": "Write it as JSON:"}], "n": 16, "max_tokens": new_tokens,
        "temperature": 1.0, "seed": seed}
if schema != "none":
    body["response_format"] = {"type": "json_schema", "json_schema": {"name": schema, "schema": json.load(open(f"{here}/{schema}.json"))}}
def mask_seconds():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith("serving_structured_output_mask_time_seconds_total"))
request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
mask_before = mask_seconds()
start = time.perf_counter()
reply = json.load(urllib.request.urlopen(request, timeout=600))
seconds = time.perf_counter() - start
tokens = reply["usage"]["completion_tokens"]
finishes = {}
for c in reply["choices"]:
    finishes[c["finish_reason"]] = finishes.get(c["finish_reason"], 0) + 1
mask = mask_seconds() - mask_before
steps = max(tokens / 16, 1)
print(f"round {seed} {schema}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.1f} tok/s (prefill included), "
      f"JSON mask {1000 * mask:.0f} ms in all = {1000 * mask / steps:.2f} ms per batch step ({100 * mask / seconds:.1f}% of the time), finishes {finishes}")
PY
  done
done
