#!/usr/bin/env bash
# The loss plot of a `serving train` run: benchmarks/training/run.sh LOG.csv OUT.png [TITLE]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dotnet build -c Release "$here" -o "$here/bin/out" >/dev/null
dotnet "$here/bin/out/plot-loss.dll" "$@"
