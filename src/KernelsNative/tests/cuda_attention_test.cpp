// The PagedAttention CUDA kernels' source, compiled for the host and run on the warp emulator,
// against the CPU op's kernels on the same inputs, call after call as an engine would drive
// them: prefill chunks, decode steps, ragged batches, GQA groups, sliding windows whose old
// blocks leave the table, head sizes below, at and off the lanes' multiples, fp32 and fp16
// pools. Each call runs both sides on their own copy of the pool; outputs must agree to fp32
// rounding and the pools (after the KV write) exactly, so the kernels' fp16 rounding (cvt.rn)
// stores the same halves as the CPU's. The launch geometry and parameter order are
// DeviceAttention's.
#include <gtest/gtest.h>

#include "warp_emulator.h"
// The kernels' source, compiled for the host against the emulator's device functions.
#include "../src/cuda/paged_attention_kernels.cu"

#include "attention_tile.h"
#include "paged_attention.h"
#include "paged_test_data.h"

namespace {

struct Call {
  std::vector<float> q, k, v;
  std::vector<int32_t> past, starts{0};
};

template <class T>
paged::BatchOf<T> batch_of(const paged::Shape& s, PoolRunOf<T>& run, std::vector<T>& pool, const Call& c,
                           std::vector<float>& out) {
  paged::BatchOf<T> b;
  b.q = c.q.data();
  b.k = c.k.data();
  b.v = c.v.data();
  b.pool = pool.data();
  b.tables = run.tables.data();
  b.past_lens = c.past.data();
  b.query_starts = c.starts.data();
  b.num_seqs = static_cast<int64_t>(c.past.size());
  b.num_tokens = c.starts.back();
  out.assign(static_cast<size_t>(b.num_tokens * s.num_heads * s.head_size), std::nanf(""));
  b.out = out.data();
  return b;
}

// The CPU op: every task of the plan, then the KV write.
template <class T>
void run_cpu(const paged::Shape& s, const paged::BatchOf<T>& b) {
  std::vector<paged::Task> tasks;
  paged::plan(s, b, tasks);
  std::vector<float> scratch(static_cast<size_t>(paged::scratch_floats<T>(s)));
  const paged::KernelsOf<T> kernels = paged::kernels_for(sparse24::Isa::Portable).of(b.pool);
  for (const paged::Task& task : tasks) kernels.tile(s, b, task, scratch.data());
  kernels.write_new(s, b);
}

// The kernels DeviceAttention::run<T> launches.
auto attention_kernel(const float*) { return paged_attention_f32; }
auto attention_kernel(const uint16_t*) { return paged_attention_f16; }
auto write_kernel(const float*) { return paged_write_kv_f32; }
auto write_kernel(const uint16_t*) { return paged_write_kv_f16; }

// DeviceAttention::run on the emulator: attention over (tokens × heads) warps, then the write.
template <class T>
void run_emulated(const paged::Shape& s, const paged::BatchOf<T>& b) {
  const int seqs = static_cast<int>(b.num_seqs), heads = static_cast<int>(s.num_heads), kv = static_cast<int>(s.kv_heads),
            d = static_cast<int>(s.head_size), block = static_cast<int>(s.block_size), cols = static_cast<int>(s.table_cols),
            window = static_cast<int>(s.window);
  const unsigned tokens = static_cast<unsigned>(b.num_tokens);
  warp_emulator::launch(attention_kernel(b.pool), tokens, static_cast<unsigned>(heads), 1, b.q, b.k, b.v,
                        static_cast<const T*>(b.pool), b.tables, b.past_lens, b.query_starts, b.out, seqs, heads, kv, d,
                        block, cols, window, s.scale);
  warp_emulator::launch(write_kernel(b.pool), tokens, static_cast<unsigned>(kv), 1, b.k, b.v, b.pool, b.tables, b.past_lens,
                        b.query_starts, seqs, kv, d, block, cols);
}

// T: the pool's element type.
template <class T = float>
void check_against_cpu(paged::Shape shape, std::vector<int64_t> lengths, std::vector<int64_t> chunks, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t num_seqs = static_cast<int64_t>(lengths.size());
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  PoolRunOf<T> run = make_run<T>(rng, shape, num_seqs, (longest + shape.block_size - 1) / shape.block_size);
  const paged::Shape& s = run.shape;
  std::vector<T> cpu_pool = run.pool, gpu_pool = run.pool;
  std::vector<float> cpu_out, gpu_out;
  std::vector<int64_t> done(num_seqs, 0);
  for (size_t step = 0;; ++step) {
    Call c;
    for (int64_t seq = 0; seq < num_seqs; ++seq) {
      const int64_t n = std::min(chunks[(step + seq) % chunks.size()], lengths[seq] - done[seq]);
      auto append = [&](std::vector<float>& to, int64_t width) {
        const std::vector<float> fresh = random_floats(rng, static_cast<size_t>(n * width));
        to.insert(to.end(), fresh.begin(), fresh.end());
      };
      append(c.q, s.num_heads * s.head_size);
      append(c.k, s.kv_heads * s.head_size);
      append(c.v, s.kv_heads * s.head_size);
      c.past.push_back(static_cast<int32_t>(done[seq]));
      c.starts.push_back(c.starts.back() + static_cast<int32_t>(n));
    }
    if (c.starts.back() == 0) break;
    const paged::BatchOf<T> cpu = batch_of(s, run, cpu_pool, c, cpu_out), gpu = batch_of(s, run, gpu_pool, c, gpu_out);
    ASSERT_EQ(paged::validate(s, cpu), "");
    run_cpu(s, cpu);
    run_emulated(s, gpu);
    for (size_t e = 0; e < cpu_out.size(); ++e) {
      ASSERT_NEAR(gpu_out[e], cpu_out[e], 1e-5 + 1e-5 * std::abs(cpu_out[e])) << "step " << step << " element " << e;
    }
    ASSERT_EQ(gpu_pool, cpu_pool) << "step " << step << ": the KV write";
    for (int64_t seq = 0; seq < num_seqs; ++seq) {
      done[seq] += c.starts[seq + 1] - c.starts[seq];
      // A sliding layer's engine frees the blocks wholly before the window: no later call may read them.
      for (int64_t col = 0; s.window > 0 && (col + 1) * s.block_size <= done[seq] - (s.window - 1); ++col) {
        run.tables[seq * s.table_cols + col] = -1;
      }
    }
  }
}

// Sizes stay small: the emulator runs every warp as 32 host threads meeting at a barrier per
// shuffle (5 per key), on a 2-core CI machine.
TEST(CudaAttentionKernels, GlobalLayerPrefillThenDecodeMatchesTheCpuOp) {
  check_against_cpu(gemma_like(4, 1, 64, 4, 0), {14, 5, 9}, {6, 1, 1, 3}, 11);
}

TEST(CudaAttentionKernels, SlidingWindowAndHeadSizeOffTheLanes) {
  // Window 5 over blocks of 4: blocks leave the table (−1) and must not be read; head_size 40
  // leaves lanes 8–31 with a second dimension past the end.
  check_against_cpu(gemma_like(4, 2, 40, 4, 5), {16, 7}, {7, 1, 2}, 12);
}

TEST(CudaAttentionKernels, GemmaHeadSizeFillsEveryLanesRegisters) {
  check_against_cpu(gemma_like(2, 1, 256, 8, 0), {6, 3}, {3, 1}, 13);
}

TEST(CudaAttentionKernels, Fp16PoolGlobalLayerMatchesTheCpuOpsFp16Pool) {
  check_against_cpu<uint16_t>(gemma_like(4, 1, 64, 4, 0), {14, 5, 9}, {6, 1, 1, 3}, 14);
}

TEST(CudaAttentionKernels, Fp16PoolSlidingWindowAndHeadSizeOffTheLanes) {
  check_against_cpu<uint16_t>(gemma_like(4, 2, 40, 4, 5), {16, 7}, {7, 1, 2}, 15);
}

TEST(CudaAttentionKernels, Fp16PoolGemmaHeadSize) {
  check_against_cpu<uint16_t>(gemma_like(2, 1, 256, 8, 0), {6, 3}, {3, 1}, 16);
}

}  // namespace
