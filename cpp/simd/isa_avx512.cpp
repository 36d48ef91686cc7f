// The avx512 instantiation of every rule and utility (target flags set in
// CMakeLists.txt).
#define FA_ISA isa_avx512
#define FA_ISA_NAME "avx512"
#include "table.hpp"

namespace fastadapt {
const KernelTable& kernels_avx512() { return isa_avx512::table(); }
}  // namespace fastadapt
