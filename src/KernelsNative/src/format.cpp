// The compressed format: validation, reference pack/unpack, packing A for the GEMM path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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

void pack_a_block(const float* a, int64_t m, int64_t k, int64_t m0, int64_t lanes, float* at) {
  const int64_t k4 = (k + 3) / 4 * 4;
  std::fill(at, at + k4 * lanes, 0.0f);
  const int64_t rows = std::min(lanes, m - m0);
  for (int64_t j = 0; j < rows; ++j) {
    const float* src = a + (m0 + j) * k;
    for (int64_t kk = 0; kk < k; ++kk) at[kk * lanes + j] = src[kk];
  }
}

void matmul(const Kernels& kernels, const Weights& w, const float* a, int64_t m, float* y) {
  const int64_t k = w.shape.k, n = w.shape.n;
  if (m <= kGemvMaxRows) {
    kernels.gemv(w, a, m, y, 0, n);
    return;
  }
  const int vectors = kernels.gemm_vectors(m);
  const int64_t lanes = vectors * kernels.width;
  std::vector<float> at(static_cast<size_t>((k + 3) / 4 * 4 * lanes));
  for (int64_t m0 = 0; m0 < m; m0 += lanes) {
    pack_a_block(a, m, k, m0, lanes, at.data());
    kernels.gemm[vectors - 1](w, at.data(), std::min(lanes, m - m0), y + m0 * n, 0, n);
  }
}

}  // namespace sparse24
