// The SIMD GEMM path (M > 8), written once over a vector traits type V (AVX2 or AVX-512).
// Included only by the per-ISA translation units, each compiled with its own -m flags, so
// it lives in an anonymous namespace there (no ODR sharing between ISAs).
//
// A is packed in blocks of NV·V::kWidth rows, transposed (at[k][j]); for each output column
// n and kept weight v at feature k: acc[j] += v · at[k][j]. Only the kept half of W is
// multiplied, so the FMA count is half of dense; each FMA loads one vector of `at`.
//
// Work is tiled as (64 output columns × one group block) outer, blocks of A inner: the
// keep-masks of the tile are decoded once into byte offsets within a packed tile and reused
// by every block of A, so the FMA loop is loads and FMAs only. Decoding in the FMA loop
// (byte load, shift, two table lookups, address arithmetic per kept pair) cost a third of
// the time at M = 128 on Zen 4.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

#include "nibbles.h"

namespace {

using sparse24::WeightsOf;
using sparse24::detail::kFirst;
using sparse24::detail::kSecond;

// 16 KB of packed A per group block stays in L1 (32 KB on Zen 4) while all the tile's
// output columns sweep it: 16 groups at 64 lanes, 64 groups at 16 lanes. Offsets within it
// fit 16 bits. (8 and 32 KB, and 32 or 128 columns, measured slower.)
constexpr int64_t kPackedBlockBytes = 16 * 1024;
// 64 columns × up to 64 lanes × 4 B = 16 KB of partial sums per block of A.
constexpr int64_t kColumnBlock = 64;

template <class V, int NV, class T>
struct GemmTile {
  static constexpr int64_t kLanes = NV * V::kWidth;
  static constexpr int64_t kRowBytes = kLanes * sizeof(float);  // one feature of the packed tile
  // Even, so each group block starts on a mask byte.
  static constexpr int64_t kGroupBlock = kPackedBlockBytes / (4 * kRowBytes) / 2 * 2;
  using Reg = typename V::Reg;

  // Output columns swept together: their FMA chains are independent, so the 4-cycle FMA
  // latency is hidden even at NV = 1. At most 4 and 16 accumulators of AVX-512's 32
  // registers, 8 of AVX2's 16.
  static constexpr int kAccumulators = V::kWidth == 16 ? 16 : 8;
  static constexpr int kColumns = std::max(1, std::min(4, kAccumulators / NV));

  // The tile's decoded masks: for column c and kept weight i of group g (relative to the
  // group block), the byte offset of its feature's row in the packed tile.
  struct Offsets {
    uint16_t at[kColumnBlock][2 * kGroupBlock];

    // One mask byte (two groups) → the rows of its four kept features, as four 16-bit lanes.
    struct PairTable {
      uint64_t rows[256];
      constexpr PairTable() : rows() {
        for (unsigned byte = 0; byte < 256; ++byte) {
          const unsigned lo = byte & 0xF, hi = byte >> 4;
          const uint64_t features[4] = {static_cast<uint64_t>(kFirst[lo]), static_cast<uint64_t>(kSecond[lo]),
                                        4u + kFirst[hi], 4u + kSecond[hi]};
          for (int i = 0; i < 4; ++i) rows[byte] |= features[i] * kRowBytes << (16 * i);
        }
      }
    };
    static constexpr PairTable kPairs{};

