#include <gtest/gtest.h>

#include "test_data.h"

namespace {

std::vector<sparse24::Isa> supported_isas() {
  std::vector<sparse24::Isa> isas{sparse24::Isa::Portable};
  sparse24::Isa best = sparse24::detect_isa();
  if (best >= sparse24::Isa::Avx2) isas.push_back(sparse24::Isa::Avx2);
  if (best >= sparse24::Isa::Avx512) isas.push_back(sparse24::Isa::Avx512);
  return isas;
}

void expect_matches_dense(int64_t m, int64_t k, int64_t n, bool with_bias) {
  Packed p = random_packed(k, n, static_cast<uint32_t>(m * 7919 + k * 31 + n));
  std::vector<float> a = random_floats(static_cast<size_t>(m * k), 17);
  std::vector<float> bias = random_floats(static_cast<size_t>(n), 19);
  const float* b = with_bias ? bias.data() : nullptr;
  for (sparse24::Isa isa : supported_isas()) {
    std::vector<float> y(static_cast<size_t>(m * n), -1.0f);
    sparse24::matmul(sparse24::kernels_for(isa), p.weights(b), a.data(), m, y.data());
    EXPECT_LE(relative_error(p, a.data(), m, b, y), 1e-5)
        << sparse24::isa_name(isa) << " M=" << m << " K=" << k << " N=" << n;
    std::vector<float> y16(static_cast<size_t>(m * n), -1.0f);
    sparse24::matmul(sparse24::kernels_for(isa), p.weights16(b), a.data(), m, y16.data());
    EXPECT_LE(relative_error(p, a.data(), m, b, y16, true), 1e-5)
        << "fp16 values, " << sparse24::isa_name(isa) << " M=" << m << " K=" << k << " N=" << n;
  }
}

TEST(Kernels, MatchDenseMatMulOnThePrunedWeights) {
  for (int64_t m : {1, 3, 8, 64, 257})
    for (int64_t k : {5, 16, 37, 640})
      for (int64_t n : {1, 13, 70}) expect_matches_dense(m, k, n, false);
}

TEST(Kernels, CoverEveryGemvRowCountAndGemmBlockWidth) {
  // 1..8 rows: GEMV templates; 9..33: GEMM blocks of 1 to 4 vectors on each ISA.
  for (int64_t m = 1; m <= 33; ++m) expect_matches_dense(m, 37, 13, m % 2 == 0);
}

TEST(Kernels, AddTheBias) {
  for (int64_t m : {2, 65}) expect_matches_dense(m, 48, 9, true);
}

TEST(Kernels, GemmCoversSeveralGroupBlocks) {
  // K = 1100 (275 groups) spans many group blocks of the GEMM path (20 groups at M = 40 on
  // AVX-512, 42 on AVX2), the last one partial and of an odd group count.
  expect_matches_dense(40, 1100, 3, true);
}

TEST(Kernels, GemmPlanEndsInANarrowerBlockForTheRowsLeftOver) {
  for (sparse24::Isa isa : supported_isas()) {
    const sparse24::Kernels kernels = sparse24::kernels_for(isa);
    const int64_t widest = sparse24::kMaxGemmVectors * kernels.width;
    const sparse24::GemmPlan plan = kernels.gemm_plan(2 * widest + 1, 37);
    ASSERT_EQ(plan.count, 2) << sparse24::isa_name(isa);
    EXPECT_EQ(plan.segments[0].blocks, 2);
    EXPECT_EQ(plan.segments[0].vectors, sparse24::kMaxGemmVectors);
    EXPECT_EQ(plan.segments[1].m0, 2 * widest);
    EXPECT_EQ(plan.segments[1].rows, 1);
    EXPECT_EQ(plan.segments[1].vectors, 1);
    EXPECT_EQ(plan.packed_floats, 40 * (2 * widest + kernels.width));
    EXPECT_EQ(kernels.gemm_plan(widest, 37).count, 1);
    EXPECT_EQ(kernels.gemm_plan(widest - 1, 37).segments[0].rows, widest - 1);
  }
  // Row counts around the widest block on every ISA (AVX-512: 64, AVX2 and portable: 32).
  for (int64_t m : {31, 33, 63, 65, 97, 100, 127, 129}) expect_matches_dense(m, 70, 21, m % 2 == 1);
}

TEST(Kernels, GemmRangesOfBlocksAndColumnsComposeTheWholeProduct) {
  // The op splits the GEMM into runs of blocks × column ranges across threads; a run that
  // starts past block 0 and ranges that cut a 64-column tile must still land in place.
  const int64_t m = 200, k = 300, n = 150;
  Packed p = random_packed(k, n, 23);
  std::vector<float> a = random_floats(static_cast<size_t>(m * k), 29);
  std::vector<float> bias = random_floats(static_cast<size_t>(n), 31);
  for (sparse24::Isa isa : supported_isas()) {
    const sparse24::Kernels kernels = sparse24::kernels_for(isa);
    const int vectors = kernels.gemm_vectors(m);
    const int64_t lanes = vectors * kernels.width, blocks = (m + lanes - 1) / lanes, block_floats = (k + 3) / 4 * 4 * lanes;
    sparse24::AlignedFloats packed = sparse24::aligned_floats(static_cast<size_t>(blocks * block_floats));
    for (int64_t b = 0; b < blocks; ++b) sparse24::pack_a_block(a.data(), m, k, b * lanes, lanes, packed.get() + b * block_floats);
    std::vector<float> y(static_cast<size_t>(m * n), -1.0f);
    for (auto [b_begin, b_end] : {std::pair<int64_t, int64_t>{0, 1}, {1, blocks}}) {
      for (auto [n_begin, n_end] : {std::pair<int64_t, int64_t>{0, 70}, {70, n}}) {
        kernels.fp32.gemm[vectors - 1](p.weights(bias.data()), packed.get(), m, y.data(), b_begin, b_end, n_begin, n_end);
      }
    }
    EXPECT_LE(relative_error(p, a.data(), m, bias.data(), y), 1e-5) << sparse24::isa_name(isa);
  }
}

TEST(Kernels, PortableIsAlwaysAvailable) {
  EXPECT_EQ(sparse24::kernels_for(sparse24::Isa::Portable).isa, sparse24::Isa::Portable);
}

}  // namespace
