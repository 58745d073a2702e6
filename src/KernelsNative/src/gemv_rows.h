// The SIMD GEMV path (M <= 8, decode), written once over a vector traits type V; included by
// the per-ISA translation units like gemm_tile.h.
//
// Memory-bound: per 16 features a weight row costs 34 bytes (8 kept floats + 2 mask bytes)
// against 64 dense. V::expand16 rebuilds the 16 dense weights in registers (vexpandps on
// AVX-512, a permute table on AVX2) once for all M rows of A.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

#include "nibbles.h"

namespace {

using sparse24::WeightsOf;
using sparse24::detail::dot_groups;

template <class V>
struct GemvRows {
  static constexpr int kRegs = 16 / V::kWidth;  // registers per 16 features
  using Reg = typename V::Reg;

  // Output row n for M rows of A (`interleaved`: their whole chunks as rows() copies them, or
  // null to read A in place). One row per pass: with 2–4 rows per pass (sharing each
  // activation load) weights streamed from DRAM at a third to a half of the bandwidth on
  // Zen 4 (M = 1: 19 GB/s at one row, 9.9 at two, 2.4 at four; 56 MB of weights cycled).
  template <int M, class T>
  static void row(const WeightsOf<T>& w, const float* a, const float* interleaved, float* y, int64_t n) {
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
        const float* ai = interleaved ? interleaved + (c * M + i) * 16 : a + i * k + 16 * c;
        for (int q = 0; q < kRegs; ++q) acc[i] = V::fma(wr[q], V::load(ai + q * V::kWidth), acc[i]);
      }
    }
    const float bias = w.bias ? w.bias[n] : 0.0f;
    for (int i = 0; i < M; ++i) {
      float tail = dot_groups(v, mk, a + i * k, chunks * 4, w.shape.groups(), k);
      y[i * w.shape.n + n] = V::sum(acc[i]) + tail + bias;
    }
  }

  // From 5 rows of A, each chunk's 16 features of all M rows are first copied next to each
  // other: one sequential stream of A instead of M streams a row of A apart. Single-threaded
  // with the weights from DRAM, 6–8 rows ran 25–35% faster on three of five Gemma shapes
  // (e.g. K = 1024, N = 1152, M = 8: 500 → 375 µs) and no slower on the other two. Each task
  // copies A for itself (M · K floats, ~5% of a 64-row task), into one buffer per thread.
  static float* interleave_buffer(size_t floats) {
    thread_local sparse24::Scratch scratch;
    return scratch.get(floats);
  }

  template <int M, class T>
  static void rows(const WeightsOf<T>& w, const float* a, float* y, int64_t n_begin, int64_t n_end) {
    const float* interleaved = nullptr;
    if (M >= 5) {
      const int64_t k = w.shape.k, chunks = k / 16;
      float* out = interleave_buffer(static_cast<size_t>(chunks * M * 16));
      for (int64_t c = 0; c < chunks; ++c) {
        for (int i = 0; i < M; ++i) std::memcpy(out + (c * M + i) * 16, a + i * k + 16 * c, 16 * sizeof(float));
      }
      interleaved = out;
    }
    for (int64_t n = n_begin; n < n_end; ++n) row<M, T>(w, a, interleaved, y, n);
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
