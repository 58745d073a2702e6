// Paged attention against a double-precision dense reference: every ISA kernel the CPU has,
// fp32 and fp16 pools, random block tables, GQA groups, sliding windows (rings that wrap),
// chunked prefill and ragged batches, run call after call as an engine would (write_new after
// each call; on a sliding layer the blocks that left the window are dropped from the table).
// With an fp16 pool the reference attends over the keys and values rounded to fp16 (what the
// pool holds), and every stored half must be the round-to-nearest-even of its fp32 input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "attention_tile.h"
#include "paged_attention.h"
#include "paged_test_data.h"

namespace {

std::vector<sparse24::Isa> isas() {
  std::vector<sparse24::Isa> all{sparse24::Isa::Portable};
  if (sparse24::detect_isa() >= sparse24::Isa::Avx2) all.push_back(sparse24::Isa::Avx2);
  if (sparse24::detect_isa() >= sparse24::Isa::Avx512) all.push_back(sparse24::Isa::Avx512);
  return all;
}

// One sequence's whole history, token-major: q [L, Hq·D], k and v [L, Hkv·D].
struct History {
  std::vector<float> q, k, v;
};

// Attention of token `i` of a history (every earlier token visible, within the window), in double.
std::vector<double> reference(const paged::Shape& s, const History& h, int64_t i) {
  const int64_t d = s.head_size, g = s.groups();
  std::vector<double> out(s.num_heads * d, 0.0);
  const int64_t lo = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0;
  for (int64_t head = 0; head < s.num_heads; ++head) {
    const int64_t kv = head / g;
    std::vector<double> scores;
    for (int64_t j = lo; j <= i; ++j) {
      double dot = 0;
      for (int64_t e = 0; e < d; ++e) dot += double(h.q[(i * s.num_heads + head) * d + e]) * h.k[(j * s.kv_heads + kv) * d + e];
      scores.push_back(dot * s.scale);
    }
    const double top = *std::max_element(scores.begin(), scores.end());
    double sum = 0;
    for (double& x : scores) sum += (x = std::exp(x - top));
    for (int64_t j = lo; j <= i; ++j) {
      for (int64_t e = 0; e < d; ++e) out[head * d + e] += scores[j - lo] / sum * h.v[(j * s.kv_heads + kv) * d + e];
    }
  }
  return out;
}

// Runs one call the way the op does: validate, every task, then store the new slots.
template <class T>
std::vector<float> call(sparse24::Isa isa, PoolRunOf<T>& run, const std::vector<float>& q, const std::vector<float>& k,
                        const std::vector<float>& v, const std::vector<int32_t>& past, const std::vector<int32_t>& starts,
                        int64_t threads) {
  const paged::Shape& s = run.shape;
  paged::BatchOf<T> b;
  b.q = q.data();
  b.k = k.data();
  b.v = v.data();
  b.pool = run.pool.data();
  b.tables = run.tables.data();
  b.past_lens = past.data();
  b.query_starts = starts.data();
  b.num_seqs = static_cast<int64_t>(past.size());
  b.num_tokens = starts.back();
  std::vector<float> out(b.num_tokens * s.num_heads * s.head_size, std::nanf(""));
  b.out = out.data();
  EXPECT_EQ(paged::validate(s, b), "");
  std::vector<paged::Task> tasks;
  const int64_t slots = paged::plan(s, b, tasks, threads);
  std::vector<float> partials(paged::partial_floats(s, slots), std::nanf(""));
  b.partials = partials.data();
  std::vector<float> scratch(paged::scratch_floats<T>(s));
  const paged::KernelsOf<T> kernels = paged::kernels_for(isa).of(b.pool);
  for (const paged::Task& task : tasks) kernels.tile(s, b, task, scratch.data());
  if (slots > 0) paged::merge_partials(s, b, tasks);
  kernels.write_new(s, b);
  return out;
}

// The call's new keys and values must sit in their slots exactly as the pool stores them.
template <class T>
void expect_stored(const PoolRunOf<T>& run, const std::vector<float>& k, const std::vector<float>& v,
                   const std::vector<int32_t>& past, const std::vector<int32_t>& starts, const char* isa) {
  const paged::Shape& s = run.shape;
  const std::vector<T> keys = as_stored(k, static_cast<T*>(nullptr)), values = as_stored(v, static_cast<T*>(nullptr));
  const int64_t d = s.head_size, value_offset = s.kv_heads * s.block_size * d;
  for (size_t seq = 0; seq + 1 < starts.size(); ++seq) {
    for (int64_t t = starts[seq]; t < starts[seq + 1]; ++t) {
      const int64_t slot = past[seq] + t - starts[seq];
      const int64_t block = run.tables[seq * s.table_cols + slot / s.block_size];
      for (int64_t h = 0; h < s.kv_heads; ++h) {
        const T* key = run.pool.data() + block * s.block_elements() + (h * s.block_size + slot % s.block_size) * d;
        for (int64_t e = 0; e < d; ++e) {
          ASSERT_EQ(key[e], keys[(t * s.kv_heads + h) * d + e]) << isa << " key of slot " << slot << " element " << e;
          ASSERT_EQ(key[value_offset + e], values[(t * s.kv_heads + h) * d + e]) << isa << " value of slot " << slot;
        }
      }
    }
  }
}

// Sequences of different lengths advance together in chunks of different sizes (prefill
// chunks, then decode steps); every new token's output is checked against the reference.
// T: the pool's element type.
template <class T = float>
void check_batches(sparse24::Isa isa, paged::Shape shape, std::vector<int64_t> lengths, std::vector<int64_t> chunks,
                   uint32_t seed, int64_t threads = 1) {
  std::mt19937 rng(seed);
  const int64_t num_seqs = static_cast<int64_t>(lengths.size());
  const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
  const int64_t cols = (longest + shape.block_size - 1) / shape.block_size;
  PoolRunOf<T> run = make_run<T>(rng, shape, num_seqs, cols);
  const paged::Shape& s = run.shape;
  std::vector<History> histories, attended;  // attended: the keys and values as the pool holds them
  for (int64_t len : lengths) {
    histories.push_back({random_floats(rng, len * s.num_heads * s.head_size), random_floats(rng, len * s.kv_heads * s.head_size),
                         random_floats(rng, len * s.kv_heads * s.head_size)});
    attended.push_back({histories.back().q, rounded<T>(histories.back().k), rounded<T>(histories.back().v)});
  }

  std::vector<int64_t> done(num_seqs, 0);
  for (size_t step = 0;; ++step) {
    std::vector<float> q, k, v;
    std::vector<int32_t> past, starts{0};
    for (int64_t seq = 0; seq < num_seqs; ++seq) {
      const int64_t n = std::min(chunks[(step + seq) % chunks.size()], lengths[seq] - done[seq]);
      const History& h = histories[seq];
      auto append = [&](std::vector<float>& to, const std::vector<float>& from, int64_t width) {
        to.insert(to.end(), from.begin() + done[seq] * width, from.begin() + (done[seq] + n) * width);
      };
      append(q, h.q, s.num_heads * s.head_size);
      append(k, h.k, s.kv_heads * s.head_size);
      append(v, h.v, s.kv_heads * s.head_size);
      past.push_back(static_cast<int32_t>(done[seq]));
      starts.push_back(starts.back() + static_cast<int32_t>(n));
    }
    if (starts.back() == 0) break;
    std::vector<float> out = call(isa, run, q, k, v, past, starts, threads);
    expect_stored(run, k, v, past, starts, sparse24::isa_name(isa));
    for (int64_t seq = 0; seq < num_seqs; ++seq) {
      for (int64_t t = 0; t < starts[seq + 1] - starts[seq]; ++t) {
        std::vector<double> expected = reference(s, attended[seq], done[seq] + t);
        const float* got = out.data() + (starts[seq] + t) * s.num_heads * s.head_size;
        for (size_t e = 0; e < expected.size(); ++e) {
          ASSERT_NEAR(got[e], expected[e], 2e-5 + 2e-5 * std::abs(expected[e]))
              << sparse24::isa_name(isa) << " step " << step << " sequence " << seq << " token " << done[seq] + t << " element " << e;
        }
      }
      done[seq] += starts[seq + 1] - starts[seq];
      // A sliding layer's engine frees the blocks wholly before the window: no later call may read them.
      for (int64_t col = 0; s.window > 0 && (col + 1) * s.block_size <= done[seq] - (s.window - 1); ++col) {
        run.tables[seq * s.table_cols + col] = -1;
      }
    }
  }
}

TEST(PagedAttention, GlobalLayerPrefillInChunksThenDecodeMatchesDenseAttention) {
  for (auto isa : isas()) check_batches(isa, gemma_like(4, 1, 64, 16, 0), {150, 3, 77}, {40, 1, 1, 17, 1, 130}, 1);
}

TEST(PagedAttention, GroupsOfQueryHeadsShareTheirKvHead) {
  for (auto isa : isas()) check_batches(isa, gemma_like(8, 2, 32, 4, 0), {30, 45}, {9, 1, 2}, 2);
  for (auto isa : isas()) check_batches(isa, gemma_like(3, 3, 20, 5, 0), {12, 21, 1}, {1, 4}, 3);
}

TEST(PagedAttention, SlidingLayersReadOnlyTheBlocksOfTheirWindow) {
  // Window 10 over blocks of 4 slots: most blocks leave the window (their entries become −1),
  // and chunks (25 tokens) longer than the window read keys from the chunk itself.
  for (auto isa : isas()) check_batches(isa, gemma_like(4, 1, 16, 4, 10), {80, 33, 5}, {25, 1, 3, 1, 7}, 4);
  for (auto isa : isas()) check_batches(isa, gemma_like(4, 2, 48, 16, 33), {200, 90}, {64, 1, 1, 50}, 5);
}

TEST(PagedAttention, DecodeSplitOverTheKeysMatchesDenseAttention) {
  // Planned for 8 threads, one sequence's decode steps past 512 keys split into parts (of at
  // least kKeysPerSplit keys, chunk-aligned; 2 at 521 keys, 4 at 1,100), merged after; a
  // 200-token chunk has enough tasks and stays whole. Two sequences with two KV heads each
  // (4 tasks) split in 2. A sliding layer's decode reads only its window: too few keys to split.
  for (auto isa : isas()) check_batches(isa, gemma_like(4, 1, 32, 16, 0), {1100}, {520, 1, 1, 1, 200, 1}, 7, 8);
  for (auto isa : isas()) check_batches(isa, gemma_like(8, 2, 32, 16, 0), {700, 650}, {600, 1, 1, 1}, 8, 8);
  for (auto isa : isas()) check_batches(isa, gemma_like(4, 1, 16, 4, 300), {700}, {64, 1, 1}, 9, 8);
}

TEST(PagedAttention, Fp16PoolMatchesDenseAttentionOverTheRoundedKeys) {
  // Chunked prefill then decode, head_size 64 and 20 (an SIMD tail on every ISA), GQA groups.
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(4, 1, 64, 16, 0), {150, 3, 77}, {40, 1, 1, 17, 1, 130}, 21);
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(8, 2, 32, 4, 0), {30, 45}, {9, 1, 2}, 22);
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(3, 3, 20, 5, 0), {12, 21, 1}, {1, 4}, 23);
}

