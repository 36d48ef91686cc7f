// The baseline instantiation of every rule and utility (target flags set in
// CMakeLists.txt).
#define FA_ISA isa_baseline
#define FA_ISA_NAME "baseline"
#include "table.hpp"

namespace fastadapt {
const KernelTable& kernels_baseline() { return isa_baseline::table(); }
}  // namespace fastadapt
