#!/usr/bin/env bash
# The GPU check of issue 21, for a machine with an NVIDIA GPU (sm_80 or newer) and its driver:
#   1. the GPU and driver; the CUDA 13 / cuDNN 9 libraries ONNX Runtime 1.32's CUDA provider loads
#      (it names any that are missing, and stops: nothing else can run);
#   2. builds the tests and harnesses with the GPU package (-p:OnnxRuntimePackage=
#      Microsoft.ML.OnnxRuntime.Gpu.Linux) into artifacts/gpu, apart from the CPU build;
#   3. the native tests (ctest: the kernels on the warp emulator, the CPU kernels);
#   4. the Sparsity and PagedAttention op tests with every one-op session on the CUDA provider
#      (SERVING_TEST_DEVICE=cuda): our CUDA kernels against ONNX Runtime's CUDA MatMul;
#   5. PagedAttention on the CUDA provider (pool in device memory, fp32 and fp16) against the CPU
#      op, and both timed at gemma3-1b's attention shape (benchmarks/gpu/AttentionCheck);
#   6. dense MatMul vs SparseMatMul24 on the CUDA provider, gemma3-1b's linear shapes, M = 1 and
#      512, fp16 and fp32 (benchmarks/sparse/OpBench --device=cuda);
#   7. the whole engine (`serving generate`, KV pool in device memory) on CUDA against the CPU,
#      gemma3-270m shapes: fp32 weights, q4, q4 with an fp16 KV pool; greedy tokens in common,
#      decode, prefill and load.
# Prints one "check NAME: ..." summary line per check (the tables of 5 and 6 above their lines) and
# exits non-zero if any check failed. About 5 minutes on a 16-core H100/H200 host once the packages
# are restored; each step has its own time limit so the whole stays under 8 minutes.
# Needs the .NET 10 SDK, cmake, g++, libgtest-dev and clang (clang compiles the kernels to PTX: a
# library built without it has no CUDA kernels). The GPU package (550 MB) comes from nuget.org, or
# from ~/.nuget/packages when the machine is offline.
#   benchmarks/gpu/check.sh [cuda:N]   (default cuda:0)
#   benchmarks/gpu/check.sh cpu        the same steps on the CPU provider, to check the script itself
#                                      on a machine without a GPU
# This script needs the .NET SDK and nuget.org (or a filled ~/.nuget/packages), so the GPU machine
# this workplace lends (no .NET, no network) can never run it; that machine runs
# benchmarks/gpu/native-check.sh instead: the kernels, the device pool and DeviceAttention /
# DeviceMatmul against the CPU kernels, native only (no ONNX Runtime, no .NET), with a PTX compiled
# here by `native-check.sh prepare` and carried over.
set -uo pipefail
cd "$(dirname "$0")/../.."
device="${1:-cuda:0}"
out=artifacts/gpu
ort="-p:OnnxRuntimePackage=Microsoft.ML.OnnxRuntime.Gpu.Linux"
failed=0
start=$SECONDS
mkdir -p "$out"
say() { echo "check $*"; }
fail() { say "$*"; failed=1; }