TEST(PagedAttention, Fp16PoolSlidingLayersReadOnlyTheirWindow) {
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(4, 1, 16, 4, 10), {80, 33, 5}, {25, 1, 3, 1, 7}, 24);
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(4, 2, 48, 16, 33), {200, 90}, {64, 1, 1, 50}, 25);
}

TEST(PagedAttention, Fp16PoolDecodeSplitOverTheKeysMatchesDenseAttention) {
  // As DecodeSplitOverTheKeysMatchesDenseAttention: 8 planned threads split the long decodes.
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(4, 1, 32, 16, 0), {1100}, {520, 1, 1, 1, 200, 1}, 27, 8);
  for (auto isa : isas()) check_batches<uint16_t>(isa, gemma_like(8, 2, 32, 16, 0), {700, 650}, {600, 1, 1, 1}, 28, 8);
}

TEST(PagedAttention, Fp16StoresRoundToNearestEvenOnEveryIsa) {
  // Ties (1 + 2^-11 sits halfway between 1 and 1 + 2^-10: even is 1; 1 + 3 · 2^-11 rounds up to
  // 1 + 2^-9), subnormal halves, the largest half and past it, signed zero; 40 values, so every
  // ISA's vector loop and scalar tail store some.
  const std::vector<float> special{1.0f + 0x1p-11f, 1.0f + 0x3p-11f, -(1.0f + 0x1p-11f), 0x1p-24f, 0x1.8p-24f, 0x1p-25f,
                                   3e-8f, 6.1e-5f, 65504.0f, 65519.0f, 65520.0f, -70000.0f, -0.0f, 0.0f, 0.1f, -2.5e-3f};
  EXPECT_EQ(sparse24::float_to_half(1.0f + 0x1p-11f), 0x3C00);
  EXPECT_EQ(sparse24::float_to_half(1.0f + 0x3p-11f), 0x3C02);
  EXPECT_EQ(sparse24::float_to_half(0x1.8p-24f), 0x0002);  // 1.5 subnormal steps: to even
  EXPECT_EQ(sparse24::float_to_half(65519.0f), 0x7BFF);
  EXPECT_EQ(sparse24::float_to_half(65520.0f), 0x7C00);
  std::mt19937 rng(26);
  paged::Shape shape = gemma_like(1, 1, 40, 2, 0);
  std::vector<float> k = random_floats(rng, 40), v(40);
  std::copy(special.begin(), special.end(), k.begin() + 3);
  for (size_t i = 0; i < v.size(); ++i) v[i] = special[i % special.size()] * (i % 3 == 0 ? -1.0f : 1.0f);
  std::vector<int32_t> past{0}, starts{0, 1};
  for (auto isa : isas()) {
    PoolRunOf<uint16_t> run = make_run<uint16_t>(rng, shape, 1, 1);
    std::vector<float> q = random_floats(rng, 40);
    call(isa, run, q, k, v, past, starts, 1);
    expect_stored(run, k, v, past, starts, sparse24::isa_name(isa));
  }
}

