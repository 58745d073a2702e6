// Test data of the paged-attention tests (CPU kernels and the CUDA kernels on the warp
// emulator): random activations, a pool with shuffled block tables, Gemma-like shapes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "paged_attention.h"

namespace {

std::vector<float> random_floats(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

struct PoolRun {
  paged::Shape shape;
  std::vector<float> pool;
  std::vector<int32_t> tables;
};

// Each sequence a random permutation of blocks, enough for its whole history.
PoolRun make_run(std::mt19937& rng, paged::Shape shape, int64_t num_seqs, int64_t cols) {
  shape.table_cols = cols;
  shape.num_blocks = num_seqs * cols + 3;
  PoolRun run{shape, random_floats(rng, shape.num_blocks * shape.block_floats()), {}};
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