    // Groups [g_begin, g_end) of columns [n_begin, n_end); g_begin is even (a mask byte).
    void decode(const WeightsOf<T>& w, int64_t n_begin, int64_t n_end, int64_t g_begin, int64_t g_end) {
      const int64_t ms = w.shape.mask_stride(), bytes = (g_end - g_begin + 1) / 2;
      constexpr uint64_t kPairStep = 8 * kRowBytes * 0x0001000100010001ull;
      for (int64_t n = n_begin; n < n_end; ++n) {
        const uint8_t* mk = w.masks + n * ms + g_begin / 2;
        // The next tile's values and masks of this row, a tile ahead: 64 interleaved row
        // streams are too many for the hardware prefetcher, and the weights come from DRAM.
        // Values into L2 only: a tile's values are 8–32 KB, and into L1 they evicted the
        // packed A and partial sums being swept (gemma3-1b at M = 128: 0.97x–1.15x of dense
        // with L1, 1.10x–1.32x with L2, two runs each).
        const char* next = reinterpret_cast<const char*>(w.values + n * w.shape.value_stride() + 2 * g_end);
        for (int64_t line = 0; line < 2 * kGroupBlock * static_cast<int64_t>(sizeof(T)); line += 64) {
          _mm_prefetch(next + line, _MM_HINT_T1);
        }
        _mm_prefetch(reinterpret_cast<const char*>(mk + bytes), _MM_HINT_T0);
        uint64_t base = 0;
        for (int64_t i = 0; i < bytes; ++i, base += kPairStep) {
          const uint64_t rows = kPairs.rows[mk[i]] + base;
          std::memcpy(at[n - n_begin] + 4 * i, &rows, sizeof rows);
        }
      }
    }
  };

  // Bytes of the next tile each column block prefetches: the whole tile over a full sweep.
  static constexpr int64_t kNextSlice = kPackedBlockBytes * kColumns / kColumnBlock;

