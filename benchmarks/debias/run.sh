#!/usr/bin/env bash
# The WRING bar chart: benchmarks/debias/run.sh EVAL.json OUT.png [TITLE]
# where EVAL.json is `serving eval-debias --model models/shapes-clip --json`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dotnet build -c Release "$here" -o "$here/bin/out" >/dev/null
dotnet "$here/bin/out/plot-debias.dll" "$@"
