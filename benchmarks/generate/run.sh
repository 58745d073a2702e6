#!/usr/bin/env bash
# Decode speed of `serving generate` beside transformers.js (onnxruntime-node) on the same
# Gemma 3 folder (random weights, real shapes), alternating runs; prints each run and the medians.
# usage: benchmarks/generate/run.sh [PRESET=gemma3-270m] [RUNS=5] [NEW_TOKENS=64]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
preset="${1:-gemma3-270m}"
runs="${2:-5}"
new_tokens="${3:-64}"
model="${MODEL_DIR:-/tmp/serving-bench/$preset}"
prompt="In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep."

[ -d "$here/node_modules" ] || npm ci --ignore-scripts --no-audit --no-fund --prefix "$here" >/dev/null
dotnet build -c Release "$root/src/Cli" -o "$here/bin" >/dev/null
if [ ! -f "$model/onnx/model.onnx" ]; then
  dotnet "$here/bin/serving.dll" models create --preset "$preset" --out "$model" --seed 1 >/dev/null
fi

ours=(); peer=()
for i in $(seq "$runs"); do
  s=$(dotnet "$here/bin/serving.dll" generate --model "$model" --prompt "$prompt" --max-tokens "$new_tokens" --json)
  t=$(node "$here/transformers-js-generate.mjs" "$model" "$prompt" "$new_tokens")
  echo "run $i serving:         $(echo "$s" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["prompt_token_ids"]), "prompt tokens,", len(d["token_ids"]), "new;", d["timings"])')"
  echo "run $i transformers.js: $t"
  ours+=("$(echo "$s" | python3 -c 'import json,sys; print(json.load(sys.stdin)["timings"]["decode_tokens_per_second"])')")
  peer+=("$(echo "$t" | python3 -c 'import json,sys; print(json.load(sys.stdin)["decode_tokens_per_second"])')")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mo=$(median "${ours[@]}"); mp=$(median "${peer[@]}")
echo "median decode tokens/s: serving $mo, transformers.js $mp, ratio $(python3 -c "print(round($mo/$mp, 2))")"
