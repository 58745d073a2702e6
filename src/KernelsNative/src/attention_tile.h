// The paged-attention task kernel for one SIMD ISA from its vector traits V (the traits of
// the 2:4 kernels: zero, load, store, broadcast, fma, sum, kWidth). Included by
// kernels_portable.cpp, kernels_avx2.cpp and kernels_avx512.cpp, so each ISA's flags apply.
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
#include <limits>

#include "paged_attention.h"

namespace paged::kernel {

template <class V>
inline float dot(const float* a, const float* b, int64_t n) {
  constexpr int64_t W = V::kWidth;
  typename V::Reg s0 = V::zero(), s1 = V::zero();
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    s0 = V::fma(V::load(a + i), V::load(b + i), s0);
    s1 = V::fma(V::load(a + i + W), V::load(b + i + W), s1);
  }
  for (; i + W <= n; i += W) s0 = V::fma(V::load(a + i), V::load(b + i), s0);
  float s = V::sum(s0) + V::sum(s1);
  for (; i < n; ++i) s += a[i] * b[i];
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

// Where logical slot `slot` of a sequence lives: its key row (the value row is kv_heads ·
// block_size · head_size floats further on).
inline const float* past_key(const Shape& s, const Batch& b, int64_t seq, int64_t kv_head, int64_t slot) {
  const int64_t block = b.tables[seq * s.table_cols + slot / s.block_size];
  return b.pool + block * s.block_floats() + (kv_head * s.block_size + slot % s.block_size) * s.head_size;
}

template <class V>
void tile(const Shape& s, const Batch& b, const Task& task, float* scratch) {
  const int64_t d = s.head_size, g = s.groups(), q_stride = s.num_heads * d, kv_stride = s.kv_heads * d;
  const int64_t first = b.query_starts[task.seq], past = b.past_lens[task.seq];
  const int64_t rows = (task.row_end - task.row_begin) * g;
  const int64_t value_offset = s.kv_heads * s.block_size * d;
  constexpr float kNone = -std::numeric_limits<float>::infinity();

  float* acc = scratch;                              // [rows, d]
  float* scores = acc + rows * d;                    // [rows, kKeysPerChunk]
  float* maxima = scores + rows * kKeysPerChunk;     // [rows]
  float* sums = maxima + rows;                       // [rows]
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

  const float* keys[kKeysPerChunk];
  const float* values[kKeysPerChunk];
  int64_t key_slot[kKeysPerChunk];
  for (int64_t k0 = 0; k0 < num_keys; k0 += kKeysPerChunk) {
    const int64_t count = std::min(kKeysPerChunk, num_keys - k0);
    for (int64_t c = 0; c < count; ++c) {
      const int64_t key = k0 + c, from_past = past - std::min(past, past_begin);
      if (key < from_past) {
        const int64_t slot = past_begin + key;
        keys[c] = past_key(s, b, task.seq, task.kv_head, slot);
        values[c] = keys[c] + value_offset;
        key_slot[c] = slot;
      } else {
        const int64_t t = new_begin + key - from_past;
        keys[c] = b.k + (first + t) * kv_stride + task.kv_head * d;
        values[c] = b.v + (first + t) * kv_stride + task.kv_head * d;
        key_slot[c] = past + t;
      }
    }

    for (int64_t c = 0; c < count; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t distance = query_slot[r] - key_slot[c];
        const bool visible = distance >= 0 && (s.window == 0 || distance < s.window);
        scores[r * kKeysPerChunk + c] = visible ? s.scale * dot<V>(queries[r], keys[c], d) : kNone;
      }
    }

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
      for (int64_t c = 0; c < count; ++c) {
        row[c] = row[c] == kNone ? 0.0f : std::exp(row[c] - next);
        added += row[c];
      }
      sums[r] = sums[r] * keep + added;
      maxima[r] = next;
      if (keep != 1.0f) scale_add<V>(acc + r * d, keep, 0.0f, acc + r * d, d);
    }

    for (int64_t c = 0; c < count; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        const float p = scores[r * kKeysPerChunk + c];
        if (p != 0.0f) scale_add<V>(acc + r * d, 1.0f, p, values[c], d);
      }
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = task.row_begin + r / g, h = r % g;
    float* out = b.out + (first + i) * q_stride + (task.kv_head * g + h) * d;
    const float inverse = 1.0f / sums[r];
    for (int64_t e = 0; e < d; ++e) out[e] = acc[r * d + e] * inverse;
  }
}

}  // namespace paged::kernel
