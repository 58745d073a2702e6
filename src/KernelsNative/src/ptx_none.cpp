// Built instead of the generated ptx_embedded.cpp when SERVING_CUDA_PTX is OFF (no clang):
// no kernels, so the CUDA path reports itself unavailable and the op stays on the CPU.
#include "sparse24_cuda.h"

namespace sparse24::cuda {

extern const char kPtx[] = "";

}  // namespace sparse24::cuda
