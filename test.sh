#!/usr/bin/env bash
# Runs every test: installs the cross-check's npm packages (transformers.js on
# onnxruntime-node), then every xunit project of the solution.
set -euo pipefail
cd "$(dirname "$0")"

# onnxruntime-node's install script downloads GPU binaries and fails offline; the CPU
# binaries ship inside the package, so skip install scripts.
npm ci --ignore-scripts --no-audit --no-fund --prefix tests/Compat.Tests/js

dotnet test Serving.sln --nologo "$@"
