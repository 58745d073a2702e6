// The SIMD GEMV path (M <= 8, decode), written once over a vector traits type V; included by
// the per-ISA translation units like gemm_tile.h.
//
// Memory-bound: per 16 features a weight row costs 34 bytes (8 kept floats + 2 mask bytes)
// against 64 dense. V::expand16 rebuilds the 16 dense weights in registers (vexpandps on
// AVX-512, a permute table on AVX2) once for all M rows of A.
#pragma once

#include <algorithm>
#include <cstdint>
#include <immintrin.h>

#include "nibbles.h"

namespace {

using sparse24::WeightsOf;
using sparse24::detail::dot_groups;

template <class V>
struct GemvRows {
  static constexpr int kRegs = 16 / V::kWidth;  // registers per 16 features
  using Reg = typename V::Reg;

  // Output row n for M rows of A (`chunked`: their whole chunks as sparse24::chunk_a copies
  // them, or null to read A in place). One row per pass: with 2–4 rows per pass (sharing each
  // activation load) weights streamed from DRAM at a third to a half of the bandwidth on
  // Zen 4 (M = 1: 19 GB/s at one row, 9.9 at two, 2.4 at four; 56 MB of weights cycled).
  template <int M, class T>
  static void row(const WeightsOf<T>& w, const float* a, const float* chunked, float* y, int64_t n) {
    const int64_t k = w.shape.k, chunks = k / 16;
    const T* v = w.values + n * w.shape.value_stride();
    const uint8_t* mk = w.masks + n * w.shape.mask_stride();
    Reg acc[M];
    for (int i = 0; i < M; ++i) acc[i] = V::zero();
    for (int64_t c = 0; c < chunks; ++c) {
      // Every 64-byte line of values, 1 KB ahead into L1 and 4 KB ahead into L2. The L2 leg
      // matters once a row of A outgrows L1 beside the weight stream: at K = 6912 its loads
      // missed L1 and the weights streamed at 11 GB/s instead of 16 (single thread, Zen 4).
      if ((c & (sizeof(T) == 4 ? 1 : 3)) == 0) {
        _mm_prefetch(reinterpret_cast<const char*>(v + 8 * c) + 1024, _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(v + 8 * c) + 4096, _MM_HINT_T1);
      }
      Reg wr[kRegs];
      V::expand16(v + 8 * c, mk + 2 * c, wr);
      for (int i = 0; i < M; ++i) {
        const float* ai = chunked ? chunked + (c * M + i) * 16 : a + i * k + 16 * c;
        for (int q = 0; q < kRegs; ++q) acc[i] = V::fma(wr[q], V::load(ai + q * V::kWidth), acc[i]);
      }
    }
    const float bias = w.bias ? w.bias[n] : 0.0f;
    for (int i = 0; i < M; ++i) {
      float tail = dot_groups(v, mk, a + i * k, chunks * 4, w.shape.groups(), k);
      y[i * w.shape.n + n] = V::sum(acc[i]) + tail + bias;
    }
  }

  template <int M, class T>
  static void rows(const WeightsOf<T>& w, const float* a, const float* chunked, float* y, int64_t n_begin,
                   int64_t n_end) {
    for (int64_t n = n_begin; n < n_end; ++n) row<M, T>(w, a, chunked, y, n);
  }

  // `chunked`: A as sparse24::chunk_a copies it, from kGemvChunkedRows rows (null below).
  // Single-threaded with the weights from DRAM, 6–8 rows ran 25–35% faster reading it on
  // three of five Gemma shapes (K = 1024, N = 1152, M = 8: 500 → 375 µs), no slower on the
  // other two.
  template <class T>
  static void run(const WeightsOf<T>& w, const float* a, const float* chunked, int64_t m, float* y, int64_t n_begin,
                  int64_t n_end) {
    switch (m) {  // 1 <= m <= kGemvMaxRows
      case 1: return rows<1, T>(w, a, nullptr, y, n_begin, n_end);
      case 2: return rows<2, T>(w, a, nullptr, y, n_begin, n_end);
      case 3: return rows<3, T>(w, a, nullptr, y, n_begin, n_end);
      case 4: return rows<4, T>(w, a, nullptr, y, n_begin, n_end);
      case 5: return rows<5, T>(w, a, chunked, y, n_begin, n_end);
      case 6: return rows<6, T>(w, a, chunked, y, n_begin, n_end);
      case 7: return rows<7, T>(w, a, chunked, y, n_begin, n_end);
      default: return rows<8, T>(w, a, chunked, y, n_begin, n_end);
    }
  }
};

}  // namespace
