#!/usr/bin/env bash
# 2:4 sparse weights, two measurements (results: docs/BENCHMARKS.md):
#  1. op: SparseMatMul24 against ONNX Runtime's dense MatMul on the same pruned weights, Gemma 3
#     270m and 1b linear shapes, M = 1, 4, 16, 128, 512, both with THREADS intra-op threads;
#  2. e2e: `serving generate` decode tokens/s and peak RSS, dense vs sparsified (magnitude)
#     gemma3-1b preset folders (random weights, real shapes), alternating, 3 runs each.
# usage: benchmarks/sparse/run.sh [ops|e2e|all] [THREADS=2] [op-bench options: PRESET ... --rows=1,128]   (e2e needs ~7 GB of disk in
# MODEL_DIR, default /tmp/sparse-bench, and several minutes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
what="${1:-all}"
threads="${2:-2}"
models="${MODEL_DIR:-/tmp/sparse-bench}"

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), kernels: $(grep -o 'avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
if [ "$what" != e2e ]; then
  dotnet build -c Release "$here/OpBench" -o "$here/bin/op" >/dev/null
  dotnet "$here/bin/op/sparse-op-bench.dll" "$threads" "${@:3}"
fi
[ "$what" != ops ] || exit 0

dotnet build -c Release "$root/src/Cli" -o "$here/bin/cli" >/dev/null
serving() { dotnet "$here/bin/cli/serving.dll" "$@"; }
dense="$models/gemma3-1b" sparse="$models/gemma3-1b-sparse24"
[ -f "$dense/onnx/model.onnx" ] || serving models create --preset gemma3-1b --out "$dense" --seed 1 >/dev/null
[ -f "$sparse/onnx/model.onnx" ] || serving sparsify --model "$dense" --out "$sparse" --method magnitude
prompt="In the beginning God created the heaven and the earth. And the earth was without form, and void."
for run in 1 2 3; do
  for folder in "$dense" "$sparse"; do
    /usr/bin/time -f "%M" -o "$here/bin/rss" dotnet "$here/bin/cli/serving.dll" generate --model "$folder" \
      --prompt "$prompt" --max-tokens 32 --json > "$here/bin/out.json"
    python3 - "$folder" "$run" "$(cat "$here/bin/rss")" "$here/bin/out.json" <<'PY'
import json, sys
folder, run, rss_kb, path = sys.argv[1:]
t = json.load(open(path))["timings"]
print(f"run {run} {folder.rsplit('/', 1)[-1]}: load {t['load_ms']:.0f} ms, prefill {t['prefill_ms']:.0f} ms, "
      f"decode {t['decode_tokens_per_second']:.2f} tok/s, peak RSS {int(rss_kb) / 1024 / 1024:.2f} GiB")
PY
  done
done
