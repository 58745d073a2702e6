#!/usr/bin/env bash
# The server over HTTP beside its ceiling and its peer, in one run on one model folder:
#   (a) the direct ONNX Runtime loop (`serving generate`: one sequence, present fed back as past),
#   (b) transformers.js 4.3.1 on onnxruntime-node (benchmarks/generate),
#   (c) the server: streaming /v1/completions at each concurrency, then time to first token of
#       a 1,000-token prompt with and without its first 900 tokens in the prefix cache.
# usage: benchmarks/serve/run.sh [PRESET=gemma3-270m] [LEVELS=1,4,16,64] [NEW_TOKENS=64] [RUNS=3]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
preset="${1:-gemma3-270m}"
levels="${2:-1,4,16,64}"
new_tokens="${3:-64}"
runs="${4:-3}"
model="${MODEL_DIR:-/tmp/serving-bench/$preset}"
port="${PORT:-5199}"
peer="$root/benchmarks/generate"
prompt="In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep."

[ -d "$peer/node_modules" ] || npm ci --ignore-scripts --no-audit --no-fund --prefix "$peer" >/dev/null
dotnet build -c Release "$root/src/Cli" -o "$here/bin/cli" >/dev/null
dotnet build -c Release "$root/src/Server" -o "$here/bin/server" >/dev/null
if [ ! -f "$model/onnx/model.onnx" ]; then
  dotnet "$here/bin/cli/serving.dll" models create --preset "$preset" --out "$model" --seed 1 >/dev/null
fi

data="$(mktemp -d)"
Serving__DataDirectory="$data" Serving__Models__0__Id=bench Serving__Models__0__Path="$model" Serving__KvCacheBytes=4294967296 \
  Serving__PrefixCaching=true Logging__LogLevel__Default=Warning \
  dotnet "$here/bin/server/Serving.Server.dll" --urls "http://127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$data"' EXIT
until curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 1; done

echo "== one stream, $runs alternating runs of the three, $new_tokens new tokens (the idle server takes no CPU)"
for i in $(seq "$runs"); do
  echo "direct loop:     $(dotnet "$here/bin/cli/serving.dll" generate --model "$model" --prompt "$prompt" --max-tokens "$new_tokens" --json \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d["timings"]))')"
  echo "transformers.js: $(node "$peer/transformers-js-generate.mjs" "$model" "$prompt" "$new_tokens")"
  echo "server:          $(node "$here/load.mjs" "http://127.0.0.1:$port" bench 1 "$new_tokens")"
done

echo "== server: concurrency sweep (KV budget 4 GiB, batch up to 64), then cached vs fresh 1,000-token prompts"
node "$here/load.mjs" "http://127.0.0.1:$port" bench "$levels" "$new_tokens" --ttft
