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

// Rules whose pass<0, float, std::uint16_t> reads and writes bfloat16 state
// (static constexpr bool kFusedBf16State = true).
template <class Rule, class = void>
struct FusedBf16State : std::false_type {};
template <class Rule>
struct FusedBf16State<Rule, std::void_t<decltype(Rule::kFusedBf16State)>>
    : std::bool_constant<Rule::kFusedBf16State> {};

template <class Rule>
void fill_bf16_state(RuleKernels& rk) {
  if constexpr (FusedBf16State<Rule>::value) rk.bf16_state = &Rule::template pass<0, float, std::uint16_t>;
}

template <class... Rules>
std::vector<RuleKernels> rule_kernels() {
  std::vector<RuleKernels> out;
  auto add = [&](const RuleInfo* info, auto fill) {
    RuleKernels rk{info, {}, nullptr};
    fill(rk);
    out.push_back(rk);
  };
  (add(&Rules::info, [](RuleKernels& rk) { fill_pass<Rules, 0>(rk); fill_bf16_state<Rules>(rk); }), ...);
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
