// The CUDA side of SparseMatMul24: the NVIDIA 2:4 metadata layout the device kernels read,
// the driver-API loader (libcuda.so.1 opened at run time, nothing linked), and a matmul
// that uploads the weights once and runs A → device, kernel, Y → host per call.
//
// The device kernels (src/cuda/sparse24_kernels.cu) are compiled to PTX by clang at build
// time and embedded; without clang the library is built without them and the loader says so.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sparse24.h"

namespace sparse24::cuda {

// The kernels' layout (src/cuda/launch_shape.h): K padded to a multiple of 32 (one
// m16n8k32 step); values [n, k32 / 2]; metadata u16 [n, k32 / 16], one nibble per group of
// 4 features holding the two kept indices as idx0 | idx1 << 2 (idx0 < idx1), group c in
// bits 4 (c % 4) of entry c / 4. Padding groups keep indices 0 and 1 (0x4) with zero values:
// 0x0, 0x5, 0xA and 0xF are undefined behaviour for mma.sp.
int64_t padded_k(int64_t k);
std::vector<uint16_t> to_nvidia_metadata(const Shape& shape, const uint8_t* masks);
std::vector<uint8_t> from_nvidia_metadata(const Shape& shape, const uint16_t* meta);
template <class T>
std::vector<T> pad_values(const Shape& shape, const T* values);  // zero-filled padding groups

// The PTX text (NUL-terminated), empty when the build had no clang.
extern const char kPtx[];
bool has_ptx();

class Driver;

// Y = A · W on one CUDA device. T = float (GEMV kernel for every M) or uint16_t (fp16:
// GEMV for M <= 8, mma.sp tensor cores above). A and Y are device tensors in T.
template <class T>
class DeviceMatmul {
 public:
  // Uploads the weights (host memory) to device `ordinal` once. Null, with `why_not`
  // filled, when no driver, no such device, one older than sm_80, or no PTX in this build.
  // `library` is the driver to open (libcuda.so.1; tests pass others).
  static std::unique_ptr<DeviceMatmul> create(const WeightsOf<T>& weights, const char* library, int ordinal,
                                              std::string& why_not);

  ~DeviceMatmul();
  DeviceMatmul(const DeviceMatmul&) = delete;
  DeviceMatmul& operator=(const DeviceMatmul&) = delete;

  // a: [m, k] and y: [m, n] device pointers; one launch on `stream` (a CUstream / cudaStream_t;
  // null: the legacy default stream), no copies, no wait. Throws std::runtime_error with the
  // driver's message when the launch is refused.
  void run(const T* a, int64_t m, T* y, void* stream) const;

 private:
  DeviceMatmul(std::shared_ptr<Driver> driver, const Shape& shape);

  std::shared_ptr<Driver> driver_;
  Shape shape_;
  unsigned long long values_ = 0, meta_ = 0, bias_ = 0;  // device pointers
};

// Why the driver cannot be used on device `ordinal`, or empty when it can: the loader alone.
std::string probe_driver(const char* library, int ordinal);

}  // namespace sparse24::cuda
