// Runtime ISA choice: cpuid for the instruction sets, xgetbv for the OS saving their registers.
#include <cpuid.h>

#include <stdexcept>

#include "nibbles.h"

namespace sparse24 {

namespace {

uint64_t enabled_state() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

}  // namespace

Isa detect_isa() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::Portable;
  const bool osxsave = ecx & bit_OSXSAVE, fma = ecx & bit_FMA, f16c = ecx & bit_F16C;
  if (!osxsave || !fma || !f16c) return Isa::Portable;
  const uint64_t xcr0 = enabled_state();
  if ((xcr0 & 0x6) != 0x6) return Isa::Portable;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return Isa::Portable;
  if ((ebx & bit_AVX512F) && (xcr0 & 0xE0) == 0xE0) return Isa::Avx512;  // opmask, ZMM_Hi256, Hi16_ZMM
  if (ebx & bit_AVX2) return Isa::Avx2;
  return Isa::Portable;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

Kernels kernels_for(Isa isa) {
  const Isa best = detect_isa();
  if (static_cast<int>(isa) > static_cast<int>(best)) {
    throw std::invalid_argument(std::string("this CPU cannot run the ") + isa_name(isa) + " kernels");
  }
  switch (isa) {
    case Isa::Avx512: return detail::avx512_kernels();
    case Isa::Avx2: return detail::avx2_kernels();
    default: return detail::portable_kernels();
  }
}

}  // namespace sparse24
