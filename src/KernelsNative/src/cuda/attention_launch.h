// Launch geometry and parameter order shared by the paged-attention device kernels
// (paged_attention_kernels.cu, compiled to PTX by clang) and the host that launches them
// (cuda_attention.cpp). Layout and semantics: include/paged_attention.h.
//
// paged_attention_f32 / _f16(q, k, v, pool, tables, past_lens, query_starts, out,
//                     num_seqs, num_heads, kv_heads, head_size, block_size, table_cols, window, scale)
//   one warp per (new token, query head): grid (num_tokens, num_heads), one warp per block.
// paged_write_kv_f32 / _f16(k, v, pool, tables, past_lens, query_starts,
//                    num_seqs, kv_heads, head_size, block_size, table_cols)
//   one warp per (new token, KV head): grid (num_tokens, kv_heads), launched after the
//   attention kernel on the same stream, so every read of the past precedes the writes.
// Pointers are device addresses; tables and past_lens are the layer's slices; sizes int32.
// The suffix is the pool's element type (fp16: uint16_t bits); q, k, v and out are fp32.
#pragma once

namespace paged_launch {

// Each lane keeps head_size / 32 accumulators in registers: 8 at Gemma 3's 256.
constexpr int kMaxHeadSize = 256;
constexpr int kDimsPerLane = kMaxHeadSize / 32;

constexpr const char* kAttentionF32 = "paged_attention_f32";
constexpr const char* kWriteKvF32 = "paged_write_kv_f32";
constexpr const char* kAttentionF16 = "paged_attention_f16";
constexpr const char* kWriteKvF16 = "paged_write_kv_f16";

}  // namespace paged_launch
