// The SIMD GEMV path (M <= 8, decode), written once over a vector traits type V; included by
// the per-ISA translation units like gemm_tile.h.
//
// Memory-bound: per 16 features a weight row costs 34 bytes (8 kept floats + 2 mask bytes)
// against 64 dense. V::expand16 rebuilds the 16 dense weights in registers (vexpandps on
// AVX-512, a permute table on AVX2); R output rows share every load of the activations.
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

  // Rows [n, n + R) for M rows of A: R · (kRegs + M) weight and accumulator registers plus
  // one activation stay within V::kRegisterBudget.
  template <int M, int R, class T>
  static void block(const WeightsOf<T>& w, const float* a, float* y, int64_t n) {
    const int64_t k = w.shape.k, vs = w.shape.value_stride(), ms = w.shape.mask_stride();
    const int64_t chunks = k / 16;
    Reg acc[R][M];
    for (int r = 0; r < R; ++r)
      for (int i = 0; i < M; ++i) acc[r][i] = V::zero();
    for (int64_t c = 0; c < chunks; ++c) {
      Reg wr[R][kRegs];
      for (int r = 0; r < R; ++r) {
        const T* v = w.values + (n + r) * vs + 8 * c;
        // Every 64-byte line 1 KB ahead: R rows are R streams besides the masks.
        if ((c & (sizeof(T) == 4 ? 1 : 3)) == 0) _mm_prefetch(reinterpret_cast<const char*>(v) + 1024, _MM_HINT_T0);
        V::expand16(v, w.masks + (n + r) * ms + 2 * c, wr[r]);
      }
      for (int i = 0; i < M; ++i) {
        for (int q = 0; q < kRegs; ++q) {
          Reg x = V::load(a + i * k + 16 * c + q * V::kWidth);
          for (int r = 0; r < R; ++r) acc[r][i] = V::fma(wr[r][q], x, acc[r][i]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const T* v = w.values + (n + r) * vs;
      const uint8_t* mk = w.masks + (n + r) * ms;
      const float bias = w.bias ? w.bias[n + r] : 0.0f;
      for (int i = 0; i < M; ++i) {
        float tail = dot_groups(v, mk, a + i * k, chunks * 4, w.shape.groups(), k);
        y[i * w.shape.n + n + r] = V::sum(acc[r][i]) + tail + bias;
      }
    }
  }

  template <int M, class T>
  static void rows(const WeightsOf<T>& w, const float* a, float* y, int64_t n_begin, int64_t n_end) {
    constexpr int R = std::max(1, std::min(4, (V::kRegisterBudget - 1) / (kRegs + M)));
    int64_t n = n_begin;
    for (; n + R <= n_end; n += R) block<M, R, T>(w, a, y, n);
    for (; n < n_end; ++n) block<M, 1, T>(w, a, y, n);
  }

  template <class T>
  static void run(const WeightsOf<T>& w, const float* a, int64_t m, float* y, int64_t n_begin, int64_t n_end) {
    switch (m) {
      case 1: return rows<1, T>(w, a, y, n_begin, n_end);
      case 2: return rows<2, T>(w, a, y, n_begin, n_end);
      case 3: return rows<3, T>(w, a, y, n_begin, n_end);
      case 4: return rows<4, T>(w, a, y, n_begin, n_end);
      case 5: return rows<5, T>(w, a, y, n_begin, n_end);
      case 6: return rows<6, T>(w, a, y, n_begin, n_end);
      case 7: return rows<7, T>(w, a, y, n_begin, n_end);
      default:
        // m == 8 here (callers send at most kGemvMaxRows); larger m is split in 8s.
        for (int64_t i = 0; i < m; i += 8) {
          int64_t rows_left = std::min<int64_t>(8, m - i);
          if (rows_left == 8) {
            rows<8, T>(w, a + i * w.shape.k, y + i * w.shape.n, n_begin, n_end);
          } else {
            run(w, a + i * w.shape.k, rows_left, y + i * w.shape.n, n_begin, n_end);
          }
        }
    }
  }
};

}  // namespace
