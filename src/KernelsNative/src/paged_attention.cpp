// Paged attention: validation, the task plan, merging split tasks, and the ISA choice
// (paged_attention.h). The per-ISA task and KV-write kernels are in attention_tile.h.
#include "paged_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace paged {

namespace {

std::string seq_error(int64_t seq, const std::string& what) { return "sequence " + std::to_string(seq) + ": " + what; }

// The blocks a call reaches for sequence `seq` must lie in the pool: the past it reads
// (on a sliding layer only the window − 1 slots before the new tokens) and the new slots.
template <class T>
std::string check_blocks(const Shape& s, const BatchOf<T>& b, int64_t seq, int64_t past, int64_t n) {
  const int64_t begin = s.window > 0 ? std::max<int64_t>(0, past - (s.window - 1)) : 0;
  for (int64_t col = begin / s.block_size; col * s.block_size < past + n; ++col) {
    const int32_t block = b.tables[seq * s.table_cols + col];
    if (block < 0 || block >= s.num_blocks) {
      return seq_error(seq, "block table entry " + std::to_string(col) + " is " + std::to_string(block) +
                                ", outside the pool's " + std::to_string(s.num_blocks) + " blocks");
    }
  }
  return "";
}

}  // namespace

template <class T>
std::string validate(const Shape& s, const BatchOf<T>& b) {
  if (s.num_heads <= 0 || s.kv_heads <= 0 || s.head_size <= 0 || s.block_size <= 0 || s.table_cols <= 0) {
    return "num_heads, kv_num_heads, head_size, block_size and the block table width must be positive";
  }
  if (s.num_heads % s.kv_heads != 0 || s.groups() > kMaxGroups) {
    return "num_heads (" + std::to_string(s.num_heads) + ") must be a multiple of kv_num_heads (" +
           std::to_string(s.kv_heads) + "), at most " + std::to_string(kMaxGroups) + " times it";
  }
  if (s.window < 0) return "sliding_window must be 0 (global) or positive";
  if (b.query_starts[0] != 0 || b.query_starts[b.num_seqs] != b.num_tokens) {
    return "query_starts must run from 0 to the " + std::to_string(b.num_tokens) + " new tokens";
  }
  for (int64_t seq = 0; seq < b.num_seqs; ++seq) {
    const int64_t past = b.past_lens[seq], n = b.query_starts[seq + 1] - b.query_starts[seq];
    if (n < 0) return seq_error(seq, "query_starts must not decrease");
    if (past < 0) return seq_error(seq, "past length " + std::to_string(past) + " is negative");
    if (past + n > s.table_cols * s.block_size) {
      return seq_error(seq, std::to_string(past + n) + " slots do not fit its " + std::to_string(s.table_cols) +
                                " blocks of " + std::to_string(s.block_size));
    }
    std::string bad = check_blocks(s, b, seq, past, n);
    if (!bad.empty()) return bad;
  }
  return "";
}

template <class T>
int64_t visible_keys(const Shape& s, const BatchOf<T>& b, const Task& task) {
  const int64_t past = b.past_lens[task.seq];
  const int64_t reach = s.window > 0 ? s.window - 1 : past + task.row_end;
  const int64_t past_begin = std::max<int64_t>(0, past + task.row_begin - reach);
  const int64_t new_begin = std::max<int64_t>(0, task.row_begin - reach);
  return (past - std::min(past, past_begin)) + (task.row_end - new_begin);
}

template <class T>
int64_t plan(const Shape& s, const BatchOf<T>& b, std::vector<Task>& tasks, int64_t threads) {
  tasks.clear();
  for (int64_t seq = 0; seq < b.num_seqs; ++seq) {
    const int64_t n = b.query_starts[seq + 1] - b.query_starts[seq];
    for (int64_t h = 0; h < s.kv_heads; ++h) {
      for (int64_t row = 0; row < n; row += kRowsPerTask) tasks.push_back({seq, h, row, std::min(row + kRowsPerTask, n)});
    }
  }
  const int64_t whole = static_cast<int64_t>(tasks.size());
  if (whole == 0 || whole >= threads) return 0;
  // Fewer tasks than threads (decode of a few sequences): split each over its keys so every
  // thread has work, flash-decoding style; a part holds at least kKeysPerSplit keys.
  const int64_t wanted = (threads + whole - 1) / whole;
  std::vector<Task> split;
  int64_t slots = 0;
  for (const Task& task : tasks) {
    const int64_t keys = visible_keys(s, b, task);
    const int64_t parts = std::min(wanted, keys / kKeysPerSplit);
    if (parts < 2) {
      split.push_back(task);
      continue;
    }
    const int64_t chunks = (keys + kKeysPerChunk - 1) / kKeysPerChunk;
    for (int64_t p = 0; p < parts; ++p) {
      Task part = task;
      part.key_begin = chunks * p / parts * kKeysPerChunk;
      part.key_end = std::min(keys, chunks * (p + 1) / parts * kKeysPerChunk);
      part.partial = slots++;
      split.push_back(part);
    }
  }
  tasks.swap(split);
  return slots;
}

