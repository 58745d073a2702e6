// The compressed format: validation, reference pack/unpack, packing A for the GEMM path.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>
#include <xmmintrin.h>

#include "sparse24.h"

namespace sparse24 {

namespace {

bool is_valid_nibble(unsigned nibble) {
  return nibble == 0x3 || nibble == 0x5 || nibble == 0x6 || nibble == 0x9 || nibble == 0xA || nibble == 0xC;
}

}  // namespace

std::string validate_masks(const Shape& shape, const uint8_t* masks) {
  const int64_t groups = shape.groups();
  for (int64_t row = 0; row < shape.n; ++row) {
    const uint8_t* bytes = masks + row * shape.mask_stride();
    for (int64_t g = 0; g < groups; ++g) {
      unsigned nibble = (bytes[g / 2] >> ((g % 2) * 4)) & 0xF;
      if (!is_valid_nibble(nibble)) {
        return "row " + std::to_string(row) + ", group " + std::to_string(g) + ": keep-mask 0x" +
               "0123456789abcdef"[nibble] + " does not keep exactly 2 of 4 weights";
      }
    }
    if (groups % 2 == 1 && (bytes[groups / 2] >> 4) != 0) {
      return "row " + std::to_string(row) + ": the padding nibble after the last group is not 0";
    }
  }
  return {};
}

void pack(const Shape& shape, const float* dense, float* values, uint8_t* masks) {
  const int64_t k = shape.k, n = shape.n;
  for (int64_t row = 0; row < n; ++row) {
    float* v = values + row * shape.value_stride();
    uint8_t* bytes = masks + row * shape.mask_stride();
    std::memset(bytes, 0, static_cast<size_t>(shape.mask_stride()));
    for (int64_t g = 0; g < shape.groups(); ++g) {
      float w[4] = {};
      for (int i = 0; i < 4 && 4 * g + i < k; ++i) w[i] = dense[(4 * g + i) * n + row];
      // Keep the two largest magnitudes; ties keep the lower index so packing is deterministic.
      int order[4] = {0, 1, 2, 3};
      std::stable_sort(order, order + 4, [&](int x, int y) { return std::fabs(w[x]) > std::fabs(w[y]); });
      int lo = std::min(order[0], order[1]), hi = std::max(order[0], order[1]);
      v[2 * g] = w[lo];
      v[2 * g + 1] = w[hi];
      bytes[g / 2] |= static_cast<uint8_t>(((1u << lo) | (1u << hi)) << ((g % 2) * 4));
    }
  }
}

void unpack(const Shape& shape, const float* values, const uint8_t* masks, float* dense) {
  const int64_t k = shape.k, n = shape.n;
  std::fill(dense, dense + k * n, 0.0f);
  for (int64_t row = 0; row < n; ++row) {
    const float* v = values + row * shape.value_stride();
    const uint8_t* bytes = masks + row * shape.mask_stride();
    for (int64_t g = 0; g < shape.groups(); ++g) {
      unsigned nibble = (bytes[g / 2] >> ((g % 2) * 4)) & 0xF;
      int slot = 0;
      for (int i = 0; i < 4; ++i) {
        if ((nibble >> i) & 1) {
          if (4 * g + i < k) dense[(4 * g + i) * n + row] = v[2 * g + slot];
          ++slot;
        }
      }
    }
  }
}

AlignedFloats aligned_floats(size_t count) {
  const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
  auto* data = static_cast<float*>(std::aligned_alloc(64, bytes == 0 ? 64 : bytes));
  if (data == nullptr) throw std::bad_alloc();
  return AlignedFloats(data);
}

void chunk_a(const float* a, int64_t m, int64_t k, float* chunked) {
  for (int64_t c = 0; c < k / 16; ++c) {
    for (int64_t i = 0; i < m; ++i) std::memcpy(chunked + (c * m + i) * 16, a + i * k + 16 * c, 16 * sizeof(float));
  }
}

void pack_a_block(const float* a, int64_t m, int64_t k, int64_t m0, int64_t lanes, float* at) {
  const int64_t k4 = (k + 3) / 4 * 4;
  const int64_t rows = std::min(lanes, m - m0);
  // 64 features at a time: the 64 × lanes tile being written (16 KB at 64 lanes) stays in L1;
  // whole rows at once scattered K · lanes floats through L2 (K = 6912, M = 512: 5.7 ms a call).
  // Within it, 4 × 4 blocks transposed in SSE registers (baseline x86-64): a scalar store per
  // float made packing a tenth of a 128-row call at N = 256.
  constexpr int64_t kFeatureTile = 64;
  for (int64_t k0 = 0; k0 < k; k0 += kFeatureTile) {
    const int64_t k1 = std::min(k0 + kFeatureTile, k), k1_4 = k0 + (k1 - k0) / 4 * 4;
    int64_t j = 0;
    for (; j + 4 <= rows; j += 4) {
      const float* src = a + (m0 + j) * k;
      for (int64_t kk = k0; kk < k1_4; kk += 4) {
        __m128 r0 = _mm_loadu_ps(src + kk), r1 = _mm_loadu_ps(src + k + kk);
        __m128 r2 = _mm_loadu_ps(src + 2 * k + kk), r3 = _mm_loadu_ps(src + 3 * k + kk);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(at + kk * lanes + j, r0);
        _mm_storeu_ps(at + (kk + 1) * lanes + j, r1);
        _mm_storeu_ps(at + (kk + 2) * lanes + j, r2);
        _mm_storeu_ps(at + (kk + 3) * lanes + j, r3);
      }
      for (int64_t kk = k1_4; kk < k1; ++kk) {
        for (int64_t r = 0; r < 4; ++r) at[kk * lanes + j + r] = src[r * k + kk];
      }
    }
    for (; j < rows; ++j) {
      const float* src = a + (m0 + j) * k;
      for (int64_t kk = k0; kk < k1; ++kk) at[kk * lanes + j] = src[kk];
    }
    for (int64_t kk = k0; rows < lanes && kk < k1; ++kk) std::fill(at + kk * lanes + rows, at + (kk + 1) * lanes, 0.0f);
  }
  std::fill(at + k * lanes, at + k4 * lanes, 0.0f);
}

GemmPlan Kernels::gemm_plan(int64_t m, int64_t k) const {
  GemmPlan plan;
  const int64_t k4 = (k + 3) / 4 * 4, widest = kMaxGemmVectors * width;
  auto add = [&](int64_t m0, int64_t rows) {
    GemmSegment& s = plan.segments[plan.count++];
    s.vectors = gemm_vectors(rows);
    s.m0 = m0;
    s.rows = rows;
    s.lanes = s.vectors * width;
    s.blocks = (rows + s.lanes - 1) / s.lanes;
    s.block_floats = k4 * s.lanes;
    s.packed_offset = plan.packed_floats;
    plan.packed_floats += s.blocks * s.block_floats;
  };
  const int64_t full = m / widest * widest;
  if (full > 0) add(0, full);
  if (m > full) add(full, m - full);
  return plan;
}

void GemmPlan::pack(const float* a, int64_t k, float* packed, int64_t index) const {
  const GemmSegment& s = segments[index < segments[0].blocks ? 0 : 1];
  const int64_t b = index < segments[0].blocks ? index : index - segments[0].blocks;
  pack_a_block(a + s.m0 * k, s.rows, k, b * s.lanes, s.lanes, packed + s.packed_offset + b * s.block_floats);
}

float half_to_float(uint16_t half) {
  const uint32_t sign = (half & 0x8000u) << 16, exponent = (half >> 10) & 0x1F, mantissa = half & 0x3FF;
  uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf, nan
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal: value = mantissa · 2^-24.
    float value = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return sign ? -value : value;
  }
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

uint16_t float_to_half(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude >= 0x7F800000u) return sign | 0x7C00u | (magnitude > 0x7F800000u ? 0x200u : 0u);
  if (magnitude >= 0x477FF000u) return sign | 0x7C00u;  // rounds past 65504: inf
  if (magnitude < 0x38800000u) {
    // Subnormal or zero: round |value| / 2^-24 to the nearest even integer.
    float scaled;
    uint32_t m = magnitude;
    std::memcpy(&scaled, &m, sizeof scaled);
    return sign | static_cast<uint16_t>(std::nearbyint(scaled * 16777216.0f));
  }
  uint32_t rounded = magnitude + 0xFFFu + ((magnitude >> 13) & 1u);  // nearest even on the 13 dropped bits
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

template <class T>
void matmul(const Kernels& kernels, const WeightsOf<T>& w, const float* a, int64_t m, float* y) {
  const int64_t k = w.shape.k, n = w.shape.n;
  const KernelSet<T>& set = kernels.set(w.values);
  if (m <= kGemvMaxRows) {
    std::vector<float> chunked;
    if (m >= kGemvChunkedRows) {
      chunked.resize(static_cast<size_t>(k / 16 * m * 16));
      chunk_a(a, m, k, chunked.data());
    }
    set.gemv(w, a, chunked.empty() ? nullptr : chunked.data(), m, y, 0, n);
    return;
  }
  const GemmPlan plan = kernels.gemm_plan(m, k);
  AlignedFloats packed = aligned_floats(static_cast<size_t>(plan.packed_floats));
  for (int64_t i = 0; i < plan.total_blocks(); ++i) plan.pack(a, k, packed.get(), i);
  for (int i = 0; i < plan.count; ++i) {
    const GemmSegment& s = plan.segments[i];
    set.gemm[s.vectors - 1](w, packed.get() + s.packed_offset, s.rows, y + s.m0 * n, 0, s.blocks, 0, n);
  }
}

template void matmul<float>(const Kernels&, const Weights&, const float*, int64_t, float*);
template void matmul<uint16_t>(const Kernels&, const Weights16&, const float*, int64_t, float*);

}  // namespace sparse24
