#!/usr/bin/env bash
# Runs every test: installs the cross-check's npm packages (transformers.js on
# onnxruntime-node), then every xunit project of the solution, then the native kernels' tests (ctest).
set -euo pipefail
cd "$(dirname "$0")"

# onnxruntime-node's install script downloads GPU binaries and fails offline; the CPU
# binaries ship inside the package, so skip install scripts.
npm ci --ignore-scripts --no-audit --no-fund --prefix tests/Compat.Tests/js

dotnet test Serving.sln --nologo "$@"

# Native unit tests (every ISA kernel the CPU supports against a dense reference).
# The ONNX Runtime headers the MSBuild target found in the restored package.
ORT_INCLUDE=$(sed -n 's/^ORT_INCLUDE_DIR:PATH=//p' src/Runtime/obj/native/CMakeCache.txt)
cmake -S src/KernelsNative -B artifacts/native-tests -DCMAKE_BUILD_TYPE=Release -DORT_INCLUDE_DIR="$ORT_INCLUDE"
cmake --build artifacts/native-tests -j 2
ctest --test-dir artifacts/native-tests --output-on-failure

# Load scenarios, short set (1.5–2.5 minutes on 2 cores; loadtests/README.md): the server built
# above (Debug; the build is incremental) as a real process on temporary data directories.
loadtests/run.sh --short --configuration Debug

# The fleet (about 40 s): three replicas of that build on one PostgreSQL store behind HAProxy;
# uploads seen by every replica within 1 s, kill -9 of one during uploads and chats, its restart.
loadtests/fleet.sh --configuration Debug --no-build

# Kubernetes: every overlay renders (kubectl kustomize) and validates against its schemas.
deploy/k8s/check.sh

# The container image's contents (Docker does not run here): the Dockerfile's publish for
# linux-x64, its size, and the published server started as a non-root user with the image's
# environment until /health/ready answers 200.
deploy/check-image.sh
