// Run-time choice of the kernel table: the best ISA the CPU supports, or a
// lower one forced by FASTADAPT_SIMD (or by _core._set_simd in tests).
#pragma once
#include <string>
#include <vector>

#include "rule_api.hpp"

namespace fastadapt {

// Names in preference order: "avx512", "avx2", "baseline".
std::vector<std::string> compiled_isas();
std::vector<std::string> supported_isas();  // compiled and usable on this CPU
const KernelTable& active_kernels();
// Throws std::invalid_argument for an unknown name or one this CPU cannot run.
void set_active_isa(const std::string& name);

}  // namespace fastadapt
