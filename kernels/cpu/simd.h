// Run-time instruction-set dispatch shared by the CPU kernels.
#pragma once

#include <cmath>

namespace mast {

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// The hot loops are compiled twice, for the baseline instruction set (what
// setup.py builds for) and for AVX2 + FMA, and the variant is picked at run
// time, so the extension still runs on any x86-64 CPU.
#define MAST_CPU_DISPATCH_AVX2 1
#define MAST_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MAST_ALWAYS_INLINE inline __attribute__((always_inline))
inline bool cpu_has_avx2() {
  static const bool has = [] {
    __builtin_cpu_init();  // harmless if already done; needed before constructors
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
}
#else
#define MAST_ALWAYS_INLINE inline
inline bool cpu_has_avx2() { return false; }
#endif

// acc + a * b; fused (single rounding) in the FMA variant.
template <bool kFma, typename T>
MAST_ALWAYS_INLINE T madd(T acc, T a, T b) {
  if constexpr (kFma) {
    return std::fma(a, b, acc);
  } else {
    return acc + a * b;
  }
}

}  // namespace mast
