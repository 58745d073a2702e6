#!/usr/bin/env bash
# The paged KV cache against the engine before it (the concat path, BEFORE_REF), same model, same run:
#   mixed    one long prompt among short ones: peak KV bytes (pool reservations and batch buffers before;
#            the pool after), RSS growth, completions — at KV budgets of 256 MiB and 1 GiB
#   decode   one stream's decode speed after prompts of 512, 4k and 8k tokens, alternating before/after
#   capacity how many streams of 1,000-token prompts (max_tokens 1,000) run at once in 256 MiB
# usage: benchmarks/kv-bound/run.sh [PRESET=gemma3-270m] [SECTIONS=mixed,decode,capacity]   (BEFORE_REF=<commit> to compare another)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
preset="${1:-gemma3-270m}"
sections="${2:-mixed,decode,capacity}"
before_ref="${BEFORE_REF:-e384793}"
model="${MODEL_DIR:-/tmp/serving-bench/$preset}"
port="${PORT:-5198}"
before_tree="/tmp/serving-before-$before_ref"

dotnet build -c Release "$root/src/Server" -o "$here/bin/after" >/dev/null
dotnet build -c Release "$root/src/Cli" -o "$here/bin/cli" >/dev/null
[ -d "$before_tree" ] || git -C "$root" worktree add --detach "$before_tree" "$before_ref" >/dev/null
dotnet build -c Release "$before_tree/src/Server" -o "$here/bin/before" >/dev/null
[ -f "$model/onnx/model.onnx" ] || dotnet "$here/bin/cli/serving.dll" models create --preset "$preset" --out "$model" --seed 1 >/dev/null

# serve SIDE BUDGET: starts the server of SIDE (before|after) with a KV budget, prefix caching off.
serve() {
  data="$(mktemp -d)"
  Serving__DataDirectory="$data" Serving__Models__0__Id=bench Serving__Models__0__Path="$model" Serving__KvCacheBytes="$2" \
    Serving__PrefixCacheBytes=0 Serving__PrefixCaching=false Serving__MaxQueueLength=1024 Logging__LogLevel__Default=Warning \
    dotnet "$here/bin/$1/Serving.Server.dll" --urls "http://127.0.0.1:$port" >/dev/null 2>&1 &
  server=$!
  until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 1; done
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; rm -rf "$data"; }
work() { echo "$1 $(node "$here/workload.mjs" "http://127.0.0.1:$port" bench "$server" "${@:2}")"; }

if [[ ",$sections," == *",mixed,"* ]]; then
echo "== mixed workloads (prefix caching off)"
for budget in 268435456 1073741824; do
  for side in before after; do
    serve "$side" "$budget"; work "$side" mixed 4000 31; stop
  done
  serve after "$budget"; work after mixed 8000 63; stop
done
fi

if [[ ",$sections," == *",decode,"* ]]; then
echo "== decode after a long prompt, one stream, 1 GiB (after a warm-up request)"
for round in 1 2; do
  for side in before after; do
    serve "$side" 1073741824; work "$side" decode 512,4096,8192; stop
  done
done
fi

if [[ ",$sections," == *",capacity,"* ]]; then
echo "== capacity: 24 streams of 1,000 + 1,000 tokens in 256 MiB, sampled for 60 s"
for side in before after; do
  serve "$side" 268435456; work "$side" capacity 24 60; stop
done
fi