  template <int C>
  static void column_block(const WeightsOf<T>& w, const Offsets& offsets, const char* at, int64_t g_begin,
                           int64_t g_end, int64_t n, int64_t c0, float* out, bool first, const char* next) {
    // A slice of the next sweep's packed tile into L2: from L3 on demand, the sweep's first
    // column block stalled on every row of it.
    for (int64_t line = 0; line < kNextSlice; line += 64) _mm_prefetch(next + line, _MM_HINT_T1);
    const int64_t vs = w.shape.value_stride(), count = g_end - g_begin;
    Reg acc[C][NV];
    const T* v[C];
    const uint16_t* off[C];
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < NV; ++i) acc[c][i] = first ? V::zero() : V::load(out + c * kLanes + i * V::kWidth);
      v[c] = w.values + (n + c) * vs + 2 * g_begin;
      off[c] = offsets.at[c0 + c];
    }
    for (int64_t g = 0; g < count; ++g) {
      for (int c = 0; c < C; ++c) {
        const float* p0 = reinterpret_cast<const float*>(at + off[c][2 * g]);
        const float* p1 = reinterpret_cast<const float*>(at + off[c][2 * g + 1]);
        Reg b0 = V::broadcast(v[c] + 2 * g), b1 = V::broadcast(v[c] + 2 * g + 1);
        for (int i = 0; i < NV; ++i) acc[c][i] = V::fma(b0, V::load(p0 + i * V::kWidth), acc[c][i]);
        for (int i = 0; i < NV; ++i) acc[c][i] = V::fma(b1, V::load(p1 + i * V::kWidth), acc[c][i]);
      }
    }
    for (int c = 0; c < C; ++c) {
      for (int i = 0; i < NV; ++i) V::store(out + c * kLanes + i * V::kWidth, acc[c][i]);
    }
  }

  // Columns [n_begin, n_end) (at most kColumnBlock) of one group block for one block of A;
  // `next` is the packed tile the following sweep reads.
  static void columns(const WeightsOf<T>& w, const Offsets& offsets, const char* at, int64_t g_begin, int64_t g_end,
                      int64_t n_begin, int64_t n_end, float* partial, bool first, const char* next) {
    int64_t n = n_begin;
    for (; n + kColumns <= n_end; n += kColumns, next += kNextSlice) {
      column_block<kColumns>(w, offsets, at, g_begin, g_end, n, n - n_begin, partial + (n - n_begin) * kLanes, first,
                             next);
    }
    for (; n < n_end; ++n) {
      column_block<1>(w, offsets, at, g_begin, g_end, n, n - n_begin, partial + (n - n_begin) * kLanes, first, next);
    }
  }

  // Y rows [0, rows) × columns [nb, ne) (+ bias) from the tile's sums ([column][lane]):
  // 4 × 4 blocks transposed in SSE registers. Column by column, the stores (a row of Y apart,
  // 4 KB at N = 1024) all fell in one L1 set and took a fifth of the time; scalar row by row,
  // still ~5% of a 128-row call at K = 640.
  static void store(const WeightsOf<T>& w, const float* sums, int64_t rows, float* y, int64_t nb, int64_t ne) {
    const int64_t n_total = w.shape.n;
    auto bias = [&](int64_t n) { return w.bias ? w.bias[n] : 0.0f; };
    int64_t n = nb;
    for (; n + 4 <= ne; n += 4) {
      const float* col = sums + (n - nb) * kLanes;
      const __m128 b = w.bias ? _mm_loadu_ps(w.bias + n) : _mm_setzero_ps();
      int64_t j = 0;
      for (; j + 4 <= rows; j += 4) {
        __m128 r0 = _mm_loadu_ps(col + j), r1 = _mm_loadu_ps(col + kLanes + j);
        __m128 r2 = _mm_loadu_ps(col + 2 * kLanes + j), r3 = _mm_loadu_ps(col + 3 * kLanes + j);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(y + j * n_total + n, _mm_add_ps(r0, b));
        _mm_storeu_ps(y + (j + 1) * n_total + n, _mm_add_ps(r1, b));
        _mm_storeu_ps(y + (j + 2) * n_total + n, _mm_add_ps(r2, b));
        _mm_storeu_ps(y + (j + 3) * n_total + n, _mm_add_ps(r3, b));
      }
      for (; j < rows; ++j) {
        for (int64_t c = 0; c < 4; ++c) y[j * n_total + n + c] = col[c * kLanes + j] + bias(n + c);
      }
    }
    for (; n < ne; ++n) {
      for (int64_t j = 0; j < rows; ++j) y[j * n_total + n] = sums[(n - nb) * kLanes + j] + bias(n);
    }
  }

  static void run(const WeightsOf<T>& w, const float* packed, int64_t m, float* y, int64_t b_begin, int64_t b_end,
                  int64_t n_begin, int64_t n_end) {
    const int64_t groups = w.shape.groups(), n_total = w.shape.n, blocks = b_end - b_begin;
    const int64_t block_floats = groups * 4 * kLanes;
    thread_local Offsets offsets;
    thread_local sparse24::Scratch scratch;
    float* const partials = scratch.get(static_cast<size_t>(blocks * kColumnBlock * kLanes));
    // The packed tile of group block gb in block b of this call's run.
    auto tile = [&](int64_t gb, int64_t b) {
      return reinterpret_cast<const char*>(packed + (b_begin + b) * block_floats + 4 * gb * kLanes);
    };
    for (int64_t nb = n_begin; nb < n_end; nb += kColumnBlock) {
      const int64_t ne = std::min(nb + kColumnBlock, n_end);
      for (int64_t gb = 0; gb < groups; gb += kGroupBlock) {
        const int64_t ge = std::min(gb + kGroupBlock, groups);
        offsets.decode(w, nb, ne, gb, ge);
        for (int64_t b = 0; b < blocks; ++b) {
          const bool last = b + 1 == blocks;
          const int64_t next_gb = !last ? gb : (ge < groups ? ge : 0), next_b = !last ? b + 1 : 0;
          columns(w, offsets, tile(gb, b), gb, ge, nb, ne, partials + b * kColumnBlock * kLanes, gb == 0,
                  tile(next_gb, next_b));
        }
      }
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t m0 = (b_begin + b) * kLanes;
        store(w, partials + b * kColumnBlock * kLanes, std::min(kLanes, m - m0), y + m0 * n_total, nb, ne);
      }
    }
  }
};

}  // namespace
