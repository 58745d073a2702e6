#!/usr/bin/env bash
# KV-cache compression (results: docs/BENCHMARKS.md), two measurements with `serving eval-kv`
# (teacher-forced on full attention's greedy continuation: top-1 agreement, mean KL, peak KV
# bytes, decode tokens/s):
#  1. kjv: the trained kjv-gemma3 (models/kjv-gemma3, calibrated with `serving calibrate-kv` on
#     Genesis) on 8 KJV passages of ~340 tokens from Psalms onwards, 96 tokens each, budgets
#     128/192/256 (its 128-token window puts the floor at 127), beta 32; every policy.
#  2. long: the gemma3-270m preset (random weights, real shapes: 3 global + 15 sliding layers,
#     262k vocabulary) on prompts of 4k and 8k tokens, budgets 512/1024/2048, beta 128,
#     TriAttention against full attention: agreement and memory at long context;
#  3. speed: `serving generate` on the 8k-token prompt, full attention and TriAttention at
#     budget 1024, alternating, RUNS runs each, 128 tokens: median decode tokens/s.
# Needs the KJV text (Debian package bible-kjv: `bible`). MODEL_DIR (default /tmp/kv-bench) holds
# the generated model (~1.1 GB).
# usage: benchmarks/kv/run.sh [kjv|long|speed|all] [GEN_LONG=32] [RUNS=3]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
what="${1:-all}"
gen_long="${2:-32}"
runs="${3:-3}"
work="${MODEL_DIR:-/tmp/kv-bench}"
mkdir -p "$work"

echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet build -c Release "$root/src/Cli" -o "$here/bin/cli" >/dev/null
serving() { dotnet "$here/bin/cli/serving.dll" "$@"; }

[ -s "$work/kjv.txt" ] || bible -f "gen1:1-rev22:21" | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$work/kjv.txt"

# Prompts: consecutive verses from line START until the prompt reaches CHARS characters.
prompts() { # FILE CHARS START...
  python3 - "$work/kjv.txt" "$@" <<'PY'
import sys
lines = open(sys.argv[1]).read().split('\n')
out, chars = sys.argv[2], int(sys.argv[3])
with open(out, 'w') as f:
    for start in map(int, sys.argv[4:]):
        text, i = '', start
        while len(text) < chars:
            text += (' ' if text else '') + lines[i % len(lines)].strip()
            i += 1
        f.write(text + '\n')
PY
}

if [ "$what" = kjv ] || [ "$what" = all ]; then
  prompts "$work/kjv-prompts.txt" 1350 15000 17000 19000 21000 23000 25000 27000 29000
  serving eval-kv --model "$root/models/kjv-gemma3" --prompts "$work/kjv-prompts.txt" --budgets 128,192,256 --beta 32 \
    --policies triattention,window,knorm --gen 96 2>/dev/null
fi
[ "$what" != kjv ] || exit 0

model="$work/gemma3-270m"
[ -f "$model/onnx/model.onnx" ] || serving models create --preset gemma3-270m --out "$model" --seed 1 >/dev/null
[ -f "$model/kv_calibration.json" ] || serving calibrate-kv --model "$model" --text "$work/kjv.txt" --max-tokens 8192 2>/dev/null
# ~4k and ~8k tokens with this preset's tokenizer (the character counts were found by tokenizing).
prompts "$work/long-4k.txt" "${CHARS_4K:-9400}" 20000
prompts "$work/long-8k.txt" "${CHARS_8K:-18800}" 24000
if [ "$what" = long ] || [ "$what" = all ]; then
  for prompt in "$work/long-4k.txt" "$work/long-8k.txt"; do
    serving eval-kv --model "$model" --prompts "$prompt" --budgets 512,1024,2048 --policies triattention --gen "$gen_long" 2>&1 | grep -v "^runs"
  done
fi
[ "$what" = speed ] || [ "$what" = all ] || exit 0

for run in $(seq "$runs"); do
  for policy in none triattention; do
    serving generate --model "$model" --prompt "$(cat "$work/long-8k.txt")" --max-tokens 128 --json \
      --kv-policy "$policy" --kv-budget 1024 2>/dev/null > "$work/out.json"
    python3 - "$policy" "$run" "$work/out.json" <<'PY'
import json, sys
policy, run, path = sys.argv[1:]
r = json.load(open(path))
t = r["timings"]
print(f"run {run} {policy}: prompt {len(r['prompt_token_ids'])} tokens, prefill {t['prefill_ms'] / 1000:.1f} s, "
      f"decode {t['decode_tokens_per_second']:.2f} tok/s, KV peak {r['kv_tokens_peak']} tokens / {r['kv_bytes_peak'] / 2**20:.1f} MiB")
PY
  done
done
