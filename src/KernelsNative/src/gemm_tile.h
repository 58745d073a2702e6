// The SIMD GEMM path (M > 8), written once over a vector traits type V (AVX2 or AVX-512).
// Included only by the per-ISA translation units, each compiled with its own -m flags, so
// it lives in an anonymous namespace there (no ODR sharing between ISAs).
//
// A block of NV·V::kWidth rows of A is packed transposed (at[k][j]); for each output column
// n and kept weight v at feature k: acc[j] += v · at[k][j]. Only the kept half of W is
// multiplied, so the FMA count is half of dense; each FMA loads one vector of `at`.
#pragma once

#include <algorithm>
#include <cstdint>
#include <immintrin.h>

#include "nibbles.h"

namespace {

using sparse24::WeightsOf;
using sparse24::detail::kFirst;
using sparse24::detail::kSecond;

// 16 KB of packed A per group block stays in L1 (32 KB on Zen 4) while all the block's
// output columns sweep it: 16 groups at 64 lanes, 64 groups at 16 lanes. From L2 instead,
// the 2 × 4 row loads of every group starved the FMAs (measured ~3x slower at M = 128).
constexpr int64_t kPackedBlockBytes = 16 * 1024;
// 64 columns × up to 64 lanes × 4 B = 16 KB of partial sums, reloaded once per group block.
constexpr int64_t kColumnBlock = 64;

template <class V, int NV, class T>
struct GemmTile {
  static constexpr int64_t kLanes = NV * V::kWidth;
  static constexpr int64_t kGroupBlock = kPackedBlockBytes / (4 * kLanes * sizeof(float));
  using Reg = typename V::Reg;

  // Output columns swept together: their FMA chains are independent, so the 4-cycle FMA
  // latency is hidden even at NV = 1 (M = 16 ran one chain at 1/4 of the FMA rate). At most
  // 4 (8 row pointers in general registers) and 16 accumulators of AVX-512's 32 registers,
  // 8 of AVX2's 16.
  static constexpr int kAccumulators = V::kWidth == 16 ? 16 : 8;
  static constexpr int kColumns = std::max(1, std::min(4, kAccumulators / NV));

  template <int C>
  static void column_block(const WeightsOf<T>& w, const float* at, int64_t g_begin, int64_t g_end, int64_t n,
                           float* out, bool first) {
    const int64_t vs = w.shape.value_stride(), ms = w.shape.mask_stride();
    Reg acc[C][NV];
    const T* v[C];
    const uint8_t* mk[C];
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < NV; ++i) acc[c][i] = first ? V::zero() : V::load(out + c * kLanes + i * V::kWidth);
      v[c] = w.values + (n + c) * vs;
      mk[c] = w.masks + (n + c) * ms;
      // This row's values for the next group block (this pass visits 63 other rows first):
      // without it the 64 interleaved row streams came from DRAM at latency, not bandwidth.
      const char* next = reinterpret_cast<const char*>(v[c] + 2 * g_end);
      for (int64_t line = 0; line < 2 * kGroupBlock * static_cast<int64_t>(sizeof(T)); line += 64) {
        _mm_prefetch(next + line, _MM_HINT_T0);
      }
      _mm_prefetch(reinterpret_cast<const char*>(mk[c] + g_end / 2), _MM_HINT_T0);
    }
    for (int64_t g = g_begin; g < g_end; ++g) {
      for (int c = 0; c < C; ++c) {
        unsigned nib = (mk[c][g >> 1] >> ((g & 1) << 2)) & 0xFu;
        const float* p0 = at + (4 * g + kFirst[nib]) * kLanes;
        const float* p1 = at + (4 * g + kSecond[nib]) * kLanes;
        Reg b0 = V::broadcast(v[c] + 2 * g), b1 = V::broadcast(v[c] + 2 * g + 1);
        for (int i = 0; i < NV; ++i) acc[c][i] = V::fma(b0, V::load(p0 + i * V::kWidth), acc[c][i]);
        for (int i = 0; i < NV; ++i) acc[c][i] = V::fma(b1, V::load(p1 + i * V::kWidth), acc[c][i]);
      }
    }
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < NV; ++i) V::store(out + c * kLanes + i * V::kWidth, acc[c][i]);
    }
  }

  static void columns(const WeightsOf<T>& w, const float* at, int64_t g_begin, int64_t g_end, int64_t n_begin,
                      int64_t n_end, float* partial, bool first) {
    int64_t n = n_begin;
    for (; n + kColumns <= n_end; n += kColumns) {
      column_block<kColumns>(w, at, g_begin, g_end, n, partial + (n - n_begin) * kLanes, first);
    }
    for (; n < n_end; ++n) column_block<1>(w, at, g_begin, g_end, n, partial + (n - n_begin) * kLanes, first);
  }

  static void run(const WeightsOf<T>& w, const float* at, int64_t m_valid, float* y, int64_t n_begin, int64_t n_end) {
    alignas(64) float partial[kColumnBlock * kLanes];
    const int64_t groups = w.shape.groups(), n_total = w.shape.n;
    for (int64_t nb = n_begin; nb < n_end; nb += kColumnBlock) {
      const int64_t ne = std::min(nb + kColumnBlock, n_end);
      for (int64_t gb = 0; gb < groups; gb += kGroupBlock) {
        columns(w, at, gb, std::min(gb + kGroupBlock, groups), nb, ne, partial, gb == 0);
      }
      for (int64_t n = nb; n < ne; ++n) {
        const float* sums = partial + (n - nb) * kLanes;
        const float bias = w.bias ? w.bias[n] : 0.0f;
        for (int64_t j = 0; j < m_valid; ++j) y[j * n_total + n] = sums[j] + bias;
      }
    }
  }
};

}  // namespace
