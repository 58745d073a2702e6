#!/usr/bin/env bash
# Ours against llama.cpp on the same weights (issue 16, deliverable 3).
#   benchmarks/llama-peer/run.sh [PRESET=gemma3-270m] [ROUNDS=3]
# Env: THREADS (2: llama.cpp's threads; ours runs ONNX Runtime's default, all cores, so keep
# THREADS = nproc for a like-for-like run), PROMPTS ("64 512"), DECODE (64), REPS (3),
# WORK (/tmp/llama-peer), KV (fp16: our KV cache dtype; llama.cpp's default cache type is f16).
# Makes our fp32/q8/q4 folders (serving models create / quantize) and the GGUFs (f32 written by
# llama-peer gguf, q8_0 and q4_0 by llama.cpp's quantizer), then alternates ours and llama.cpp
# for ROUNDS rounds, one process per measurement. Each process loads its model once and runs
# REPS generations of the same prompt (ours through one engine, prefix caching off; llama.cpp
# with its cache cleared): the first is the cold first request, the rest are warm, as a
# serving process runs and as llama-bench measures after its warm-up. Prints medians.
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET=${1:-gemma3-270m}
ROUNDS=${2:-3}
THREADS=${THREADS:-2}
PROMPTS=${PROMPTS:-64 512}
DECODE=${DECODE:-64}
REPS=${REPS:-3}
KV=${KV:-fp16}
W=${WORK:-/tmp/llama-peer}/$PRESET
mkdir -p "$W"
[ "$THREADS" = "$(nproc)" ] || echo "note: THREADS=$THREADS but ours uses all $(nproc) cores" >&2

dotnet build src/Cli -c Release -v q -nologo >/dev/null
dotnet build benchmarks/llama-peer/LlamaPeer.csproj -c Release -v q -nologo >/dev/null
S="dotnet src/Cli/bin/Release/net10.0/serving.dll"
P="dotnet benchmarks/llama-peer/bin/Release/net10.0/llama-peer.dll"

[ -f "$W/fp32/config.json" ] || $S models create --preset "$PRESET" --out "$W/fp32" >&2
for q in q8 q4; do
  [ -d "$W/$q/onnx" ] && ls "$W/$q"/onnx/model_*.onnx >/dev/null 2>&1 || $S quantize --model "$W/fp32" --out "$W/$q" --dtype $q >&2
done
[ -f "$W/f32.gguf" ] || $P gguf --model "$W/fp32" --out "$W/f32.gguf"
for t in q8_0 q4_0; do
  [ -f "$W/$t.gguf" ] || $P quantize --in "$W/f32.gguf" --out "$W/$t.gguf" --type $t
done
$P info > "$W/llama-info.txt"

RESULTS="$W/results.jsonl"
: > "$RESULTS"
measure() { # engine variant prompt_tokens round command...
  local engine=$1 variant=$2 pt=$3 round=$4; shift 4
  /usr/bin/time -f "%M" -o "$W/maxrss" "$@" > "$W/out.json"
  python3 - "$engine" "$variant" "$pt" "$round" "$W/out.json" "$(cat "$W/maxrss")" >> "$RESULTS" <<'PY'
import json, sys
engine, variant, pt, rnd, path, maxrss_kb = sys.argv[1:]
r = json.load(open(path))
row = dict(load_ms=r["load_ms"], prompt_tokens=r["prompt_tokens"], prefill_ms=r["prefill_ms"],
           prefill_ms_first=r["prefill_ms_first"], decode_tps=r["decode_tokens_per_second"], generated=len(r["token_ids"]),
           rss_after_load=r["rss_bytes_after_load"])
row.update(engine=engine, variant=variant, prompt=int(pt), round=int(rnd), max_rss_bytes=int(maxrss_kb) * 1024)
print(json.dumps(row))
PY
}

for pt in $PROMPTS; do
  $P prompt --gguf "$W/f32.gguf" --tokens "$pt" > "$W/prompt-$pt.txt"
done
for round in $(seq 1 "$ROUNDS"); do
  for pt in $PROMPTS; do
    text=$(cat "$W/prompt-$pt.txt")
    for pair in "fp32:fp32:f32" "q8:q8:q8_0" "q4:q4:q4_0"; do
      IFS=: read -r folder dtype gguf <<< "$pair"
      echo "round $round, prompt $pt, $folder / $gguf" >&2
      measure ours "$folder" "$pt" "$round" $P ours --model "$W/$folder" --dtype "$dtype" --kv-cache-dtype "$KV" --prompt "$text" \
        --decode "$DECODE" --rounds "$REPS"
      measure llama.cpp "$gguf" "$pt" "$round" $P bench --gguf "$W/$gguf.gguf" --threads "$THREADS" --prompt "$text" \
        --decode "$DECODE" --rounds "$REPS"
    done
  done
done

python3 - "$RESULTS" "$THREADS" "$KV" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"\nMedians of n measurements (one process each); llama.cpp threads = {sys.argv[2]}; our KV cache {sys.argv[3]}, llama.cpp's f16\n")
print("| prompt | engine | weights | n | load ms | RSS after load MB | max RSS MB | first prefill ms | prefill ms | prefill tok/s | decode tok/s | generated |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
keys = []
for r in rows:
    k = (r["prompt"], r["engine"], r["variant"])
    if k not in keys:
        keys.append(k)
for k in sorted(keys, key=lambda k: (k[0], ["fp32", "f32", "q8", "q8_0", "q4", "q4_0"].index(k[2]), k[1] != "ours")):
    g = [r for r in rows if (r["prompt"], r["engine"], r["variant"]) == k]
    m = lambda f: statistics.median(r[f] for r in g)
    print(f"| {g[0]['prompt_tokens']} | {k[1]} | {k[2]} | {len(g)} | {m('load_ms'):,.0f} | {m('rss_after_load') / 1e6:,.0f} | {m('max_rss_bytes') / 1e6:,.0f} | {m('prefill_ms_first'):,.1f} | {m('prefill_ms'):,.1f} "
          f"| {g[0]['prompt_tokens'] / m('prefill_ms') * 1000:,.0f} | {m('decode_tps'):,.1f} | {min(r['generated'] for r in g)} |")
PY
