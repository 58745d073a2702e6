// Portable kernels: any x86-64 (or other) CPU; the fallback when AVX2 is missing.
#include <algorithm>

#include "nibbles.h"

namespace sparse24::detail {

namespace {

constexpr int64_t kWidth = 8;

void gemv(const Weights& w, const float* a, int64_t m, float* y, int64_t n_begin, int64_t n_end) {
  const Shape& s = w.shape;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const float* v = w.values + n * s.value_stride();
    const uint8_t* mk = w.masks + n * s.mask_stride();
    for (int64_t r = 0; r < m; ++r) {
      float bias = w.bias ? w.bias[n] : 0.0f;
      y[r * s.n + n] = bias + dot_groups(v, mk, a + r * s.k, 0, s.groups(), s.k);
    }
  }
}

template <int64_t Lanes>
void gemm(const Weights& w, const float* at, int64_t m_valid, float* y, int64_t n_begin, int64_t n_end) {
  const Shape& s = w.shape;
  for (int64_t n = n_begin; n < n_end; ++n) {
    float acc[Lanes] = {};
    axpy_groups<Lanes>(w.values + n * s.value_stride(), w.masks + n * s.mask_stride(), at, s.groups(), acc);
    float bias = w.bias ? w.bias[n] : 0.0f;
    for (int64_t j = 0; j < m_valid; ++j) y[j * s.n + n] = acc[j] + bias;
  }
}

}  // namespace

Kernels portable_kernels() {
  return {Isa::Portable, gemv, {gemm<kWidth>, gemm<2 * kWidth>, gemm<3 * kWidth>, gemm<4 * kWidth>}, kWidth};
}

}  // namespace sparse24::detail
