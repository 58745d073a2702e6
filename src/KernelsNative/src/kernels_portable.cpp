// Portable kernels: any x86-64 (or other) CPU; the fallback when AVX2 is missing.
#include <algorithm>

#include "attention_tile.h"
#include "nibbles.h"

namespace sparse24::detail {

namespace {

constexpr int64_t kWidth = 8;

template <class T>
void gemv(const WeightsOf<T>& w, const float* a, const float*, int64_t m, float* y, int64_t n_begin, int64_t n_end) {
  const Shape& s = w.shape;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const T* v = w.values + n * s.value_stride();
    const uint8_t* mk = w.masks + n * s.mask_stride();
    for (int64_t r = 0; r < m; ++r) {
      float bias = w.bias ? w.bias[n] : 0.0f;
      y[r * s.n + n] = bias + dot_groups(v, mk, a + r * s.k, 0, s.groups(), s.k);
    }
  }
}

template <int64_t Lanes, class T>
void gemm(const WeightsOf<T>& w, const float* packed, int64_t m, float* y, int64_t b_begin, int64_t b_end,
          int64_t n_begin, int64_t n_end) {
  const Shape& s = w.shape;
  const int64_t block_floats = s.groups() * 4 * Lanes;
  for (int64_t b = b_begin; b < b_end; ++b) {
    const int64_t m0 = b * Lanes, rows = std::min(Lanes, m - m0);
    for (int64_t n = n_begin; n < n_end; ++n) {
      float acc[Lanes] = {};
      axpy_groups<Lanes, T>(w.values + n * s.value_stride(), w.masks + n * s.mask_stride(), packed + b * block_floats,
                            s.groups(), acc);
      float bias = w.bias ? w.bias[n] : 0.0f;
      for (int64_t j = 0; j < rows; ++j) y[(m0 + j) * s.n + n] = acc[j] + bias;
    }
  }
}

}  // namespace

template <class T>
KernelSet<T> portable_set() {
  return {gemv<T>, {gemm<kWidth, T>, gemm<2 * kWidth, T>, gemm<3 * kWidth, T>, gemm<4 * kWidth, T>}};
}

Kernels portable_kernels() { return {Isa::Portable, portable_set<float>(), portable_set<uint16_t>(), kWidth}; }

}  // namespace sparse24::detail

namespace paged::detail {

namespace {

// Eight floats the compiler may keep in SSE registers: the attention kernel's traits on a CPU
// without AVX2.
struct Portable {
  static constexpr int64_t kWidth = 8;
  struct Reg {
    float x[8];
  };
  static Reg zero() { return Reg{}; }
  static Reg load(const float* p) {
    Reg r;
    for (int i = 0; i < 8; ++i) r.x[i] = p[i];
    return r;
  }
  static void store(float* p, const Reg& r) {
    for (int i = 0; i < 8; ++i) p[i] = r.x[i];
  }
  // fp16: the format's scalar conversions (round to nearest even).
  static Reg load(const uint16_t* p) {
    Reg r;
    for (int i = 0; i < 8; ++i) r.x[i] = sparse24::half_to_float(p[i]);
    return r;
  }
  static void store(uint16_t* p, const Reg& r) {
    for (int i = 0; i < 8; ++i) p[i] = sparse24::float_to_half(r.x[i]);
  }
  static Reg broadcast(const float* p) {
    Reg r;
    for (int i = 0; i < 8; ++i) r.x[i] = *p;
    return r;
  }
  static Reg fma(const Reg& a, const Reg& b, Reg c) {
    for (int i = 0; i < 8; ++i) c.x[i] += a.x[i] * b.x[i];
    return c;
  }
  static float sum(const Reg& r) {
    float s = 0.0f;
    for (int i = 0; i < 8; ++i) s += r.x[i];
    return s;
  }
};

}  // namespace

Kernels portable_kernels() { return kernel::kernels<Portable>(); }

}  // namespace paged::detail
