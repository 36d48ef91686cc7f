// The few CPU-specific operations outside the kernels, behind one portable face,
// so the core builds on x86-64 (its SIMD paths) and on other CPUs (baseline only).
//
// fp_mode: the floating-point control word the workers copy from the calling
// thread, so a user's flush-to-zero/denormals-are-zero setting applies to every
// element of a step whichever thread computes it (MXCSR on x86, FPCR on AArch64).
// cpu_relax: the spin-wait hint (pause / yield).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace fastadapt {

#if defined(__x86_64__) || defined(__i386__)
inline unsigned fp_mode_get() { return _mm_getcsr(); }
inline void fp_mode_set(unsigned v) { _mm_setcsr(v); }
inline void cpu_relax() { __builtin_ia32_pause(); }
#elif defined(__aarch64__)
inline unsigned fp_mode_get() {
  unsigned long v;
  __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
  return static_cast<unsigned>(v);
}
inline void fp_mode_set(unsigned v) {
  unsigned long w = v;
  __asm__ __volatile__("msr fpcr, %0" : : "r"(w));
}
inline void cpu_relax() { __asm__ __volatile__("yield"); }
#else
// Other CPUs: workers keep their own (default) floating-point mode.
inline unsigned fp_mode_get() { return 0; }
inline void fp_mode_set(unsigned) {}
inline void cpu_relax() {}
#endif

}  // namespace fastadapt
