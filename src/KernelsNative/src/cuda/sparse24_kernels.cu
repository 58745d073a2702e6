// CUDA kernels for SparseMatMul24, in the device layout of launch_shape.h. Built to PTX by
// clang at build time (no CUDA SDK), embedded in libserving_kernels.so, JIT-compiled by the
// driver at load. Never run on a GPU by their authors: see src/KernelsNative/README.md.
//
// The op computes Y[m, n] = Σ_k A[m, k] W[k, n]. Seen as Yᵀ = Wᵀ · Aᵀ, the 2:4-sparse Wᵀ
// ([n, k], sparse along k) is the sparse operand "A" of mma.sp and Aᵀ its dense "B" operand.
#include "device_prelude.h"
#include "launch_shape.h"

using namespace sparse24_launch;

namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ int value_stride(int k) { return (k + 31) / 32 * 16; }
__device__ __forceinline__ int meta_stride(int k) { return (k + 31) / 32 * 2; }

// Decode: one warp per output feature, kGemvRows rows of A per block row. Lane j walks the
// groups j, j + 32, ...: two values (8 contiguous bytes across lanes for fp32) and a nibble.
template <class T>
__device__ __forceinline__ void gemv(const T* values, const uint16_t* meta, const float* bias, const T* a, T* y,
                                     int k, int n, int m) {
  const int lane = threadIdx.x % kWarp;
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarp;
  const int m0 = blockIdx.y * kGemvRows;
  if (row >= n) return;  // whole warps leave together: the shuffles below stay full-warp
  const T* v = values + static_cast<int64_t>(row) * value_stride(k);
  const uint16_t* e = meta + static_cast<int64_t>(row) * meta_stride(k);
  const int rows = m - m0 < kGemvRows ? m - m0 : kGemvRows;
  float acc[kGemvRows] = {};
  for (int c = lane; c < (k + 3) / 4; c += kWarp) {
    const uint32_t nibble = (e[c / 4] >> ((c % 4) * 4)) & 0xF;
    const int k0 = 4 * c + (nibble & 3), k1 = 4 * c + (nibble >> 2);
    const float w0 = device::load(v + 2 * c), w1 = device::load(v + 2 * c + 1);
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r) {
      if (r < rows) {
        const T* ar = a + static_cast<int64_t>(m0 + r) * k;
        acc[r] += w0 * (k0 < k ? device::load(ar + k0) : 0.0f) + w1 * (k1 < k ? device::load(ar + k1) : 0.0f);
      }
    }
  }
  const float b = bias ? bias[row] : 0.0f;
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) {
    if (r < rows) {
      const float total = device::warp_sum(acc[r]);
      if (lane == 0) device::store(y + static_cast<int64_t>(m0 + r) * n + row, total + b);
    }
  }
}

__device__ __forceinline__ uint32_t pack_halves(uint16_t lo, uint16_t hi) { return lo | (static_cast<uint32_t>(hi) << 16); }

// Two consecutive features k, k + 1 of activation row r as the f16x2 register of operand B.
__device__ __forceinline__ uint32_t activation_pair(const uint16_t* a, int k, int m, int r, int kk) {
  if (r >= m) return 0;
  const uint16_t* ar = a + static_cast<int64_t>(r) * k;
  return pack_halves(kk < k ? ar[kk] : 0, kk + 1 < k ? ar[kk + 1] : 0);
}

// Prefill, fp16: each warp owns 16 output features × kMmaColumns rows of A and walks k in
// steps of 32. Fragments (PTX ISA, sparse mma.m16n8k32 .f16; lane = 4·group + quad):
//   sparse operand: registers {row group, row group + 8} × {compressed cols 2·quad, 2·quad + 8}
//   dense operand:  register i holds features 2·quad + 8·i and + 1 of activation row `group`
//   metadata:       quad 0 holds groups 0–3 of rows group / group + 8 (low / high 16 bits),
//                   quad 1 groups 4–7; quads 2 and 3 are ignored under selector 0
//   accumulator:    d0, d1 = (feature group, rows 2·quad, +1), d2, d3 = feature group + 8
__device__ __forceinline__ void mma_tile(const uint16_t* values, const uint16_t* meta, const float* bias,
                                         const uint16_t* a, uint16_t* y, int k, int n, int m) {
  const int lane = threadIdx.x % kWarp, group = lane / 4, quad = lane % 4;
  const int n0 = (blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarp) * kMmaRows;
  const int m0 = blockIdx.y * kMmaColumns;
  if (n0 >= n) return;
  const int rows[2] = {n0 + group, n0 + group + 8};
  float d[kMmaColumns / 8][4] = {};
  for (int step = 0; step < (k + 31) / 32; ++step) {
    uint32_t w[4], e = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = rows[i % 2], col = step * 16 + 2 * quad + 8 * (i / 2);
      w[i] = r < n ? device::load_pair(values + static_cast<int64_t>(r) * value_stride(k) + col) : 0;
    }
    if (quad < 2) {
      // Rows past n carry zero values; 0x4444 (indices 0, 1) keeps their metadata valid.
      const int slot = step * 2 + quad;
      const uint32_t lo = rows[0] < n ? meta[static_cast<int64_t>(rows[0]) * meta_stride(k) + slot] : 0x4444;
      const uint32_t hi = rows[1] < n ? meta[static_cast<int64_t>(rows[1]) * meta_stride(k) + slot] : 0x4444;
      e = lo | (hi << 16);
    }
#pragma unroll
    for (int t = 0; t < kMmaColumns / 8; ++t) {
      uint32_t x[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) x[i] = activation_pair(a, k, m, m0 + 8 * t + group, step * 32 + 2 * quad + 8 * i);
      device::mma_sp_m16n8k32(d[t], w, x, e);
    }
  }
#pragma unroll
  for (int t = 0; t < kMmaColumns / 8; ++t) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int feature = rows[i / 2], r = m0 + 8 * t + 2 * quad + i % 2;
      if (feature < n && r < m) {
        device::store(y + static_cast<int64_t>(r) * n + feature, d[t][i] + (bias ? bias[feature] : 0.0f));
      }
    }
  }
}

}  // namespace

extern "C" __global__ void sparse24_gemv_f32(const float* values, const uint16_t* meta, const float* bias,
                                             const float* a, float* y, int k, int n, int m) {
  gemv(values, meta, bias, a, y, k, n, m);
}

extern "C" __global__ void sparse24_gemv_f16(const uint16_t* values, const uint16_t* meta, const float* bias,
                                             const uint16_t* a, uint16_t* y, int k, int n, int m) {
  gemv(values, meta, bias, a, y, k, n, m);
}

extern "C" __global__ void sparse24_mma_f16(const uint16_t* values, const uint16_t* meta, const float* bias,
                                            const uint16_t* a, uint16_t* y, int k, int n, int m) {
  mma_tile(values, meta, bias, a, y, k, n, m);
}
