// The paged-attention task kernel and KV write for one SIMD ISA from its vector traits V (the
// traits of the 2:4 kernels: zero, load, store, broadcast, fma, sum, kWidth; load and store
// also take fp16 bits, widening and rounding to nearest even). Included by
// kernels_portable.cpp, kernels_avx2.cpp and kernels_avx512.cpp, so each ISA's flags apply.
// Templated on the pool's element type T (float or uint16_t fp16 bits) and, below, the key
// row type K: an fp32 pool runs exactly the loops it always did, an fp16 pool the same loops
// with every key and value load a widening load (F16C's vcvtph2ps on AVX2 and AVX-512), so
// its keys stream from memory at half the bytes.
//
// Flash-attention on the CPU: keys are taken kKeysPerChunk at a time; every query row of the
// task scores the chunk (each key is loaded once into L1 and dotted with all rows), then the
// online softmax rescales the row's accumulator once per chunk, not once per key. No
// [rows × keys] score matrix is ever made: a 512-token chunk over an 8k context holds
// 8 rows × 64 scores per task.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

#include "fast_exp.h"
#include "paged_attention.h"

namespace paged::kernel {

// A pool element as fp32 (the scalar tails).
inline float widen(float x) { return x; }
inline float widen(uint16_t half) { return sparse24::half_to_float(half); }

template <class V, class K>
inline float dot(const float* a, const K* b, int64_t n) {
  constexpr int64_t W = V::kWidth;
  typename V::Reg s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = V::fma(V::load(a + i), V::load(b + i), s0);
    s1 = V::fma(V::load(a + i + W), V::load(b + i + W), s1);
  }
  for (; i + W <= n; i += W) s0 = V::fma(V::load(a + i), V::load(b + i), s0);
  float s = V::sum(s0) + V::sum(s1);
  for (; i < n; ++i) s += a[i] * widen(b[i]);
  return s;
}

// acc = acc · keep + p · v
template <class V>
inline void scale_add(float* acc, float keep, float p, const float* v, int64_t n) {
  constexpr int64_t W = V::kWidth;
  const typename V::Reg k = V::broadcast(&keep), pv = V::broadcast(&p);
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(acc + i, V::fma(pv, V::load(v + i), V::fma(k, V::load(acc + i), V::zero())));
  for (; i < n; ++i) acc[i] = acc[i] * keep + p * v[i];
}

// Scores of 4 query rows against 4 keys at once: each 16-float chunk of a key is loaded once
// for the 4 rows and each chunk of a row once for the 4 keys (0.5 loads per FMA, 16
// accumulators), where one dot at a time takes 2 loads per FMA and a horizontal sum per pair.
// Prefill over a long context is mostly this loop.
template <class V, class K>
inline void dots4x4(const float* const* q, const K* const* k, int64_t n, float* out) {
  constexpr int64_t W = V::kWidth;
  typename V::Reg acc[4][4];
  for (auto& row : acc) {
    for (auto& a : row) a = V::zero();
  }
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const typename V::Reg k0 = V::load(k[0] + i), k1 = V::load(k[1] + i), k2 = V::load(k[2] + i), k3 = V::load(k[3] + i);
    for (int r = 0; r < 4; ++r) {
      const typename V::Reg qv = V::load(q[r] + i);
      acc[r][0] = V::fma(qv, k0, acc[r][0]);
      acc[r][1] = V::fma(qv, k1, acc[r][1]);
      acc[r][2] = V::fma(qv, k2, acc[r][2]);
      acc[r][3] = V::fma(qv, k3, acc[r][3]);
    }
  }
  for (int r = 0; r < 4; ++r) {
    for (int c = 0; c < 4; ++c) {
      float sum = V::sum(acc[r][c]);
      for (int64_t j = i; j < n; ++j) sum += q[r][j] * widen(k[c][j]);
      out[r * 4 + c] = sum;
    }
  }
}

// acc rows [r0, r0 + nr) += Σ_c p[r][c] · v_c over the chunk's keys: 8 accumulator registers
// stay in place while the keys stream by (one value load per 8 FMAs), where a row at a time
// loaded and stored the accumulator for every key.
template <class V, class K>
inline void accumulate8(float* acc, const float* p, const K* const* values, int64_t count, int64_t r0, int64_t nr, int64_t d) {
  constexpr int64_t W = V::kWidth;
  int64_t i = 0;
  for (; i + W <= d; i += W) {
    typename V::Reg a[8];
    for (int64_t j = 0; j < nr; ++j) a[j] = V::load(acc + (r0 + j) * d + i);
    for (int64_t c = 0; c < count; ++c) {
      const typename V::Reg vv = V::load(values[c] + i);
      for (int64_t j = 0; j < nr; ++j) a[j] = V::fma(V::broadcast(p + (r0 + j) * kKeysPerChunk + c), vv, a[j]);
    }
    for (int64_t j = 0; j < nr; ++j) V::store(acc + (r0 + j) * d + i, a[j]);
  }
  for (; i < d; ++i) {
    for (int64_t j = 0; j < nr; ++j) {
      float sum = acc[(r0 + j) * d + i];
      for (int64_t c = 0; c < count; ++c) sum += p[(r0 + j) * kKeysPerChunk + c] * widen(values[c][i]);
      acc[(r0 + j) * d + i] = sum;
    }
  }
}