TEST(PagedAttention, ThePlanSplitsOnlyWhenThreadsWouldIdle) {
  std::mt19937 rng(10);
  paged::Shape shape = gemma_like(4, 1, 16, 16, 0);
  PoolRun run = make_run(rng, shape, 1, 64);
  std::vector<int32_t> past{1000}, starts{0, 1};
  paged::Batch b;
  b.tables = run.tables.data();
  b.past_lens = past.data();
  b.query_starts = starts.data();
  b.num_seqs = 1;
  b.num_tokens = 1;
  std::vector<paged::Task> tasks;
  EXPECT_EQ(paged::plan(run.shape, b, tasks, 1), 0);
  EXPECT_EQ(tasks.size(), 1u);
  EXPECT_EQ(paged::plan(run.shape, b, tasks, 4), 3);  // 1001 keys: at most 1001 / 256 = 3 parts
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].key_begin, 0);
  EXPECT_EQ(tasks[2].key_end, 1001);
  for (size_t i = 1; i < tasks.size(); ++i) {
    EXPECT_EQ(tasks[i].key_begin, tasks[i - 1].key_end);
    EXPECT_EQ(tasks[i].key_begin % paged::kKeysPerChunk, 0);
  }
}

TEST(PagedAttention, ValidationNamesTheSequenceAtFault) {
  std::mt19937 rng(6);
  paged::Shape shape = gemma_like(4, 1, 8, 4, 0);
  PoolRun run = make_run(rng, shape, 2, 2);
  std::vector<float> q(3 * 4 * 8), kv(3 * 8), out(q.size());
  std::vector<int32_t> past{0, 7}, starts{0, 1, 3};
  paged::Batch b{q.data(), kv.data(), kv.data(), run.pool.data(), run.tables.data(), past.data(), starts.data(), 2, 3, out.data()};
  EXPECT_NE(paged::validate(run.shape, b).find("sequence 1: 9 slots do not fit its 2 blocks of 4"), std::string::npos)
      << paged::validate(run.shape, b);
  past[1] = 5;
  EXPECT_EQ(paged::validate(run.shape, b), "");
  run.tables[3] = static_cast<int32_t>(run.shape.num_blocks);
  EXPECT_NE(paged::validate(run.shape, b).find("sequence 1: block table entry 1"), std::string::npos);
  run.tables[3] = -1;
  past[1] = 0;
  EXPECT_EQ(paged::validate(run.shape, b), "");  // entries the call does not reach are not read
  starts[2] = 4;
  EXPECT_NE(paged::validate(run.shape, b).find("query_starts"), std::string::npos);
  paged::Shape sliding = run.shape;
  sliding.window = 3;
  past[1] = 6;
  starts[2] = 2;
  b.num_tokens = 2;
  run.tables[3] = 1;
  run.tables[2] = -1;  // sequence 1's slots 0–3: before the window of the token at slot 6
  EXPECT_EQ(paged::validate(sliding, b), "");
  EXPECT_NE(paged::validate(run.shape, b).find("sequence 1: block table entry 0 is -1"), std::string::npos);
}

}  // namespace

namespace {

TEST(PagedAttention, TheFastExponentIsWithinTwoMillionthsOfLibm) {
  double worst = 0;
  for (float x = -87.0f; x <= 87.0f; x += 0.00731f) {  // the softmax's x ≤ 0 and the GELU's tanh
    const double expected = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(fastexp::exp_clamped(x) - expected) / expected);
  }
  EXPECT_LT(worst, 2e-6);
  EXPECT_GT(fastexp::exp_clamped(-1000.0f), 0.0f);  // clamped, never a garbage exponent
  EXPECT_EQ(fastexp::exp_clamped(0.0f), 1.0f);
  EXPECT_TRUE(std::isfinite(fastexp::exp_clamped(1000.0f)));  // clamped above too
}

}  // namespace
