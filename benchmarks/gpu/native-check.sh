#!/usr/bin/env bash
# The native GPU check, for the device machine this workplace lends (one H200, its driver, cmake and
# g++; no .NET, no network, no clang): benchmarks/gpu/native/gpu_check.cpp, built from
# src/KernelsNative against the kernels' static library, runs the device pool, PagedAttention
# (fp32 and fp16 pools) and SparseMatMul24 (fp32, fp16) on the GPU against the CPU kernels at
# gemma3-1b's shapes, with timings. check.sh is the full check (ONNX Runtime's CUDA provider, the
# engine) and needs the .NET SDK and nuget.org; this one needs neither.
#
#   benchmarks/gpu/native-check.sh prepare   here (clang-14): compiles the kernels to PTX into
#                                            artifacts/gpu-carry/kernels.ptx and prints the device call
#   benchmarks/gpu/native-check.sh [N]       on the GPU machine (CUDA device N, default 0): builds with
#                                            that PTX (-DSERVING_PTX_FILE, no clang), runs gpu_check
#
# Prints "check NAME: ..." lines (gpu_check's, then "check total: S s, all passed|SOME FAILED") and
# exits non-zero if any check failed. Under a minute on a 16-core machine: ~15 s of build, the run
# well under its 300 s limit. On a machine without a GPU the build still runs and gpu_check fails
# with the driver's reason. When $OUT is set (the device machine's run), gpu_check's log goes there.
set -uo pipefail
cd "$(dirname "$0")/../.."
carry=artifacts/gpu-carry
ptx="$PWD/$carry/kernels.ptx"
start=$SECONDS
mkdir -p artifacts
say() { echo "check $*"; }
# The kernels' sources the PTX is compiled from: a PTX older than them must not be run.
sources_hash() { (export LC_ALL=C; cat src/KernelsNative/src/cuda/* | sha256sum | cut -d' ' -f1); }

if [ "${1:-}" = prepare ]; then
  build=artifacts/gpu-ptx
  cmake -S src/KernelsNative -B "$build" -DSERVING_GPU_CHECK=ON -DSERVING_CUDA_PTX=ON >"$build.log" 2>&1 &&
    cmake --build "$build" --target sparse24_ptx >>"$build.log" 2>&1 ||
    { say "prepare: FAILED: clang could not compile the kernels to PTX ($build.log):"; tail -20 "$build.log"; exit 1; }
  mkdir -p "$carry"
  cp "$build/sparse24_kernels.ptx" "$ptx"
  sources_hash >"$ptx.sources"
  git check-ignore -q "$carry/kernels.ptx" || { say "prepare: FAILED: $carry is not git-ignored, so it would travel twice"; exit 1; }
  say "prepare: $carry/kernels.ptx, $(wc -c <"$ptx") bytes, $(grep -c '^\.entry\|^\.visible \.entry' "$ptx") entries, from commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src/KernelsNative/src/cuda || echo ' + uncommitted kernel changes')"
  echo "The device call (the run tool), timeout_s 480:"
  echo "  command: bash benchmarks/gpu/native-check.sh 0"
  echo "  carry:   [\"$carry\"]"
  exit 0
fi

ordinal="${1:-0}"
if ! [[ "$ordinal" =~ ^[0-9]+$ ]]; then
  echo "usage: benchmarks/gpu/native-check.sh prepare | benchmarks/gpu/native-check.sh [cuda-ordinal]" >&2
  exit 2
fi
failed=0
if [ ! -f "$ptx" ]; then
  say "ptx: FAILED: no $carry/kernels.ptx: run 'benchmarks/gpu/native-check.sh prepare' on a machine with clang and carry $carry"
  exit 1
fi
if [ "$(cat "$ptx.sources" 2>/dev/null)" != "$(sources_hash)" ]; then
  say "ptx: FAILED: $carry/kernels.ptx was not compiled from these src/KernelsNative/src/cuda sources: rerun prepare"
  exit 1
fi
tools=()
for tool in cmake g++; do command -v "$tool" >/dev/null 2>&1 || tools+=("$tool"); done
if [ ${#tools[@]} -gt 0 ]; then
  say "tools: FAILED: missing ${tools[*]}"
  exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader -i "$ordinal" 2>&1 | head -1)"
else
  say "gpu: FAILED: no nvidia-smi (no NVIDIA driver on this machine); building anyway, gpu_check will say why it cannot run"
  failed=1
fi
# The driver's own folder, when the loader's path does not name it (this workplace mounts it at
# /usr/local/nvidia).
for dir in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -e "$dir/libcuda.so.1" ] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done

build=artifacts/gpu-native
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
[ -f "$build/CMakeCache.txt" ] && generator=()
built=$SECONDS
if ! { timeout 240 cmake -S src/KernelsNative -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
         -DSERVING_GPU_CHECK=ON -DSERVING_CUDA_PTX=OFF -DSERVING_PTX_FILE="$ptx" &&
       timeout 240 cmake --build "$build" -j "$(nproc)"; } >"$build.log" 2>&1; then
  say "build: FAILED ($build.log):"
  tail -30 "$build.log"
  say "total: $((SECONDS - start)) s, SOME FAILED"
  exit 1
fi
say "build: gpu_check in $((SECONDS - built)) s ($(nproc) cores, $(g++ --version | head -1))"

log="$build/gpu_check.log"
timeout 300 "$build/gpu_check/gpu_check" "$ordinal" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" = 124 ]; then
  say "run: FAILED: gpu_check ran past its 300 s"
fi
[ "$status" = 0 ] || failed=1
[ -n "${OUT:-}" ] && [ -d "$OUT" ] && cp "$log" "$OUT/"
if [ "$failed" = 0 ]; then
  say "total: $((SECONDS - start)) s, all passed"
else
  say "total: $((SECONDS - start)) s, SOME FAILED"
fi
exit "$failed"