// Where logical slot `slot` of a sequence lives: its key row (the value row is kv_heads ·
// block_size · head_size elements further on).
template <class T>
inline const T* past_key(const Shape& s, const BatchOf<T>& b, int64_t seq, int64_t kv_head, int64_t slot) {
  const int64_t block = b.tables[seq * s.table_cols + slot / s.block_size];
  return b.pool + block * s.block_elements() + (kv_head * s.block_size + slot % s.block_size) * s.head_size;
}

// A row of n floats as pool elements: a copy, or fp16 rounded to nearest even.
template <class V>
inline void store_row(const float* from, float* to, int64_t n) {
  std::memcpy(to, from, sizeof(float) * n);
}

template <class V>
inline void store_row(const float* from, uint16_t* to, int64_t n) {
  constexpr int64_t W = V::kWidth;
  int64_t i = 0;
  for (; i + W <= n; i += W) V::store(to + i, V::load(from + i));
  for (; i < n; ++i) to[i] = sparse24::float_to_half(from[i]);
}

// One of the call's own key or value rows as the pool will hold it: an fp32 pool's is read
// in place, an fp16 pool's rounded into row `index` of the task's staging halves first.
template <class V>
inline const float* fresh_row(const float* row, float*, int64_t, int64_t) {
  return row;
}

template <class V>
inline const uint16_t* fresh_row(const float* row, uint16_t* staging, int64_t index, int64_t d) {
  store_row<V>(row, staging + index * d, d);
  return staging + index * d;
}

// Scale · q·k for every (row, key) of the chunk, −∞ where the key is not visible to the row
// (computed anyway in 4 × 4 blocks: masking after is cheaper than branching inside).
template <class V, class K>
inline void score_chunk(const Shape& s, const float* const* queries, const int64_t* query_slot, int64_t rows,
                        const K* const* keys, const int64_t* key_slot, int64_t count, float* scores) {
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  float block[16];
  for (int64_t c0 = 0; c0 < count; c0 += 4) {
    const int64_t nc = std::min<int64_t>(4, count - c0);
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
      const int64_t nr = std::min<int64_t>(4, rows - r0);
      if (nr == 4 && nc == 4) {
        dots4x4<V>(queries + r0, keys + c0, s.head_size, block);
      } else {
        for (int64_t r = 0; r < nr; ++r) {
          for (int64_t c = 0; c < nc; ++c) block[r * 4 + c] = dot<V>(queries[r0 + r], keys[c0 + c], s.head_size);
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        for (int64_t c = 0; c < nc; ++c) {
          const int64_t distance = query_slot[r0 + r] - key_slot[c0 + c];
          const bool visible = distance >= 0 && (s.window == 0 || distance < s.window);
          scores[(r0 + r) * kKeysPerChunk + c0 + c] = visible ? s.scale * block[r * 4 + c] : kNone;
        }
      }
    }
  }
}

