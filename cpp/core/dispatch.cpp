#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace fastadapt {
namespace {

struct IsaEntry {
  const char* name;
  const KernelTable& (*table)();
  bool (*cpu_has)();
};

bool always() { return true; }

#if defined(FASTADAPT_X86_PATHS)
// __builtin_cpu_supports also checks that the OS saves the wide registers.
bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

const IsaEntry kIsas[] = {
    {"avx512", kernels_avx512, has_avx512},
    {"avx2", kernels_avx2, has_avx2},
    {"baseline", kernels_baseline, always},
};
#else
// Built without the x86 SIMD paths (another CPU, or FASTADAPT_X86_PATHS=OFF):
// the portable path alone.
const IsaEntry kIsas[] = {
    {"baseline", kernels_baseline, always},
};
#endif

const KernelTable* best_supported() {
  for (const auto& e : kIsas)
    if (e.cpu_has()) return &e.table();
  return &kernels_baseline();
}

const KernelTable* initial_table() {
  const KernelTable* t = best_supported();
  // FASTADAPT_SIMD may only lower the path; an unknown or unsupported value is
  // ignored here and reported by fastadapt.simd_info() (Python warns).
  if (const char* env = std::getenv("FASTADAPT_SIMD")) {
    for (const auto& e : kIsas)
      if (std::string(env) == e.name && e.cpu_has()) t = &e.table();
  }
  return t;
}

std::atomic<const KernelTable*>& active() {
  static std::atomic<const KernelTable*> a{initial_table()};
  return a;
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> out;
  for (const auto& e : kIsas) out.emplace_back(e.name);
  return out;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const auto& e : kIsas)
    if (e.cpu_has()) out.emplace_back(e.name);
  return out;
}

const KernelTable& active_kernels() { return *active().load(std::memory_order_acquire); }

void set_active_isa(const std::string& name) {
  for (const auto& e : kIsas) {
    if (name != e.name) continue;
    if (!e.cpu_has()) throw std::invalid_argument("this CPU cannot run the '" + name + "' path");
    active().store(&e.table(), std::memory_order_release);
    return;
  }
  throw std::invalid_argument("unknown SIMD path '" + name + "' (expected one of fastadapt.simd_info()'s compiled paths)");
}

}  // namespace fastadapt