# 1. Tools, GPU, driver, libraries.
tools=()
for tool in dotnet cmake g++; do command -v "$tool" >/dev/null 2>&1 || tools+=("$tool"); done
command -v clang++-14 >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 || tools+=("clang++ (clang-14)")
[ -d /usr/include/gtest ] || tools+=("libgtest-dev")
if [ ${#tools[@]} -gt 0 ]; then
  say "tools: FAILED: missing ${tools[*]}"
  exit 1
fi
if [ "$device" = cpu ]; then
  say "gpu: none asked for (cpu: checking the script's steps on the CPU provider)"
elif ! command -v nvidia-smi >/dev/null 2>&1; then
  say "gpu: FAILED: no nvidia-smi (no NVIDIA driver on this machine)"
  exit 1
else
  say "gpu: $(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader | head -1)"
fi
# The provider's NEEDED libraries plus cuDNN (src/Runtime/Devices/CudaProbe.cs keeps the same list).
missing=()
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9; do
  found=0
  ldconfig -p 2>/dev/null | grep -q "[[:space:]]$lib " && found=1
  for dir in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do [ -e "$dir/$lib" ] && found=1; done
  [ "$found" = 1 ] || missing+=("$lib")
done
if [ ${#missing[@]} -gt 0 ] && [ "$device" != cpu ]; then
  say "cuda-libraries: FAILED: missing ${missing[*]} (ONNX Runtime 1.32's CUDA provider needs CUDA 13: cudart, cublas, cublasLt, curand; and cuDNN 9; add their folder to LD_LIBRARY_PATH)"
  exit 1
fi
[ ${#missing[@]} -gt 0 ] || say "cuda-libraries: CUDA 13 and cuDNN 9 found"

# 2. Build with the GPU package, apart from the CPU build's bin/ and obj/.
t=$SECONDS
build_ok=1
for project in tests/Runtime.Tests benchmarks/gpu/AttentionCheck benchmarks/sparse/OpBench src/Cli; do
  if ! timeout 300 dotnet build "$project" -c Release "$ort" --artifacts-path "$out" --nologo -v q >"$out/build.log" 2>&1; then
    build_ok=0
    tail -20 "$out/build.log"
    fail "build: FAILED building $project with the GPU package (restore needs nuget.org, or Microsoft.ML.OnnxRuntime.Gpu.Linux 1.32.0 in ~/.nuget/packages)"
    break
  fi
done
[ "$build_ok" = 1 ] || exit 1
say "build: ok ($((SECONDS - t)) s)"

# 3. Native tests (emulator and CPU kernels; the GPU plays no part, but they gate the rest).
t=$SECONDS
native="$out/native-tests"
include=$(sed -n 's/^ORT_INCLUDE_DIR:PATH=//p' "$out"/obj/Runtime/native/CMakeCache.txt 2>/dev/null)
if timeout 240 cmake -S src/KernelsNative -B "$native" -DCMAKE_BUILD_TYPE=Release -DORT_INCLUDE_DIR="$include" >/dev/null \
   && timeout 240 cmake --build "$native" -j "$(nproc)" >/dev/null && timeout 120 ctest --test-dir "$native" -j "$(nproc)" >"$out/native.log" 2>&1; then
  say "native-tests: $(grep -o '[0-9]*% tests passed.*' "$out/native.log") ($((SECONDS - t)) s)"
else
  tail -20 "$out/native.log" 2>/dev/null
  fail "native-tests: FAILED"
fi

# 4. The op tests on the CUDA provider.
t=$SECONDS
if SERVING_TEST_DEVICE="$device" timeout 180 dotnet test "$out/bin/Runtime.Tests/release/Serving.Runtime.Tests.dll" \
     --filter "FullyQualifiedName~Sparsity|FullyQualifiedName~PagedAttention|FullyQualifiedName~KvCacheManagerOpTests|FullyQualifiedName~KvPoolTests|FullyQualifiedName~EngineOnDevicePoolTests" >"$out/tests.log" 2>&1; then
  say "op-tests on $device: $(grep -oE 'Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+, Total: +[0-9]+' "$out/tests.log" | tail -1 | tr -s ' ') ($((SECONDS - t)) s)"
else
  grep -E 'Failed |Error Message|Passed!|Failed!' -A3 "$out/tests.log" | head -40
  fail "op-tests on $device: FAILED"
fi

# 5. PagedAttention on CUDA against the CPU op, and timings.
t=$SECONDS
if ! timeout 150 dotnet "$out/bin/AttentionCheck/release/attention-check.dll" --device="$device"; then
  fail "attention: FAILED"
fi

# 6. Dense vs 2:4 on the CUDA provider.
for precision in --fp16 ""; do
  t=$SECONDS
  name="sparse-vs-dense ${precision:---fp32}"
  if timeout 150 dotnet "$out/bin/OpBench/release/sparse-op-bench.dll" 1 gemma3-1b --rows=1,512 --device="$device" $precision >"$out/op.log" 2>&1; then
    cat "$out/op.log"
    say "$name: $(grep -c '^| gemma3-1b' "$out/op.log") shapes timed, speed-ups $(awk -F'|' '/^\| gemma3-1b/ {gsub(/ /, "", $8); printf "%s ", $8}' "$out/op.log")($((SECONDS - t)) s)"
  else
    cat "$out/op.log"
    fail "$name: FAILED"
  fi
done

# 7. The whole engine (`serving generate`: paged KV pool in device memory, every projection on the
#    provider) on CUDA against the CPU, gemma3-270m shapes with random weights, fp32 and q4.
t=$SECONDS
cli="$out/bin/Cli/release/serving.dll"
model="$out/gemma3-270m"
prompt="In the beginning God created the heaven and the earth. And the earth was without form, and void."
if [ -f "$model/onnx/model_q4.onnx" ] || timeout 180 dotnet "$cli" models create --preset gemma3-270m --dtypes fp32,q4 --out "$model" --seed 1 >"$out/engine.log" 2>&1; then
  for run in fp32/fp32 q4/fp32 q4/fp16; do
    dtype=${run%/*} kv=${run#*/}
    for where in cpu "$device"; do
      timeout 120 dotnet "$cli" generate --model "$model" --dtype "$dtype" --kv-cache-dtype "$kv" --prompt "$prompt" --max-tokens 128 \
        --device "$where" --json >"$out/generate-$dtype-$kv-${where%%:*}.json" 2>>"$out/engine.log" || echo '{}' >"$out/generate-$dtype-$kv-${where%%:*}.json"
    done
    line=$(python3 - "$out/generate-$dtype-$kv-cpu.json" "$out/generate-$dtype-$kv-${device%%:*}.json" <<'PY'
import json, sys
runs = []
for path in sys.argv[1:]:
    try:
        runs.append(json.load(open(path)))
    except ValueError:
        runs.append({})
if not all("token_ids" in r for r in runs):
    print("FAILED: a run gave no output (see engine.log)")
    sys.exit()
cpu, dev = runs
same = next((i for i, (a, b) in enumerate(zip(cpu["token_ids"], dev["token_ids"])) if a != b), min(len(cpu["token_ids"]), len(dev["token_ids"])))
t = lambda r, k: r["timings"][k]
print(f"{same} of {len(cpu['token_ids'])} greedy tokens as the CPU's; decode {t(dev, 'decode_tokens_per_second'):.0f} tok/s (cpu {t(cpu, 'decode_tokens_per_second'):.0f}), "
      f"prefill {t(dev, 'prefill_ms'):.0f} ms (cpu {t(cpu, 'prefill_ms'):.0f}), load {t(dev, 'load_ms'):.0f} ms")
PY
)
    case "$line" in FAILED*) tail -20 "$out/engine.log"; fail "engine $dtype, $kv KV on $device: $line" ;; *) say "engine $dtype, $kv KV on $device: $line ($((SECONDS - t)) s)" ;; esac
  done
else
  tail -20 "$out/engine.log"
  fail "engine: FAILED creating the gemma3-270m folder"
fi

say "total: $((SECONDS - start)) s, $([ "$failed" = 0 ] && echo 'all passed' || echo 'SOME FAILED')"
exit "$failed"
