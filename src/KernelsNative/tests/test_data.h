// Seeded random matrices and a double-precision dense reference for the kernel tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "sparse24.h"

struct Packed {
  sparse24::Shape shape;
  std::vector<float> values;
  std::vector<uint8_t> masks;
  std::vector<float> dense;  // [K, N], the pruned weights unpacked

  std::vector<uint16_t> values16;  // values rounded to fp16; dense16 is their unpacked form
  std::vector<float> dense16;

  sparse24::Weights weights(const float* bias = nullptr) const {
    return {shape, values.data(), masks.data(), bias};
  }
  sparse24::Weights16 weights16(const float* bias = nullptr) const {
    return {shape, values16.data(), masks.data(), bias};
  }
};

inline std::vector<float> random_floats(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(count);
  for (float& x : out) x = normal(rng);
  return out;
}

inline Packed random_packed(int64_t k, int64_t n, uint32_t seed) {
  Packed p;
  p.shape = {k, n};
  std::vector<float> dense = random_floats(static_cast<size_t>(k * n), seed);
  p.values.resize(static_cast<size_t>(n * p.shape.value_stride()));
  p.masks.resize(static_cast<size_t>(n * p.shape.mask_stride()));
  sparse24::pack(p.shape, dense.data(), p.values.data(), p.masks.data());
  p.dense.resize(dense.size());
  sparse24::unpack(p.shape, p.values.data(), p.masks.data(), p.dense.data());
  std::vector<float> rounded(p.values.size());
  for (float v : p.values) p.values16.push_back(sparse24::float_to_half(v));
  for (size_t i = 0; i < rounded.size(); ++i) rounded[i] = sparse24::half_to_float(p.values16[i]);
  p.dense16.resize(dense.size());
  sparse24::unpack(p.shape, rounded.data(), p.masks.data(), p.dense16.data());
  return p;
}

// ‖y − reference‖₂ / ‖reference‖₂ with the reference summed in double.
inline double relative_error(const Packed& p, const float* a, int64_t m, const float* bias, const std::vector<float>& y,
                             bool fp16 = false) {
  const std::vector<float>& dense = fp16 ? p.dense16 : p.dense;
  double diff = 0, norm = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t n = 0; n < p.shape.n; ++n) {
      double sum = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < p.shape.k; ++k) sum += double(a[r * p.shape.k + k]) * dense[k * p.shape.n + n];
      double d = y[r * p.shape.n + n] - sum;
      diff += d * d;
      norm += sum * sum;
    }
  }
  return std::sqrt(diff / norm);
}
