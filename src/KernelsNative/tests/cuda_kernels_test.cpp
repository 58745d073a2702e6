// The CUDA kernels' source, compiled for the host and run on the warp emulator, against the
// double-precision dense reference: the same re-layout, launch geometry and kernel choice
// as DeviceMatmul, everything but the driver and the real tensor cores.
#include <gtest/gtest.h>

#include <type_traits>

#include "warp_emulator.h"
// The kernels' source, compiled for the host against the emulator's device functions.
#include "../src/cuda/sparse24_kernels.cu"

#include "cuda/launch_shape.h"
#include "sparse24_cuda.h"
#include "test_data.h"

namespace {

using namespace sparse24_launch;

template <class T>
std::vector<T> to(const std::vector<float>& x);
template <>
std::vector<float> to(const std::vector<float>& x) { return x; }
template <>
std::vector<uint16_t> to(const std::vector<float>& x) {
  std::vector<uint16_t> out;
  for (float v : x) out.push_back(sparse24::float_to_half(v));
  return out;
}

template <class T>
const T* values_of(const Packed& p);
template <>
const float* values_of(const Packed& p) { return p.values.data(); }
template <>
const uint16_t* values_of(const Packed& p) { return p.values16.data(); }

float widen(float x) { return x; }
float widen(uint16_t x) { return sparse24::half_to_float(x); }

// Y from the emulated kernel DeviceMatmul<T> would launch, widened to fp32; `a` is rounded
// to T in place so the reference sees what the kernel saw.
template <class T>
std::vector<float> run_emulated(const Packed& p, std::vector<float>& a, int64_t m, const float* bias) {
  const sparse24::Shape& shape = p.shape;
  const std::vector<T> values = sparse24::cuda::pad_values(shape, values_of<T>(p));
  const std::vector<uint16_t> meta = sparse24::cuda::to_nvidia_metadata(shape, p.masks.data());
  std::vector<T> a_t = to<T>(a), y(static_cast<size_t>(m * shape.n));
  for (size_t i = 0; i < a.size(); ++i) a[i] = widen(a_t[i]);
  const bool fp16 = std::is_same_v<T, uint16_t>, tensor_cores = uses_tensor_cores(fp16, m);
  const Grid grid = grid_for(tensor_cores, shape.n, m);
  const int k = static_cast<int>(shape.k), n = static_cast<int>(shape.n), rows = static_cast<int>(m);
  if constexpr (std::is_same_v<T, float>) {
    warp_emulator::launch(sparse24_gemv_f32, grid.x, grid.y, kWarpsPerBlock, values.data(), meta.data(), bias, a_t.data(), y.data(), k, n, rows);
  } else if (tensor_cores) {
    warp_emulator::launch(sparse24_mma_f16, grid.x, grid.y, kWarpsPerBlock, values.data(), meta.data(), bias, a_t.data(), y.data(), k, n, rows);
  } else {
    warp_emulator::launch(sparse24_gemv_f16, grid.x, grid.y, kWarpsPerBlock, values.data(), meta.data(), bias, a_t.data(), y.data(), k, n, rows);
  }
  std::vector<float> out;
  for (T v : y) out.push_back(widen(v));
  return out;
}

template <class T>
void expect_matches_dense(int64_t m, int64_t k, int64_t n, bool with_bias, double tolerance) {
  Packed p = random_packed(k, n, static_cast<uint32_t>(m * 131 + k * 7 + n));
  std::vector<float> a = random_floats(static_cast<size_t>(m * k), 23), bias = random_floats(static_cast<size_t>(n), 29);
  const float* b = with_bias ? bias.data() : nullptr;
  std::vector<float> y = run_emulated<T>(p, a, m, b);
  EXPECT_LE(relative_error(p, a.data(), m, b, y, std::is_same_v<T, uint16_t>), tolerance)
      << (std::is_same_v<T, float> ? "fp32" : "fp16") << " M=" << m << " K=" << k << " N=" << n;
}

TEST(CudaKernels, GemvF32MatchesDenseOnEveryRowCount) {
  // Rows 1..8 fill one block row; 13 and 17 span two and three (kGemvRows = 8).
  for (int64_t m : {1, 3, 8, 13, 17}) expect_matches_dense<float>(m, 37, 13, m % 2 == 1, 1e-5);
  expect_matches_dense<float>(4, 640, 70, true, 1e-5);
  expect_matches_dense<float>(2, 5, 1, false, 1e-5);
}

TEST(CudaKernels, GemvF16MatchesDenseUpToFp16Output) {
  // fp16 A and Y: the output rounding alone is up to 2^-11 relative.
  for (int64_t m : {1, 5, 8}) expect_matches_dense<uint16_t>(m, 100, 9, m == 5, 1e-3);
}

TEST(CudaKernels, MmaF16MatchesDenseAcrossTilesAndTails) {
  // M > 8 takes mma.sp: 9 (one partial 32-row warp tile), 40 (two), K not a multiple of 32,
  // N not a multiple of 16, several warps and blocks (N = 70: 5 warps over 2 blocks).
  expect_matches_dense<uint16_t>(9, 37, 13, false, 1e-3);
  expect_matches_dense<uint16_t>(40, 640, 70, true, 1e-3);
  expect_matches_dense<uint16_t>(33, 96, 16, true, 1e-3);
  expect_matches_dense<uint16_t>(12, 1100, 20, false, 1e-3);
}

}  // namespace
