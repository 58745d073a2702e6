// e^x written so the compiler vectorizes the loop that calls it with the translation unit's
// ISA (the attention softmax, the gated GELU's tanh): n = round(x / ln 2) by the 1.5 · 2^23
// trick (no rounding instruction needed), r = x − n · ln 2 in two steps, e^r by its Taylor
// series to r^6 (|r| ≤ ln 2 / 2: error < 2e-7 relative), 2^n through the exponent bits. x is
// clamped to [−87, 87], so the exponent never overflows. libm's expf, one call per score, took a
// tenth of a 4k-token prefill.
#pragma once

#include <cstdint>
#include <cstring>

namespace fastexp {

inline float exp_clamped(float x) {
  x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
  const float shifted = x * 1.44269504f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  bits = (bits - 0x4B400000 + 127) << 23;  // the integer n, from the low mantissa bits of shifted
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace fastexp
