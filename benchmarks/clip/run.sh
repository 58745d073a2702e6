#!/usr/bin/env bash
# CLIP image embedding (images/s, clip-bench vs transformers.js on the same folder and images,
# alternating runs) and exact-search latency of the in-memory index (p50/p99).
# usage: benchmarks/clip/run.sh [PRESET=clip-vit-b-32] [IMAGES=64] [BATCH=16] [RUNS=3]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
preset="${1:-clip-vit-b-32}"; count="${2:-64}"; batch="${3:-16}"; runs="${4:-3}"
work="${WORK_DIR:-/tmp/serving-bench-clip}"
model="$work/$preset"; images="$work/images"

[ -d "$here/node_modules" ] || npm ci --ignore-scripts --no-audit --no-fund --prefix "$here" >/dev/null
dotnet build -c Release "$here/ClipBench.csproj" -o "$here/bin" >/dev/null
dotnet build -c Release "$here/../../src/Cli" -o "$here/bin/cli" >/dev/null
[ -f "$model/onnx/vision_model.onnx" ] || dotnet "$here/bin/cli/serving.dll" models create --preset "$preset" --out "$model" --seed 1 >/dev/null
if [ ! -d "$images" ]; then
  mkdir -p "$images"
  # 640×480 PNGs (the usual photo shape), each a different smooth pattern.
  python3 - "$images" "$count" <<'PY'
import sys, zlib, struct, math
out, n = sys.argv[1], int(sys.argv[2])
w, h = 640, 480
def png(path, k):
    rows = b''.join(b'\x00' + bytes(v for x in range(w) for v in ((x * 255 // w + k * 7) % 256, (y * 255 // h) % 256, int(127 + 120 * math.sin((x + k) / 40.0)))) for y in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(rows, 6)) + chunk(b'IEND', b''))
for k in range(n): png(f"{out}/{k:04d}.png", k)
PY
fi

for i in $(seq "$runs"); do
  echo "run $i clip-bench:      $(dotnet "$here/bin/clip-bench.dll" images "$model" "$images" "$batch")"
  echo "run $i transformers.js: $(node "$here/transformers-js-images.mjs" "$model" "$images" "$batch")"
done
for n in 100000 1000000; do
  echo "search: $(dotnet "$here/bin/clip-bench.dll" search "$n" 512 200 10)"
done
