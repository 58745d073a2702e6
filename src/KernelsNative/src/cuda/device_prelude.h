// What device code needs without the CUDA SDK: clang's own threadIdx/blockIdx/blockDim
// (__clang_cuda_builtin_vars.h), the function attributes nvcc's headers would define, and
// the few fp16 conversions, warp shuffles and the sparse tensor-core instruction the kernels
// use, as clang builtins or one PTX instruction each. Compiled by clang -x cuda
// --cuda-device-only -nocudainc -nocudalib. The tests compile the same kernels for the host
// against tests/warp_emulator.h, which provides these names instead.
#pragma once

#if !defined(__CUDA_ARCH__)
#if !defined(SPARSE24_WARP_EMULATION)
#error "device code: build with clang -x cuda --cuda-device-only, or include tests/warp_emulator.h first"
#endif
#else

#include <__clang_cuda_builtin_vars.h>

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __forceinline__ __attribute__((always_inline)) inline

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef long long int64_t;

namespace device {

__device__ __forceinline__ float half_to_float(uint16_t bits) {
  float value;
  asm("cvt.f32.f16 %0, %1;" : "=f"(value) : "h"(bits));
  return value;
}

__device__ __forceinline__ uint16_t float_to_half(float value) {
  uint16_t bits;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(bits) : "f"(value));
  return bits;
}

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __nvvm_shfl_sync_bfly_f32(0xFFFFFFFFu, value, offset, 0x1F);
  return value;
}

// 2^x (the softmax's e^x as 2^(x·log2 e)): ex2.approx, 2 ulp, no libdevice needed.
__device__ __forceinline__ float exp2(float x) { return __nvvm_ex2_approx_f(x); }

__device__ __forceinline__ float load(const float* p) { return *p; }
// Two adjacent halves as one f16x2 register (p 4-byte aligned).
__device__ __forceinline__ uint32_t load_pair(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }
__device__ __forceinline__ float load(const uint16_t* p) { return half_to_float(*p); }
__device__ __forceinline__ void store(float* p, float value) { *p = value; }
__device__ __forceinline__ void store(uint16_t* p, float value) { *p = float_to_half(value); }

// d += A · B for one m16n8k32 tile, A 2:4-sparse (f16, compressed to 16 × 16), B f16 32 × 8,
// f32 accumulators; metadata from lanes 0 and 1 of every quad (sparsity selector 0).
__device__ __forceinline__ void mma_sp_m16n8k32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e) {
  asm volatile(
      "mma.sp.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
}

}  // namespace device

#endif
