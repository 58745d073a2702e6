// CUDA kernels for PagedAttention (include/paged_attention.h), in the launch layout of
// attention_launch.h. Built to PTX by clang with the 2:4 kernels (kernels.cu), run on the
// warp emulator by tests/cuda_attention_test.cpp against the CPU op. Never run on a GPU.
//
// Correctness first, vLLM's v1 decomposition made simpler: one warp per (new token, query
// head); lane l holds dimensions l, l + 32, … of the query and of the fp32 output
// accumulator; keys are visited one at a time in slot order (a warp-wide dot product, then
// the online softmax's running max and sum), so no score vector is ever stored. The new
// tokens' own keys and values are read from k and v (they reach the pool only in
// paged_write_kv_f32, after every warp has read its past).
#include "attention_launch.h"
#include "device_prelude.h"

using namespace paged_launch;

namespace paged_device {

constexpr int kLanes = 32;
constexpr float kLog2e = 1.44269504f;

// The sequence that owns packed row `token`: query_starts is ascending, num_seqs + 1 long.
__device__ __forceinline__ int sequence_of(const int* query_starts, int num_seqs, int token) {
  int lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (query_starts[mid] <= token) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Key (part 0) or value (part 1) of KV head h at logical slot j of sequence s: the pool for
// the past, the call's own k / v rows for the new tokens.
__device__ __forceinline__ const float* slot_vector(const float* kv, const float* pool, const int* table, int past,
                                                    int first_row, int j, int h, int part, int kv_heads, int head_size,
                                                    int block_size) {
  if (j >= past) return kv + static_cast<int64_t>(first_row + j - past) * kv_heads * head_size + h * head_size;
  const int64_t block = table[j / block_size];
  return pool + ((((block * 2 + part) * kv_heads + h) * block_size) + j % block_size) * head_size;
}

}  // namespace paged_device

extern "C" __global__ void paged_attention_f32(const float* q, const float* k, const float* v, const float* pool,
                                               const int* tables, const int* past_lens, const int* query_starts,
                                               float* out, int num_seqs, int num_heads, int kv_heads, int head_size,
                                               int block_size, int table_cols, int window, float scale) {
  using namespace paged_device;
  const int lane = threadIdx.x % kLanes, token = blockIdx.x, head = blockIdx.y;
  const int seq = sequence_of(query_starts, num_seqs, token);
  const int first_row = query_starts[seq], past = past_lens[seq];
  const int last = past + token - first_row;  // this token's logical slot
  const int begin = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
  const int h = head / (num_heads / kv_heads);
  const int* table = tables + static_cast<int64_t>(seq) * table_cols;

  const float* qrow = q + static_cast<int64_t>(token) * num_heads * head_size + head * head_size;
  float qd[kDimsPerLane], acc[kDimsPerLane];
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + kLanes * i;
    qd[i] = d < head_size ? device::load(qrow + d) * scale : 0.0f;
    acc[i] = 0.0f;
  }
  float running_max = -3.0e38f, running_sum = 0.0f;
  for (int j = begin; j <= last; ++j) {
    const float* key = slot_vector(k, pool, table, past, first_row, j, h, 0, kv_heads, head_size, block_size);
    float partial = 0.0f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
      const int d = lane + kLanes * i;
      if (d < head_size) partial += qd[i] * device::load(key + d);
    }
    const float score = device::warp_sum(partial);
    const float next_max = score > running_max ? score : running_max;
    const float keep = device::exp2((running_max - next_max) * kLog2e), p = device::exp2((score - next_max) * kLog2e);
    running_max = next_max;
    running_sum = running_sum * keep + p;
    const float* value = slot_vector(v, pool, table, past, first_row, j, h, 1, kv_heads, head_size, block_size);
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
      const int d = lane + kLanes * i;
      if (d < head_size) acc[i] = acc[i] * keep + p * device::load(value + d);
    }
  }
  float* orow = out + static_cast<int64_t>(token) * num_heads * head_size + head * head_size;
  const float inverse = 1.0f / running_sum;  // the token's own slot is always visible: sum >= 1
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + kLanes * i;
    if (d < head_size) device::store(orow + d, acc[i] * inverse);
  }
}

extern "C" __global__ void paged_write_kv_f32(const float* k, const float* v, float* pool, const int* tables,
                                              const int* past_lens, const int* query_starts, int num_seqs,
                                              int kv_heads, int head_size, int block_size, int table_cols) {
  using namespace paged_device;
  const int lane = threadIdx.x % kLanes, token = blockIdx.x, h = blockIdx.y;
  const int seq = sequence_of(query_starts, num_seqs, token);
  const int slot = past_lens[seq] + token - query_starts[seq];
  const int64_t block = tables[static_cast<int64_t>(seq) * table_cols + slot / block_size];
  const int64_t row = static_cast<int64_t>(token) * kv_heads * head_size + h * head_size;
  float* key = pool + (((block * 2 * kv_heads + h) * block_size) + slot % block_size) * head_size;
  float* value = key + static_cast<int64_t>(kv_heads) * block_size * head_size;
  for (int d = lane; d < head_size; d += kLanes) {
    key[d] = k[row + d];
    value[d] = v[row + d];
  }
}
