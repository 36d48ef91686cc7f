// The avx2 instantiation of every rule and utility (target flags set in
// CMakeLists.txt).
#define FA_ISA isa_avx2
#define FA_ISA_NAME "avx2"
#include "table.hpp"

namespace fastadapt {
const KernelTable& kernels_avx2() { return isa_avx2::table(); }
}  // namespace fastadapt
