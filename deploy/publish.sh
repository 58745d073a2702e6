#!/usr/bin/env bash
# The one publish command: the Dockerfile runs it, and deploy/check-image.sh runs it in CI to
# check what the image would hold. Framework-dependent for linux-x64: without the runtime
# identifier the output carries every platform's native libraries (~764 MB, ~42 MB of them
# for linux-x64). KernelsNative.targets builds libserving_kernels.so with cmake and ships it
# beside Serving.Runtime.dll.
#   deploy/publish.sh OUTPUT_DIR [extra dotnet publish arguments...]
# ONNX Runtime's GPU package: deploy/publish.sh /app -p:OnnxRuntimePackage=Microsoft.ML.OnnxRuntime.Gpu.Linux
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: deploy/publish.sh OUTPUT_DIR [dotnet publish arguments...]}
shift
dotnet publish src/Server/Server.csproj -c Release -r linux-x64 --self-contained false -o "$out" --nologo "$@"
