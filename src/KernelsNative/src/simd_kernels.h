// The kernel table of one SIMD ISA from its vector traits V (included by kernels_avx2.cpp
// and kernels_avx512.cpp after they define V).
#pragma once

#include "gemm_tile.h"
#include "gemv_rows.h"

namespace {

template <class V, class T>
sparse24::KernelSet<T> simd_set() {
  return {GemvRows<V>::template run<T>,
          {GemmTile<V, 1, T>::run, GemmTile<V, 2, T>::run, GemmTile<V, 3, T>::run, GemmTile<V, 4, T>::run}};
}

template <class V>
sparse24::Kernels simd_kernels(sparse24::Isa isa) {
  return {isa, simd_set<V, float>(), simd_set<V, uint16_t>(), V::kWidth};
}

}  // namespace