int64_t partial_floats(const Shape& s, int64_t slots) { return slots * kRowsPerTask * s.groups() * (s.head_size + 2); }

template <class T>
void merge_partials(const Shape& s, const BatchOf<T>& b, const std::vector<Task>& tasks) {
  const int64_t d = s.head_size, g = s.groups(), q_stride = s.num_heads * d, slot_floats = kRowsPerTask * g * (d + 2);
  for (size_t first = 0; first < tasks.size();) {
    size_t last = first + 1;
    if (tasks[first].partial < 0) {
      first = last;
      continue;
    }
    while (last < tasks.size() && tasks[last].partial >= 0 && tasks[last].seq == tasks[first].seq &&
           tasks[last].kv_head == tasks[first].kv_head && tasks[last].row_begin == tasks[first].row_begin) {
      ++last;
    }
    const Task& task = tasks[first];
    const int64_t rows = (task.row_end - task.row_begin) * g, start = b.query_starts[task.seq];
    for (int64_t r = 0; r < rows; ++r) {
      float top = -std::numeric_limits<float>::infinity();
      for (size_t p = first; p < last; ++p) top = std::max(top, b.partials[tasks[p].partial * slot_floats + rows * d + r]);
      float* out = b.out + (start + task.row_begin + r / g) * q_stride + (task.kv_head * g + r % g) * d;
      std::fill(out, out + d, 0.0f);
      float total = 0.0f;
      for (size_t p = first; p < last; ++p) {
        const float* part = b.partials + tasks[p].partial * slot_floats;
        const float maximum = part[rows * d + r], sum = part[rows * d + rows + r];
        if (sum == 0.0f) continue;  // no key of this part is visible to the row
        const float weight = std::exp(maximum - top);
        total += sum * weight;
        for (int64_t e = 0; e < d; ++e) out[e] += part[r * d + e] * weight;
      }
      const float inverse = 1.0f / total;
      for (int64_t e = 0; e < d; ++e) out[e] *= inverse;
    }
    first = last;
  }
}

template <class T>
int64_t scratch_floats(const Shape& s) {
  const int64_t rows = kRowsPerTask * s.groups();
  // fp16: a chunk's worth of the call's own keys and values rounded to halves (2 per float).
  const int64_t staging = sizeof(T) == sizeof(float) ? 0 : kKeysPerChunk * s.head_size;
  return rows * (s.head_size + kKeysPerChunk + 2) + staging;
}

Kernels kernels_for(sparse24::Isa isa) {
  switch (isa) {
    case sparse24::Isa::Avx512: return detail::avx512_kernels();
    case sparse24::Isa::Avx2: return detail::avx2_kernels();
    default: return detail::portable_kernels();
  }
}

// The two pool element types.
template std::string validate<float>(const Shape&, const BatchOf<float>&);
template int64_t visible_keys<float>(const Shape&, const BatchOf<float>&, const Task&);
template int64_t plan<float>(const Shape&, const BatchOf<float>&, std::vector<Task>&, int64_t);
template void merge_partials<float>(const Shape&, const BatchOf<float>&, const std::vector<Task>&);
template int64_t scratch_floats<float>(const Shape&);
template std::string validate<uint16_t>(const Shape&, const BatchOf<uint16_t>&);
template int64_t visible_keys<uint16_t>(const Shape&, const BatchOf<uint16_t>&, const Task&);
template int64_t plan<uint16_t>(const Shape&, const BatchOf<uint16_t>&, std::vector<Task>&, int64_t);
template void merge_partials<uint16_t>(const Shape&, const BatchOf<uint16_t>&, const std::vector<Task>&);
template int64_t scratch_floats<uint16_t>(const Shape&);

}  // namespace paged
