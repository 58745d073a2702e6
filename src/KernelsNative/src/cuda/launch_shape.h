// Launch geometry and parameter order shared by the device kernels (sparse24_kernels.cu,
// compiled to PTX by clang) and the host that launches them (cuda_matmul.cpp).
//
// Every kernel takes (values, meta, bias, a, y, k, n, m):
//   values  T [n, k32 / 2]    the kept weights, zero-padded to k32 = k rounded up to 32
//   meta    u16 [n, k32 / 16] NVIDIA 2:4 metadata, one nibble idx0 | idx1 << 2 per group of
//                             4 features, group c in bits 4(c % 4) of entry c / 4
//   bias    f32 [n] or null
//   a       T [m, k]          activations, row-major
//   y       T [m, n]          output, row-major
//   k, n, m int32
#pragma once

namespace sparse24_launch {

constexpr int kWarpsPerBlock = 4;  // 128 threads per block
constexpr int kGemvRows = 8;       // rows of A per GEMV block: weights read once per 8 rows
constexpr int kMmaColumns = 32;    // rows of A (mma columns) per warp: 4 m16n8k32 tiles share a weight fragment
constexpr int kMmaRows = 16;       // output features per warp (the mma M dimension)

// The fp16 op uses the tensor cores above kGemvRows rows; fp32 always takes the GEMV.
constexpr bool uses_tensor_cores(bool fp16, long long m) { return fp16 && m > kGemvRows; }

struct Grid {
  unsigned x, y;  // blocks of kWarpsPerBlock warps
};

constexpr Grid grid_for(bool tensor_cores, long long n, long long m) {
  return tensor_cores ? Grid{static_cast<unsigned>((n + kWarpsPerBlock * kMmaRows - 1) / (kWarpsPerBlock * kMmaRows)),
                             static_cast<unsigned>((m + kMmaColumns - 1) / kMmaColumns)}
                      : Grid{static_cast<unsigned>((n + kWarpsPerBlock - 1) / kWarpsPerBlock),
                             static_cast<unsigned>((m + kGemvRows - 1) / kGemvRows)};
}

constexpr const char* kGemvF32 = "sparse24_gemv_f32";
constexpr const char* kGemvF16 = "sparse24_gemv_f16";
constexpr const char* kMmaF16 = "sparse24_mma_f16";

}  // namespace sparse24_launch