template <class V, class T>
void tile(const Shape& s, const BatchOf<T>& b, const Task& task, float* scratch) {
  const int64_t d = s.head_size, g = s.groups(), q_stride = s.num_heads * d, kv_stride = s.kv_heads * d;
  const int64_t first = b.query_starts[task.seq], past = b.past_lens[task.seq];
  const int64_t rows = (task.row_end - task.row_begin) * g;
  const int64_t value_offset = s.kv_heads * s.block_size * d;
  constexpr float kNone = -std::numeric_limits<float>::infinity();

  float* acc = scratch;                              // [rows, d]
  float* scores = acc + rows * d;                    // [rows, kKeysPerChunk]
  float* maxima = scores + rows * kKeysPerChunk;     // [rows]
  float* sums = maxima + rows;                       // [rows]
  // fp16: [kKeysPerChunk, 2, d] halves after the floats (placement new starts their lifetime,
  // so the float scratch is never read through a uint16_t pointer).
  T* staging = nullptr;
  if constexpr (!std::is_same_v<T, float>) staging = new (sums + rows) T[2 * kKeysPerChunk * d];
  std::fill(acc, acc + rows * d, 0.0f);
  std::fill(maxima, maxima + rows, kNone);
  std::fill(sums, sums + rows, 0.0f);

  const float* queries[kRowsPerTask * kMaxGroups];
  int64_t query_slot[kRowsPerTask * kMaxGroups];
  for (int64_t i = task.row_begin; i < task.row_end; ++i) {
    for (int64_t h = 0; h < g; ++h) {
      const int64_t r = (i - task.row_begin) * g + h;
      queries[r] = b.q + (first + i) * q_stride + (task.kv_head * g + h) * d;
      query_slot[r] = past + i;
    }
  }

  // Keys: the visible past slots, then the new tokens up to the task's last row.
  const int64_t reach = s.window > 0 ? s.window - 1 : past + task.row_end;
  const int64_t past_begin = std::max<int64_t>(0, past + task.row_begin - reach);
  const int64_t new_begin = std::max<int64_t>(0, task.row_begin - reach);
  const int64_t num_keys = (past - std::min(past, past_begin)) + (task.row_end - new_begin);

  // A split task reads its share of the keys (parts start on chunk boundaries).
  const int64_t key_end = task.key_end < 0 ? num_keys : std::min(task.key_end, num_keys);

  const T* keys[kKeysPerChunk];
  const T* values[kKeysPerChunk];
  int64_t key_slot[kKeysPerChunk];
  for (int64_t k0 = task.key_begin; k0 < key_end; k0 += kKeysPerChunk) {
    const int64_t count = std::min(kKeysPerChunk, key_end - k0);
    for (int64_t c = 0; c < count; ++c) {
      const int64_t key = k0 + c, from_past = past - std::min(past, past_begin);
      if (key < from_past) {
        const int64_t slot = past_begin + key;
        keys[c] = past_key(s, b, task.seq, task.kv_head, slot);
        values[c] = keys[c] + value_offset;
        key_slot[c] = slot;
      } else {
        const int64_t t = new_begin + key - from_past;
        keys[c] = fresh_row<V>(b.k + (first + t) * kv_stride + task.kv_head * d, staging, 2 * c, d);
        values[c] = fresh_row<V>(b.v + (first + t) * kv_stride + task.kv_head * d, staging, 2 * c + 1, d);
        key_slot[c] = past + t;
      }
    }

    score_chunk<V>(s, queries, query_slot, rows, keys, key_slot, count, scores);

    for (int64_t r = 0; r < rows; ++r) {
      float* row = scores + r * kKeysPerChunk;
      float top = kNone;
      for (int64_t c = 0; c < count; ++c) top = std::max(top, row[c]);
      if (top == kNone) {
        for (int64_t c = 0; c < count; ++c) row[c] = 0.0f;
        continue;
      }
      const float next = std::max(maxima[r], top);
      const float keep = maxima[r] == kNone ? 0.0f : std::exp(maxima[r] - next);
      float added = 0.0f;
      for (int64_t c = 0; c < count; ++c) row[c] = row[c] == kNone ? 0.0f : fastexp::exp_clamped(row[c] - next);
      for (int64_t c = 0; c < count; ++c) added += row[c];
      sums[r] = sums[r] * keep + added;
      maxima[r] = next;
      if (keep != 1.0f) scale_add<V>(acc + r * d, keep, 0.0f, acc + r * d, d);
    }

    for (int64_t r0 = 0; r0 < rows; r0 += 8) accumulate8<V>(acc, scores, values, count, r0, std::min<int64_t>(8, rows - r0), d);
  }

  if (task.partial >= 0) {
    // One part of a split: its unnormalised state, for merge_partials.
    float* part = b.partials + task.partial * kRowsPerTask * g * (d + 2);
    std::copy(acc, acc + rows * d, part);
    std::copy(maxima, maxima + rows, part + rows * d);
    std::copy(sums, sums + rows, part + rows * d + rows);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = task.row_begin + r / g, h = r % g;
    float* out = b.out + (first + i) * q_stride + (task.kv_head * g + h) * d;
    const float inverse = 1.0f / sums[r];
    for (int64_t e = 0; e < d; ++e) out[e] = acc[r * d + e] * inverse;
  }
}

template <class V, class T>
void write_new(const Shape& s, const BatchOf<T>& b) {
  const int64_t d = s.head_size, kv_stride = s.kv_heads * d, value_offset = s.kv_heads * s.block_size * d;
  for (int64_t seq = 0; seq < b.num_seqs; ++seq) {
    const int64_t first = b.query_starts[seq], n = b.query_starts[seq + 1] - first, past = b.past_lens[seq];
    for (int64_t t = 0; t < n; ++t) {
      const int64_t slot = past + t;
      T* block = b.pool + b.tables[seq * s.table_cols + slot / s.block_size] * s.block_elements();
      for (int64_t h = 0; h < s.kv_heads; ++h) {
        T* key = block + (h * s.block_size + slot % s.block_size) * d;
        store_row<V>(b.k + (first + t) * kv_stride + h * d, key, d);
        store_row<V>(b.v + (first + t) * kv_stride + h * d, key + value_offset, d);
      }
    }
  }
}

template <class V>
Kernels kernels() {
  return {{tile<V, float>, write_new<V, float>}, {tile<V, uint16_t>, write_new<V, uint16_t>}};
}

}  // namespace paged::kernel
