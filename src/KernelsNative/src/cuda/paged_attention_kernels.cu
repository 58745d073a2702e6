// CUDA kernels for PagedAttention (include/paged_attention.h), in the launch layout of
// attention_launch.h. Built to PTX by clang with the 2:4 kernels (kernels.cu), run on the
// warp emulator by tests/cuda_attention_test.cpp against the CPU op. Never run on a GPU.
//
// Correctness first, vLLM's v1 decomposition made simpler: one warp per (new token, query
// head); lane l holds dimensions l, l + 32, … of the query and of the fp32 output
// accumulator; keys are visited one at a time in slot order (a warp-wide dot product, then
// the online softmax's running max and sum), so no score vector is ever stored. The new
// tokens' own keys and values are read from k and v (they reach the pool only in
// paged_write_kv_*, after every warp has read its past). Each kernel comes for an fp32 pool
// (_f32) and an fp16 pool (_f16: halves widened with cvt.f32.f16 on read, the call's own rows
// rounded with cvt.rn.f16.f32 like the stored ones); q, k, v and out are fp32 in both.
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

// Element d of a key or value row as fp32, as a pool of element type T holds it: a pool row
// is read (an fp16 one widened); the call's own fp32 rows are rounded through fp16 first when
// the pool is fp16, so they match what paged_write_kv_f16 will store.
__device__ __forceinline__ float element(const float* row, const float*) { return device::load(row); }
__device__ __forceinline__ float element(const uint16_t* row, const uint16_t*) { return device::load(row); }
__device__ __forceinline__ float element(const float* row, const uint16_t*) {
  return device::half_to_float(device::float_to_half(device::load(row)));
}

// The lane's share of q · row over its dimensions (qd already scaled).
template <class R, class T>
__device__ __forceinline__ float lane_dot(const float (&qd)[kDimsPerLane], const R* row, const T* pool, int head_size) {
  const int lane = threadIdx.x % kLanes;
  float partial = 0.0f;
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + kLanes * i;
    if (d < head_size) partial += qd[i] * element(row + d, pool);
  }
  return partial;
}

// acc = acc · keep + p · row over the lane's dimensions.
template <class R, class T>
__device__ __forceinline__ void lane_accumulate(float (&acc)[kDimsPerLane], float keep, float p, const R* row,
                                                const T* pool, int head_size) {
  const int lane = threadIdx.x % kLanes;
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + kLanes * i;
    if (d < head_size) acc[i] = acc[i] * keep + p * element(row + d, pool);
  }
}

// Where the key (part 0) or value (part 1) of KV head h at logical slot j lives: the call's
// own k / v row for the new tokens, else the pool.
__device__ __forceinline__ const float* fresh_row(const float* kv, int first_row, int j, int past, int h, int kv_heads,
                                                  int head_size) {
  return kv + static_cast<int64_t>(first_row + j - past) * kv_heads * head_size + h * head_size;
}

template <class T>
__device__ __forceinline__ const T* pool_row(const T* pool, const int* table, int j, int h, int part, int kv_heads,
                                             int head_size, int block_size) {
  const int64_t block = table[j / block_size];
  return pool + ((((block * 2 + part) * kv_heads + h) * block_size) + j % block_size) * head_size;
}

// f(row) on the slot's row. An fp32 pool selects one float pointer (the loop after it is the
// same for both sources); an fp16 pool's rows differ in type, so it branches, once per slot
// and uniformly across the warp.
template <class F>
__device__ __forceinline__ auto with_slot(F f, const float* kv, const float* pool, const int* table, int past,
                                          int first_row, int j, int h, int part, int kv_heads, int head_size,
                                          int block_size) {
  return f(j >= past ? fresh_row(kv, first_row, j, past, h, kv_heads, head_size)
                     : pool_row(pool, table, j, h, part, kv_heads, head_size, block_size));
}

template <class F>
__device__ __forceinline__ auto with_slot(F f, const float* kv, const uint16_t* pool, const int* table, int past,
                                          int first_row, int j, int h, int part, int kv_heads, int head_size,
                                          int block_size) {
  if (j >= past) return f(fresh_row(kv, first_row, j, past, h, kv_heads, head_size));
  return f(pool_row(pool, table, j, h, part, kv_heads, head_size, block_size));
}

