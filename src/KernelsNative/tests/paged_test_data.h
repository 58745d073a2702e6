// Test data of the paged-attention tests (CPU kernels and the CUDA kernels on the warp
// emulator): random activations, a pool (fp32 or fp16) with shuffled block tables, Gemma-like
// shapes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

#include "paged_attention.h"

namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Values as a pool of element type T holds them: fp32 as is, fp16 rounded to nearest even.
inline std::vector<float> as_stored(const std::vector<float>& values, const float*) { return values; }
inline std::vector<uint16_t> as_stored(const std::vector<float>& values, const uint16_t*) {
  std::vector<uint16_t> halves(values.size());
  for (size_t i = 0; i < values.size(); ++i) halves[i] = sparse24::float_to_half(values[i]);
  return halves;
}

// fp32 values rounded through fp16 when T is uint16_t: what the kernels attend to.
template <class T>
std::vector<float> rounded(const std::vector<float>& values) {
  std::vector<float> out(values);
  if constexpr (!std::is_same_v<T, float>) {
    for (float& x : out) x = sparse24::half_to_float(sparse24::float_to_half(x));
  }
  return out;
}

// T: the pool's element type (float, or uint16_t fp16 bits).
template <class T>
struct PoolRunOf {
  paged::Shape shape;
  std::vector<T> pool;
  std::vector<int32_t> tables;
};
using PoolRun = PoolRunOf<float>;

// Each sequence a random permutation of blocks, enough for its whole history.
template <class T = float>
PoolRunOf<T> make_run(std::mt19937& rng, paged::Shape shape, int64_t num_seqs, int64_t cols) {
  shape.table_cols = cols;
  shape.num_blocks = num_seqs * cols + 3;
  PoolRunOf<T> run{shape, as_stored(random_floats(rng, shape.num_blocks * shape.block_elements()), static_cast<T*>(nullptr)), {}};
  std::vector<int32_t> blocks(shape.num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  run.tables.assign(blocks.begin(), blocks.begin() + num_seqs * cols);
  return run;
}

paged::Shape gemma_like(int64_t heads, int64_t kv_heads, int64_t head_size, int64_t block, int64_t window) {
  paged::Shape s;
  s.num_heads = heads;
  s.kv_heads = kv_heads;
  s.head_size = head_size;
  s.block_size = block;
  s.window = window;
  s.scale = 1.0f / std::sqrt(static_cast<float>(head_size));
  return s;
}

}  // namespace
