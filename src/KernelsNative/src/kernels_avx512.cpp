// AVX-512F kernels; this file alone is compiled with -mavx512f -mfma -mf16c, and runs only
// after detect_isa() saw AVX-512F, FMA and F16C with OS support for the zmm state.
#include <immintrin.h>

#include <cstring>

#include "attention_tile.h"
#include "simd_kernels.h"

namespace {

struct Avx512 {
  static constexpr int kWidth = 16;
  using Reg = __m512;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg x) { _mm512_storeu_ps(p, x); }
  // fp16: 16 halves widened, or rounded to nearest even.
  static Reg load(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static void store(uint16_t* p, Reg x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static Reg broadcast(const uint16_t* p) { return _mm512_set1_ps(_cvtsh_ss(*p)); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static float sum(Reg x) { return _mm512_reduce_add_ps(x); }

  // Two mask bytes are the vexpandps mask of 16 features: 8 kept values land in their lanes.
  // A plain 32-byte load and the register form: the memory form (vexpandps zmm{k}, m512)
  // streamed small layers ~10% slower on Zen 4.
  static void expand16(const float* values, const uint8_t* masks, Reg* out) {
    uint16_t bits;
    std::memcpy(&bits, masks, sizeof bits);
    out[0] = _mm512_maskz_expand_ps(bits, _mm512_castps256_ps512(_mm256_loadu_ps(values)));
  }

  // fp16: widen the 8 kept halves (16 bytes), then the register form of vexpandps.
  static void expand16(const uint16_t* values, const uint8_t* masks, Reg* out) {
    uint16_t bits;
    std::memcpy(&bits, masks, sizeof bits);
    __m256 kept = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values)));
    out[0] = _mm512_maskz_expand_ps(bits, _mm512_castps256_ps512(kept));
  }
};

}  // namespace

namespace sparse24::detail {

Kernels avx512_kernels() { return simd_kernels<Avx512>(Isa::Avx512); }

}  // namespace sparse24::detail

namespace paged::detail {

Kernels avx512_kernels() { return kernel::kernels<Avx512>(); }

}  // namespace paged::detail
