#!/usr/bin/env bash
# The KV cache's element type, fp32 against fp16 (Serving:KvCacheDtype; results: docs/BENCHMARKS.md
# "KV cache dtype"):
#  1. agreement: the trained kjv-gemma3 (models/kjv-gemma3), `serving generate` greedy on five prompts,
#     200 tokens each: how many leading tokens fp16 shares with fp32;
#  2. speed: gemma3-270m q4 (random weights, real shapes) through one engine (llama-peer `ours`: one load,
#     REPS generations, the warm ones measured), prompts of about 1k and 4k tokens, 64 tokens decoded,
#     fp32 and fp16 alternating for ROUNDS rounds: median prefill ms and decode tok/s, and whether the
#     greedy tokens are fp32's.
# usage: benchmarks/kv-dtype/run.sh [ROUNDS=3]      WORK (default /tmp/kv-dtype) holds the 270M folder (~1.3 GB)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
W=${WORK:-/tmp/kv-dtype}
mkdir -p "$W"
dotnet build src/Cli -c Release -v q -nologo >/dev/null
dotnet build benchmarks/llama-peer/LlamaPeer.csproj -c Release -v q -nologo >/dev/null
S="dotnet src/Cli/bin/Release/net10.0/serving.dll"
P="dotnet benchmarks/llama-peer/bin/Release/net10.0/llama-peer.dll"

echo "1. kjv-gemma3, 200 greedy tokens: leading tokens fp16 shares with fp32"
for prompt in "And it came to pass" "In the beginning God created" "The LORD is my shepherd" "Blessed are the poor in spirit" "And Moses said unto the people"; do
  for kv in fp32 fp16; do
    $S generate --model models/kjv-gemma3 --prompt "$prompt" --max-tokens 200 --kv-cache-dtype $kv --json 2>/dev/null > "$W/kjv-$kv.json"
  done
  python3 - "$W/kjv-fp32.json" "$W/kjv-fp16.json" "$prompt" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
x, y = a["token_ids"], b["token_ids"]
same = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))
print(f"  {sys.argv[3]!r}: {same} of {len(x)}; KV peak {a['kv_bytes_peak']:,} vs {b['kv_bytes_peak']:,} bytes")
PY
done

[ -f "$W/m/onnx/model_q4.onnx" ] || $S models create --preset gemma3-270m --dtypes fp32,q4 --out "$W/m" --seed 1 >/dev/null
python3 - "$W" <<'PY'
import random, sys
random.seed(3)
words = "and the lord said unto moses in the beginning god created heaven earth light darkness water spirit face deep day night evening morning".split()
for n in (400, 1600):
    open(f"{sys.argv[1]}/prompt-{n}.txt", "w").write(" ".join(random.choice(words) for _ in range(n)))
PY
RESULTS="$W/results.jsonl"
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for n in 400 1600; do
    for kv in fp32 fp16; do
      echo "round $round, prompt of $n words, $kv" >&2
      $P ours --model "$W/m" --dtype q4 --kv-cache-dtype $kv --prompt "$(cat "$W/prompt-$n.txt")" --decode 64 --rounds 3 \
        | python3 -c "import json, sys; r = json.load(sys.stdin); r.update(kv='$kv', round=$round); print(json.dumps(r))" >> "$RESULTS"
    done
  done
done
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("\n2. gemma3-270m q4, one engine, 64 tokens decoded; medians of", len(rows) // 4, "rounds\n")
print("| prompt tokens | KV | prefill ms | decode tok/s | greedy tokens as fp32's |")
print("|---|---|---|---|---|")
for pt in sorted({r["prompt_tokens"] for r in rows}):
    ref = next(r["token_ids"] for r in rows if r["prompt_tokens"] == pt and r["kv"] == "fp32")
    for kv in ("fp32", "fp16"):
        g = [r for r in rows if r["prompt_tokens"] == pt and r["kv"] == kv]
        same = all(r["token_ids"] == ref for r in g)
        print(f"| {pt} | {kv} | {statistics.median(r['prefill_ms'] for r in g):,.0f} | {statistics.median(r['decode_tokens_per_second'] for r in g):.1f} | {'yes' if same else 'no'} |")
PY
