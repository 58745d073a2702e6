// AVX2 + FMA + F16C kernels; this file alone is compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include "attention_tile.h"
#include "simd_kernels.h"

namespace {

// For a mask byte (2 groups = 8 features): which of the 4 kept values each feature takes,
// and whether it is kept at all. 256 × 64 B = 16 KB, built once.
struct ExpandTable {
  alignas(32) int32_t slot[256][8];
  alignas(32) int32_t keep[256][8];

  ExpandTable() {
    for (int byte = 0; byte < 256; ++byte) {
      int taken = 0;
      for (int lane = 0; lane < 8; ++lane) {
        bool kept = (byte >> lane) & 1;
        slot[byte][lane] = kept ? (taken & 3) : 0;
        keep[byte][lane] = kept ? -1 : 0;
        taken += kept;
      }
    }
  }
};

const ExpandTable& table() {
  static const ExpandTable instance;
  return instance;
}

struct Avx2 {
  static constexpr int kWidth = 8;
  using Reg = __m256;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm256_storeu_ps(p, x); }
  // fp16: 8 halves widened (F16C), or rounded to nearest even.
  static Reg load(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static void store(uint16_t* p, Reg x) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
  }
  static Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static Reg broadcast(const uint16_t* p) { return _mm256_set1_ps(_cvtsh_ss(*p)); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static float sum(Reg x) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // 8 kept values → 16 dense weights: permute each byte's 4 values into place, zero the rest.
  static void expand16(const float* values, const uint8_t* masks, Reg* out) {
    place(_mm256_loadu_ps(values), masks, out);
  }

  static void expand16(const uint16_t* values, const uint8_t* masks, Reg* out) {
    place(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values))), masks, out);
  }

  static void place(__m256 kept, const uint8_t* masks, Reg* out) {
    const ExpandTable& t = table();
    const __m256 upper = _mm256_permute2f128_ps(kept, kept, 0x11);
    for (int half = 0; half < 2; ++half) {
      const int byte = masks[half];
      __m256i slot = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.slot[byte]));
      __m256 keep = _mm256_load_ps(reinterpret_cast<const float*>(t.keep[byte]));
      out[half] = _mm256_and_ps(_mm256_permutevar8x32_ps(half == 0 ? kept : upper, slot), keep);
    }
  }
};

}  // namespace

namespace sparse24::detail {

Kernels avx2_kernels() { return simd_kernels<Avx2>(Isa::Avx2); }

}  // namespace sparse24::detail

namespace paged::detail {

Kernels avx2_kernels() { return kernel::kernels<Avx2>(); }

}  // namespace paged::detail