// One warp per (new token, query head) over a pool of element type T.
template <class T>
__device__ __forceinline__ void attend(const float* q, const float* k, const float* v, const T* pool, const int* tables,
                                       const int* past_lens, const int* query_starts, float* out, int num_seqs,
                                       int num_heads, int kv_heads, int head_size, int block_size, int table_cols,
                                       int window, float scale) {
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
    const float partial = with_slot([&](const auto* row) { return lane_dot(qd, row, pool, head_size); }, k, pool, table,
                                    past, first_row, j, h, 0, kv_heads, head_size, block_size);
    const float score = device::warp_sum(partial);
    const float next_max = score > running_max ? score : running_max;
    const float keep = device::exp2((running_max - next_max) * kLog2e), p = device::exp2((score - next_max) * kLog2e);
    running_max = next_max;
    running_sum = running_sum * keep + p;
    with_slot([&](const auto* row) { lane_accumulate(acc, keep, p, row, pool, head_size); }, v, pool, table, past,
              first_row, j, h, 1, kv_heads, head_size, block_size);
  }
  float* orow = out + static_cast<int64_t>(token) * num_heads * head_size + head * head_size;
  const float inverse = 1.0f / running_sum;  // the token's own slot is always visible: sum >= 1
#pragma unroll
  for (int i = 0; i < kDimsPerLane; ++i) {
    const int d = lane + kLanes * i;
    if (d < head_size) device::store(orow + d, acc[i] * inverse);
  }
}

// One warp per (new token, KV head): its k and v rows into their pool slot (fp16: rounded to
// nearest even by device::store).
template <class T>
__device__ __forceinline__ void write_kv(const float* k, const float* v, T* pool, const int* tables,
                                         const int* past_lens, const int* query_starts, int num_seqs, int kv_heads,
                                         int head_size, int block_size, int table_cols) {
  const int lane = threadIdx.x % kLanes, token = blockIdx.x, h = blockIdx.y;
  const int seq = sequence_of(query_starts, num_seqs, token);
  const int slot = past_lens[seq] + token - query_starts[seq];
  const int64_t block = tables[static_cast<int64_t>(seq) * table_cols + slot / block_size];
  const int64_t row = static_cast<int64_t>(token) * kv_heads * head_size + h * head_size;
  T* key = pool + (((block * 2 * kv_heads + h) * block_size) + slot % block_size) * head_size;
  T* value = key + static_cast<int64_t>(kv_heads) * block_size * head_size;
  for (int d = lane; d < head_size; d += kLanes) {
    device::store(key + d, k[row + d]);
    device::store(value + d, v[row + d]);
  }
}

}  // namespace paged_device

extern "C" __global__ void paged_attention_f32(const float* q, const float* k, const float* v, const float* pool,
                                               const int* tables, const int* past_lens, const int* query_starts,
                                               float* out, int num_seqs, int num_heads, int kv_heads, int head_size,
                                               int block_size, int table_cols, int window, float scale) {
  paged_device::attend(q, k, v, pool, tables, past_lens, query_starts, out, num_seqs, num_heads, kv_heads, head_size,
                       block_size, table_cols, window, scale);
}

extern "C" __global__ void paged_attention_f16(const float* q, const float* k, const float* v, const uint16_t* pool,
                                               const int* tables, const int* past_lens, const int* query_starts,
                                               float* out, int num_seqs, int num_heads, int kv_heads, int head_size,
                                               int block_size, int table_cols, int window, float scale) {
  paged_device::attend(q, k, v, pool, tables, past_lens, query_starts, out, num_seqs, num_heads, kv_heads, head_size,
                       block_size, table_cols, window, scale);
}

extern "C" __global__ void paged_write_kv_f32(const float* k, const float* v, float* pool, const int* tables,
                                              const int* past_lens, const int* query_starts, int num_seqs,
                                              int kv_heads, int head_size, int block_size, int table_cols) {
  paged_device::write_kv(k, v, pool, tables, past_lens, query_starts, num_seqs, kv_heads, head_size, block_size,
                         table_cols);
}

extern "C" __global__ void paged_write_kv_f16(const float* k, const float* v, uint16_t* pool, const int* tables,
                                              const int* past_lens, const int* query_starts, int num_seqs,
                                              int kv_heads, int head_size, int block_size, int table_cols) {
  paged_device::write_kv(k, v, pool, tables, past_lens, query_starts, num_seqs, kv_heads, head_size, block_size,
                         table_cols);
}
