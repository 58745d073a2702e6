// Decoding 4-bit keep-masks, shared by every ISA's kernels (internal header).
#pragma once

#include <cstdint>

#include "sparse24.h"

namespace sparse24::detail {

// Lower and upper kept index of each valid nibble (0x3, 0x5, 0x6, 0x9, 0xA, 0xC); invalid
// nibbles never reach the kernels because the op validates masks at kernel creation.
constexpr int8_t kFirst[16] = {0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0};
constexpr int8_t kSecond[16] = {0, 0, 0, 1, 0, 2, 2, 0, 0, 3, 3, 0, 3, 0, 0, 0};

inline unsigned nibble(const uint8_t* row_masks, int64_t g) {
  return (row_masks[g >> 1] >> ((g & 1) << 2)) & 0xFu;
}

inline float value_at(const float* values, int64_t i) { return values[i]; }
inline float value_at(const uint16_t* values, int64_t i) { return half_to_float(values[i]); }

// Σ over groups [g_begin, g_end) of one weight row against activations a (length k),
// guarding features past k: the scalar tail of the SIMD kernels and the portable kernel.
template <class T>
inline float dot_groups(const T* row_values, const uint8_t* row_masks, const float* a, int64_t g_begin,
                        int64_t g_end, int64_t k) {
  float sum = 0.0f;
  for (int64_t g = g_begin; g < g_end; ++g) {
    unsigned nib = nibble(row_masks, g);
    int64_t k0 = 4 * g + kFirst[nib], k1 = 4 * g + kSecond[nib];
    if (k0 < k) sum += value_at(row_values, 2 * g) * a[k0];
    if (k1 < k) sum += value_at(row_values, 2 * g + 1) * a[k1];
  }
  return sum;
}

// Σ v · at[k] over one weight row for `Lanes` rows of A packed transposed (k < K4, zero-padded).
template <int64_t Lanes, class T>
inline void axpy_groups(const T* row_values, const uint8_t* row_masks, const float* at, int64_t groups,
                        float* acc) {
  for (int64_t g = 0; g < groups; ++g) {
    unsigned nib = nibble(row_masks, g);
    const float* p0 = at + (4 * g + kFirst[nib]) * Lanes;
    const float* p1 = at + (4 * g + kSecond[nib]) * Lanes;
    const float v0 = value_at(row_values, 2 * g), v1 = value_at(row_values, 2 * g + 1);
    for (int64_t j = 0; j < Lanes; ++j) acc[j] += v0 * p0[j] + v1 * p1[j];
  }
}

Kernels portable_kernels();
Kernels avx2_kernels();
Kernels avx512_kernels();

}  // namespace sparse24::detail
