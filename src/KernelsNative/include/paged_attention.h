// Paged attention: causal grouped-query attention of a batch of sequences that read their
// past keys and values in place from a pool of fixed-size KV blocks (vLLM's PagedAttention
// layout, one layer per block), the kernels behind the ONNX Runtime op PagedAttention
// (domain ai.serving).
//
// Layout:
//   pool   [num_blocks, 2, kv_heads, block_size, head_size] float or fp16 (uint16_t bits):
//          block b holds the keys (index 0) then the values (index 1) of block_size slots of
//          one layer. An fp16 pool holds every key and value rounded to nearest even; the
//          kernels widen them to fp32 as they read, and round the call's own keys and values
//          the same way before attending to them, so a token sees the same key whether it
//          came in this call or an earlier one.
//   tables [num_seqs, table_cols] int32 (one layer's slice of the op's [layers, seqs, cols]
//          input): sequence s's logical slot j lives in block tables[s, j / block_size] at
//          offset j % block_size. On a sliding-window layer, blocks wholly before the window
//          are never read, so the engine frees them and their entries may be anything (−1);
//          so may entries past the call's last slot.
//   q      [T, num_heads · head_size], k and v [T, kv_heads · head_size]: the new tokens of
//          every sequence, packed: sequence s owns rows query_starts[s] .. query_starts[s+1).
//          q and k are post-RoPE; the kernels never read positions.
//   past_lens [num_seqs]: slots already in the sequence's cache (logical count: on a ring,
//          every token ever written). The new tokens take logical slots past .. past + n.
//
// Semantics, for new token i of sequence s (logical slot L = past + i) and query head h
// (KV head h / (num_heads / kv_heads)):
//   visible slots j ≤ L, and L − j < window on a sliding layer (window 0: every slot);
//   out = softmax(scale · q·kⱼ over visible j) · vⱼ, accumulated in fp32.
// Global layers may have had slots evicted and compacted (KV compression): attention then
// runs over the kept slots in their order, and causality holds because new tokens are
// always the last slots. After attention the new keys and values are stored in their slots
// (write_new).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sparse24.h"

namespace paged {

struct Shape {
  int64_t num_heads = 0;
  int64_t kv_heads = 0;
  int64_t head_size = 0;
  int64_t block_size = 0;
  int64_t num_blocks = 0;
  int64_t table_cols = 0;
  int64_t window = 0;  // sliding window in tokens (the query's own slot included); 0 = global
  float scale = 1.0f;

  int64_t groups() const { return num_heads / kv_heads; }
  int64_t block_elements() const { return 2 * kv_heads * block_size * head_size; }
};

// T: the pool's element type, float or uint16_t (fp16 bits); q, k, v and out are always fp32.
template <class T>
struct BatchOf {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  T* pool = nullptr;
  const int32_t* tables = nullptr;
  const int32_t* past_lens = nullptr;
  const int32_t* query_starts = nullptr;  // num_seqs + 1 entries, query_starts[0] = 0
  int64_t num_seqs = 0;
  int64_t num_tokens = 0;
  float* out = nullptr;  // [T, num_heads · head_size]
  // Split tasks' partial states (plan's partial_floats): per slot and row, the unnormalised
  // accumulator (head_size floats), the running maximum and the sum of exponentials.
  float* partials = nullptr;
};
using Batch = BatchOf<float>;

// One unit of work: new tokens [row_begin, row_end) of one sequence, one KV head and its
// group of query heads.
struct Task {
  int64_t seq = 0;
  int64_t kv_head = 0;
  int64_t row_begin = 0;
  int64_t row_end = 0;
  // A share of the keys these rows see, [key_begin, key_end) in the kernel's key order (past
  // slots, then the call's new tokens); key_end −1: all of them.
  int64_t key_begin = 0;
  int64_t key_end = -1;
  // ≥ 0: the task is one part of a split (flash-decoding) and writes its partial state into
  // partials slot `partial`; merge_partials then combines the parts into out.
  int64_t partial = -1;
};

// Query tokens per task: with Gemma 3's 4 query heads per KV head, 8 tokens are 32 query
// rows whose fp32 accumulators (32 KB at head_size 256) stay in L2 beside the key chunk.
constexpr int64_t kRowsPerTask = 8;
// Query heads per KV head the kernels take (Gemma 3: 4 to 8; Llama-style 70B: 8).
constexpr int64_t kMaxGroups = 64;
// Keys scored per pass of the online softmax: one max and one rescale per 64 keys.
constexpr int64_t kKeysPerChunk = 64;

// Empty when shape and batch are consistent (every block the call reaches within the pool,
// lengths within the tables, query_starts ascending to num_tokens); otherwise what is wrong,
// naming the sequence.
template <class T>
std::string validate(const Shape& shape, const BatchOf<T>& batch);

// Keys per part, at least, when a call has fewer tasks than threads and its tasks' keys are
// split (a decode step of one sequence has one task per KV head, however long its context).
constexpr int64_t kKeysPerSplit = 4 * kKeysPerChunk;

// The tasks of a call, in the order sequence, KV head, rows. With fewer tasks than `threads`,
// tasks that see enough keys are split into parts over their keys (each a multiple of
// kKeysPerChunk, the parts of one task adjacent); returns the partial slots the parts need.
template <class T>
int64_t plan(const Shape& shape, const BatchOf<T>& batch, std::vector<Task>& tasks, int64_t threads = 1);

// Floats of batch.partials a plan with `slots` partial slots needs.
int64_t partial_floats(const Shape& shape, int64_t slots);

// Combines each split task's parts (after every task has run) into its rows of out.
template <class T>
void merge_partials(const Shape& shape, const BatchOf<T>& batch, const std::vector<Task>& tasks);

// How many keys the rows [row_begin, row_end) of a sequence see (the past in their reach,
// then the call's new tokens up to row_end).
template <class T>
int64_t visible_keys(const Shape& shape, const BatchOf<T>& batch, const Task& task);

// Floats of per-thread scratch one task needs (an fp16 pool's task also stages a chunk of
// the call's own keys and values as halves).
template <class T>
int64_t scratch_floats(const Shape& shape);

// Attention of one task, writing its rows of out. scratch: scratch_floats<T>(shape) floats.
template <class T>
using TileFnOf = void (*)(const Shape& shape, const BatchOf<T>& batch, const Task& task, float* scratch);

// Stores the new tokens' keys and values in their slots (after every task has run); an fp16
// pool gets them rounded to nearest even.
template <class T>
using WriteFnOf = void (*)(const Shape& shape, const BatchOf<T>& batch);

template <class T>
struct KernelsOf {
  TileFnOf<T> tile;
  WriteFnOf<T> write_new;
};

// One ISA's kernels for both pool element types.
struct Kernels {
  KernelsOf<float> fp32;
  KernelsOf<uint16_t> fp16;

  const KernelsOf<float>& of(const float*) const { return fp32; }
  const KernelsOf<uint16_t>& of(const uint16_t*) const { return fp16; }
};

// The kernels for an ISA (the same cpuid choice as the 2:4 kernels).
Kernels kernels_for(sparse24::Isa isa);

namespace detail {
Kernels portable_kernels();
Kernels avx2_kernels();
Kernels avx512_kernels();
}  // namespace detail

}  // namespace paged
