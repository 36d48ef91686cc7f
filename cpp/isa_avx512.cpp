// The avx512 instantiation of kernels.hpp (target flags set in CMakeLists.txt).
#define FA_ISA isa_avx512
#define FA_ISA_NAME "avx512"
#include "kernels.hpp"

namespace fastadapt {
const KernelTable& kernels_avx512() { return isa_avx512::table(); }
}  // namespace fastadapt
