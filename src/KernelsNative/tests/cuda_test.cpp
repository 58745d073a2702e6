// The CUDA side without a GPU: the NVIDIA metadata re-layout against our keep-masks, the
// embedded PTX, and the driver loader's answers when there is no driver.
#include <gtest/gtest.h>

#include <string>

#include "cuda/attention_launch.h"
#include "cuda/launch_shape.h"
#include "paged_attention_cuda.h"
#include "sparse24_cuda.h"
#include "test_data.h"

namespace {

using sparse24::cuda::from_nvidia_metadata;
using sparse24::cuda::padded_k;
using sparse24::cuda::to_nvidia_metadata;

// What mma.sp reads from (values, metadata): weight [k, n] of the dense matrix, k < padded_k.
std::vector<float> expand_nvidia(const sparse24::Shape& shape, const std::vector<float>& values,
                                 const std::vector<uint16_t>& meta) {
  const int64_t k32 = padded_k(shape.k);
  std::vector<float> dense(static_cast<size_t>(k32 * shape.n), 0.0f);
  for (int64_t row = 0; row < shape.n; ++row) {
    for (int64_t g = 0; g < k32 / 4; ++g) {
      const unsigned nibble = (meta[row * (k32 / 16) + g / 4] >> ((g % 4) * 4)) & 0xF;
      dense[(4 * g + (nibble & 3)) * shape.n + row] += values[row * (k32 / 2) + 2 * g];
      dense[(4 * g + (nibble >> 2)) * shape.n + row] += values[row * (k32 / 2) + 2 * g + 1];
    }
  }
  return dense;
}

TEST(NvidiaLayout, KeepMasksBecomeIndexPairs) {
  // K = 8: group 0 keeps features 1, 2 (mask 0x6 -> 1 | 2 << 2 = 0x9); group 1 keeps 0, 3
  // (0x9 -> 0 | 3 << 2 = 0xC). Groups 2..7 are padding up to K = 32: indices 0, 1 (0x4).
  sparse24::Shape shape{8, 1};
  const uint8_t masks[1] = {0x96};
  std::vector<uint16_t> meta = to_nvidia_metadata(shape, masks);
  ASSERT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta[0], 0x44C9);
  EXPECT_EQ(meta[1], 0x4444);
}

TEST(NvidiaLayout, RoundTripsEveryMaskAndStaysValidForMmaSp) {
  for (int64_t k : {4, 7, 32, 33, 130, 640}) {
    Packed p = random_packed(k, 13, static_cast<uint32_t>(k) + 5);
    std::vector<uint16_t> meta = to_nvidia_metadata(p.shape, p.masks.data());
    ASSERT_EQ(meta.size(), static_cast<size_t>(13 * padded_k(k) / 16));
    EXPECT_EQ(from_nvidia_metadata(p.shape, meta.data()), p.masks) << "K = " << k;
    for (uint16_t entry : meta) {
      for (int c = 0; c < 4; ++c) {
        const unsigned nibble = (entry >> (4 * c)) & 0xF;
        EXPECT_LT(nibble & 3, nibble >> 2) << "K = " << k << ": idx0 < idx1 (0x0, 0x5, 0xA, 0xF are undefined)";
      }
    }
  }
}

TEST(NvidiaLayout, PaddedValuesAndMetadataExpandToTheSameWeights) {
  for (int64_t k : {5, 37, 96, 640}) {
    Packed p = random_packed(k, 7, static_cast<uint32_t>(k) * 3);
    std::vector<float> values = sparse24::cuda::pad_values(p.shape, p.values.data());
    ASSERT_EQ(values.size(), static_cast<size_t>(7 * padded_k(k) / 2));
    std::vector<float> dense = expand_nvidia(p.shape, values, to_nvidia_metadata(p.shape, p.masks.data()));
    for (int64_t kk = 0; kk < padded_k(k); ++kk) {
      for (int64_t n = 0; n < 7; ++n) {
        const float expected = kk < k ? p.dense[kk * 7 + n] : 0.0f;
        ASSERT_EQ(dense[kk * 7 + n], expected) << "K = " << k << ", feature " << kk << ", row " << n;
      }
    }
  }
}

TEST(CudaDriver, MissingLibraryIsReportedNotThrown) {
  const std::string why = sparse24::cuda::probe_driver("libserving-no-such-driver.so.1", 0);
  EXPECT_NE(why.find("no CUDA driver"), std::string::npos) << why;
  EXPECT_NE(why.find("libserving-no-such-driver.so.1"), std::string::npos) << why;
}

TEST(CudaDriver, LibraryWithoutTheDriverApiIsRejected) {
  const std::string why = sparse24::cuda::probe_driver("libm.so.6", 0);
  EXPECT_NE(why.find("libm.so.6 has no cuInit"), std::string::npos) << why;
}

