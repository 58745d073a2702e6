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

  sparse24::Weights weights(const float* bias = nullptr) const {
    return {shape, values.data(), masks.data(), bias};
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
  return p;
}

// ‖y − reference‖₂ / ‖reference‖₂ with the reference summed in double.
inline double relative_error(const Packed& p, const float* a, int64_t m, const float* bias, const std::vector<float>& y) {
  double diff = 0, norm = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t n = 0; n < p.shape.n; ++n) {
      double sum = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < p.shape.k; ++k) sum += double(a[r * p.shape.k + k]) * p.dense[k * p.shape.n + n];
      double d = y[r * p.shape.n + n] - sum;
      diff += d * d;
      norm += sum * sum;
    }
  }
  return std::sqrt(diff / norm);
}
