#!/usr/bin/env bash
# Ours against ONNX Runtime GenAI 0.20 on the same folder, the same .onnx file and the same prompt ids (issue 17).
#   benchmarks/genai-peer/run.sh [PRESET=gemma3-270m] [ROUNDS=3]
# Env: PROMPTS ("64 512": prompt tokens), DECODE (64), REPS (3), DTYPES ("fp32 q8 q4"), WORK (/tmp/genai-peer),
# STYLES ("serving": export styles, e.g. "serving genai onnx-community optimum").
# Makes one folder per style with every variant (serving models create --style --dtypes), then alternates
# GenAI and ours for ROUNDS rounds, one process per measurement; GenAI runs the styles that have a
# genai_config.json (serving, genai), ours every style. Each process loads its model once and runs
# REPS greedy generations of the same prompt from an empty cache: the first is the cold first
# request, the rest warm. Both run ONNX Runtime 1.32.0 with its default threads (all cores).
# Prints medians in llama-peer/run.sh's table.
set -euo pipefail
cd "$(dirname "$0")/../.."
PRESET=${1:-gemma3-270m}
ROUNDS=${2:-3}
PROMPTS=${PROMPTS:-64 512}
DECODE=${DECODE:-64}
REPS=${REPS:-3}
DTYPES=${DTYPES:-fp32 q8 q4}
STYLES=${STYLES:-serving}
W=${WORK:-/tmp/genai-peer}/$PRESET
mkdir -p "$W"

dotnet build src/Cli -c Release -v q -nologo >/dev/null
dotnet build benchmarks/genai-peer/GenAiPeer.csproj -c Release -v q -nologo >/dev/null
S="dotnet src/Cli/bin/Release/net10.0/serving.dll"
P="dotnet benchmarks/genai-peer/bin/Release/net10.0/genai-peer.dll"
for style in $STYLES; do
  [ -f "$W/$style/config.json" ] || $S models create --preset "$PRESET" --style "$style" --out "$W/$style" --dtypes "$(echo $DTYPES | tr ' ' ,)" >&2
done

RESULTS="$W/results.jsonl"
: > "$RESULTS"
measure() { # engine dtype prompt_tokens round style
  /usr/bin/time -f "%M" -o "$W/maxrss" $P "$1" --model "$W/$5" --dtype "$2" --prompt-tokens "$3" \
    --new-tokens "$DECODE" --reps "$REPS" 2>/dev/null | grep '^{' > "$W/out.json"
  python3 - "$1" "$2" "$3" "$4" "$W/out.json" "$(cat "$W/maxrss")" "$5" >> "$RESULTS" <<'PY'
import json, sys
engine, dtype, pt, rnd, path, maxrss_kb, style = sys.argv[1:]
r = json.load(open(path))
row = dict(load_ms=r["load_ms"], prompt_tokens=r["prompt_tokens"], prefill_ms=r["prefill_ms"],
           prefill_ms_first=r["prefill_ms_first"], decode_tps=r["decode_tokens_per_second"], generated=len(r["token_ids"]),
           rss_after_load=r["rss_bytes_after_load"], token_ids=r["token_ids"])
row.update(engine="genai" if engine == "bench" else "ours", variant=dtype, style=style, prompt=int(pt), round=int(rnd), max_rss_bytes=int(maxrss_kb) * 1024)
print(json.dumps(row))
PY
}

for round in $(seq 1 "$ROUNDS"); do
  for pt in $PROMPTS; do
    for dtype in $DTYPES; do
      for style in $STYLES; do
        echo "round $round, prompt $pt, $dtype, $style" >&2
        measure ours "$dtype" "$pt" "$round" "$style"
        if [ -f "$W/$style/genai_config.json" ]; then measure bench "$dtype" "$pt" "$round" "$style"; fi
      done
    done
  done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("\nMedians of n measurements (one process each); ONNX Runtime's default threads for both\n")
print("| prompt | style | engine | weights | n | load ms | RSS after load MB | max RSS MB | first prefill ms | prefill ms | prefill tok/s | decode tok/s | generated | same tokens |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
keys = []
for r in rows:
    k = (r["prompt"], r["style"], r["engine"], r["variant"])
    if k not in keys:
        keys.append(k)
styles = list(dict.fromkeys(r["style"] for r in rows))
for k in sorted(keys, key=lambda k: (k[0], ["fp32", "fp16", "q8", "q4"].index(k[3]), styles.index(k[1]), k[2] != "ours")):
    g = [r for r in rows if (r["prompt"], r["style"], r["engine"], r["variant"]) == k]
    ours = [r for r in rows if (r["prompt"], r["style"], r["engine"], r["variant"]) == (k[0], k[1], "ours", k[3])]
    same = "yes" if ours and all(r["token_ids"] == ours[0]["token_ids"] for r in g) else "no"
    m = lambda f: statistics.median(r[f] for r in g)
    print(f"| {g[0]['prompt_tokens']} | {k[1]} | {k[2]} | {k[3]} | {len(g)} | {m('load_ms'):,.0f} | {m('rss_after_load') / 1e6:,.0f} | {m('max_rss_bytes') / 1e6:,.0f} | {m('prefill_ms_first'):,.1f} | {m('prefill_ms'):,.1f} "
          f"| {g[0]['prompt_tokens'] / m('prefill_ms') * 1000:,.0f} | {m('decode_tps'):,.1f} | {min(r['generated'] for r in g)} | {same} |")
PY
