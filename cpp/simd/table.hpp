// This ISA's KernelTable: every registered rule's passes for float and double,
// and the gradient utilities. Included last by an isa_*.cpp, inside nothing.
#pragma once
#include "loops.hpp"

namespace fastadapt {
namespace FA_ISA {

#include "../rules/registry.hpp"

// pass<K, T> is instantiated only for the passes a rule declares.
template <class Rule, int K>
void fill_pass(RuleKernels& rk) {
  if constexpr (K < kMaxPasses) {
    if (K < Rule::info.passes) {
      rk.pass[K][kF32] = &Rule::template pass<K, float>;
      rk.pass[K][kF64] = &Rule::template pass<K, double>;
    }
    fill_pass<Rule, K + 1>(rk);
  }
}

template <class... Rules>
std::vector<RuleKernels> rule_kernels() {
  std::vector<RuleKernels> out;
  auto add = [&](const RuleInfo* info, auto fill) {
    RuleKernels rk{info, {}};
    fill(rk);
    out.push_back(rk);
  };
  (add(&Rules::info, fill_pass<Rules, 0>), ...);
  return out;
}

inline const KernelTable& table() {
  static const KernelTable t = {
      FA_ISA_NAME,
      rule_kernels<FASTADAPT_RULES>(),
      {sumsq_chunk<float>, sumsq_chunk<double>},
      {sanitize_chunk<float>, sanitize_chunk<double>},
      {scale_chunk<float>, scale_chunk<double>},
      {roof_chunk<float>, roof_chunk<double>},
      {widen_chunk, narrow_chunk, narrow_sr_chunk, dequant_chunk, quant_chunk},
  };
  return t;
}

}  // namespace FA_ISA
}  // namespace fastadapt
