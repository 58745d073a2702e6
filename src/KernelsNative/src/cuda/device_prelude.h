// What device code needs without the CUDA SDK: clang's own threadIdx/blockIdx/blockDim
// (__clang_cuda_builtin_vars.h), the function attributes nvcc's headers would define, and
// the few fp16 conversions and warp shuffles the kernels use, as clang builtins or one PTX
// instruction each. Compiled by clang -x cuda --cuda-device-only -nocudainc -nocudalib.
#pragma once

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

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const uint16_t* p) { return half_to_float(*p); }
__device__ __forceinline__ void store(float* p, float value) { *p = value; }
__device__ __forceinline__ void store(uint16_t* p, float value) { *p = float_to_half(value); }

}  // namespace device
