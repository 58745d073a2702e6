#!/usr/bin/env bash
# Correctness of the GGUF writer: greedy tokens from llama.cpp on the f32 GGUF against ours
# (`serving generate --temperature 0 --json`), same prompt, token for token.
#   benchmarks/llama-peer/check.sh [MODEL_DIR ...]      default: tiny (created), models/kjv-gemma3
# Env: TOKENS (32), PROMPT, LAYOUT (padded: our layers on llama.cpp's fixed gemma3 layout,
# identity layers in between; as-is shows what llama.cpp computes on the folder as it is).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-/tmp/llama-peer-check}
TOKENS=${TOKENS:-32}
LAYOUT=${LAYOUT:-padded}
PROMPT=${PROMPT:-In the beginning God created the heaven and the earth.}
mkdir -p "$WORK"
dotnet build src/Cli -c Release -v q -nologo >/dev/null
dotnet build benchmarks/llama-peer/LlamaPeer.csproj -c Release -v q -nologo >/dev/null
S="dotnet src/Cli/bin/Release/net10.0/serving.dll"
P="dotnet benchmarks/llama-peer/bin/Release/net10.0/llama-peer.dll"
if [ $# -eq 0 ]; then
  [ -f "$WORK/tiny/config.json" ] || $S models create --preset tiny --out "$WORK/tiny" >/dev/null
  set -- "$WORK/tiny" models/kjv-gemma3
fi
status=0
for model in "$@"; do
  name=$(basename "$model")
  $P gguf --model "$model" --out "$WORK/$name.$LAYOUT.gguf" --layout "$LAYOUT"
  $S generate --model "$model" --prompt "$PROMPT" --max-tokens "$TOKENS" --temperature 0 --json > "$WORK/$name.ours.json"
  $P greedy --gguf "$WORK/$name.$LAYOUT.gguf" --prompt "$PROMPT" --max-tokens "$TOKENS" 2>/dev/null > "$WORK/$name.llama.json"
  python3 - "$name" "$WORK/$name.ours.json" "$WORK/$name.llama.json" <<'PY' || status=1
import json, sys
name, ours, llama = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
a, b = ours["token_ids"], llama["token_ids"][:len(ours["token_ids"])]
same_prompt = ours["prompt_token_ids"] == llama["llama_prompt_token_ids"]
first = next((i for i in range(len(a)) if a[i] != b[i]), None)
print(f"{name}: prompt {len(ours['prompt_token_ids'])} tokens, tokenizers {'agree' if same_prompt else 'DIFFER'}; "
      + (f"{len(a)} greedy tokens identical" if first is None else f"first difference at token {first} of {len(a)}"))
print(f"  ours  {a}\n  llama {b}")
sys.exit(0 if same_prompt and first is None else 1)
PY
done
exit $status