TEST(CudaDriver, DeviceMatmulWithoutADriverIsNullWithAReason) {
  Packed p = random_packed(64, 8, 1);
  std::string why;
  EXPECT_EQ(sparse24::cuda::DeviceMatmul<float>::create(p.weights(), "libserving-no-such-driver.so.1", 0, why), nullptr);
  EXPECT_NE(why.find("no CUDA driver"), std::string::npos) << why;
  why.clear();
  EXPECT_EQ(sparse24::cuda::DeviceMatmul<uint16_t>::create(p.weights16(), "libm.so.6", 1, why), nullptr);
  EXPECT_NE(why.find("has no cuInit"), std::string::npos) << why;
}

TEST(CudaDriver, DeviceAttentionWithoutADriverIsNullWithAReason) {
  std::string why;
  EXPECT_EQ(paged::cuda::DeviceAttention::create("libserving-no-such-driver.so.1", 0, why), nullptr);
  EXPECT_NE(why.find("no CUDA driver"), std::string::npos) << why;
}

#if SERVING_CUDA_PTX
TEST(Ptx, EmbedsTheSevenKernelsForSm80) {
  const std::string ptx = sparse24::cuda::kPtx;
  ASSERT_TRUE(sparse24::cuda::has_ptx());
  EXPECT_NE(ptx.find(".target sm_80"), std::string::npos);
  for (const char* name : {sparse24_launch::kGemvF32, sparse24_launch::kGemvF16, sparse24_launch::kMmaF16,
                           paged_launch::kAttentionF32, paged_launch::kWriteKvF32, paged_launch::kAttentionF16,
                           paged_launch::kWriteKvF16}) {
    EXPECT_NE(ptx.find(std::string(".entry ") + name + "("), std::string::npos) << name;
  }
}

// The parameter types of an entry, in order: p = 64-bit (a device pointer), i = 32-bit integer,
// f = float. What cuLaunchKernel reads through the host's params array must match.
std::string signature(const std::string& ptx, const std::string& entry) {
  const size_t begin = ptx.find(".entry " + entry + "(");
  const size_t end = ptx.find(')', begin);
  std::string types;
  for (size_t at = ptx.find(".param ", begin); at < end; at = ptx.find(".param ", at + 1)) {
    const std::string type = ptx.substr(at + 7, 4);
    types += type == ".u64" ? 'p' : type == ".u32" ? 'i' : type == ".f32" ? 'f' : '?';
  }
  return types;
}

TEST(Ptx, EntryParametersMatchWhatTheHostPasses) {
  const std::string ptx = sparse24::cuda::kPtx;
  // cuda_matmul.cpp: values, meta, bias, a, y, then k, n, m.
  for (const char* name : {sparse24_launch::kGemvF32, sparse24_launch::kGemvF16, sparse24_launch::kMmaF16}) {
    EXPECT_EQ(signature(ptx, name), "pppppiii") << name;
  }
  // cuda_attention.cpp: q, k, v, pool, tables, past_lens, query_starts, out; num_seqs, num_heads,
  // kv_heads, head_size, block_size, table_cols, window; scale.
  // Both pool types take the same parameters (the pool is a pointer either way).
  for (const char* name : {paged_launch::kAttentionF32, paged_launch::kAttentionF16}) {
    EXPECT_EQ(signature(ptx, name), "ppppppppiiiiiiif") << name;
  }
  // k, v, pool, tables, past_lens, query_starts; num_seqs, kv_heads, head_size, block_size, table_cols.
  for (const char* name : {paged_launch::kWriteKvF32, paged_launch::kWriteKvF16}) {
    EXPECT_EQ(signature(ptx, name), "ppppppiiiii") << name;
  }
}

TEST(Ptx, TheFp16PrefillKernelUsesSparseTensorCores) {
  const std::string ptx = sparse24::cuda::kPtx;
  const size_t mma = ptx.find(std::string(".entry ") + sparse24_launch::kMmaF16);
  ASSERT_NE(mma, std::string::npos);
  // Four m16n8k32 tiles per k step share one weight fragment and one metadata register.
  size_t count = 0;
  for (size_t at = ptx.find("mma.sp.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32", mma); at != std::string::npos;
       at = ptx.find("mma.sp.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, static_cast<size_t>(sparse24_launch::kMmaColumns / 8));
  EXPECT_EQ(ptx.find("mma.sp"), ptx.find("mma.sp", mma)) << "only the mma kernel uses tensor cores";
}
#else
TEST(Ptx, ABuildWithoutClangEmbedsNoKernels) {
  EXPECT_FALSE(sparse24::cuda::has_ptx());
}
#endif

}  // namespace
