// DeviceMatmul: weights uploaded once in the kernels' layout, then one kernel launch per call
// on device tensors, on the caller's stream.
#include <climits>
#include <stdexcept>
#include <type_traits>

#include "cuda/launch_shape.h"
#include "cuda_driver.h"
#include "sparse24_cuda.h"

namespace sparse24::cuda {

namespace {

using namespace sparse24_launch;

CUdeviceptr upload(const Driver& driver, const void* data, size_t bytes) {
  CUdeviceptr pointer = 0;
  driver.check(driver.api().cuMemAlloc(&pointer, bytes), "cuMemAlloc");
  if (CUresult r = driver.api().cuMemcpyHtoD(pointer, data, bytes)) {
    driver.api().cuMemFree(pointer);
    driver.check(r, "cuMemcpyHtoD");
  }
  return pointer;
}

}  // namespace

template <class T>
std::unique_ptr<DeviceMatmul<T>> DeviceMatmul<T>::create(const WeightsOf<T>& weights, const char* library, int ordinal,
                                                         std::string& why_not) {
  const Shape& shape = weights.shape;
  if (padded_k(shape.k) > INT_MAX || shape.n > INT_MAX) {
    why_not = "K or N does not fit the kernels' 32-bit sizes";
    return nullptr;
  }
  std::shared_ptr<Driver> driver = Driver::open(library, ordinal, why_not);
  if (!driver) return nullptr;
  std::unique_ptr<DeviceMatmul> matmul(new DeviceMatmul(driver, shape));
  driver->bind();
  const std::vector<T> values = pad_values(shape, weights.values);
  const std::vector<uint16_t> meta = to_nvidia_metadata(shape, weights.masks);
  matmul->values_ = upload(*driver, values.data(), values.size() * sizeof(T));
  matmul->meta_ = upload(*driver, meta.data(), meta.size() * sizeof(uint16_t));
  if (weights.bias != nullptr) {
    matmul->bias_ = upload(*driver, weights.bias, static_cast<size_t>(shape.n) * sizeof(float));
  }
  return matmul;
}

template <class T>
DeviceMatmul<T>::DeviceMatmul(std::shared_ptr<Driver> driver, const Shape& shape)
    : driver_(std::move(driver)), shape_(shape) {}

template <class T>
DeviceMatmul<T>::~DeviceMatmul() {
  for (CUdeviceptr pointer : {values_, meta_, bias_}) {
    if (pointer != 0) driver_->api().cuMemFree(pointer);
  }
}

template <class T>
void DeviceMatmul<T>::run(const T* a, int64_t m, T* y, void* stream) const {
  if (m > INT_MAX) throw std::runtime_error("SparseMatMul24 on CUDA: too many rows of A");
  const Driver& driver = *driver_;
  driver.bind();
  CUdeviceptr a_device = reinterpret_cast<CUdeviceptr>(a), y_device = reinterpret_cast<CUdeviceptr>(y);
  int k = static_cast<int>(shape_.k), n = static_cast<int>(shape_.n), rows = static_cast<int>(m);
  // Device addresses are 64-bit values; cuLaunchKernel reads each parameter through its pointer.
  CUdeviceptr values = values_, meta = meta_, bias = bias_;
  void* params[] = {&values, &meta, &bias, &a_device, &y_device, &k, &n, &rows};
  const bool tensor_cores = uses_tensor_cores(std::is_same_v<T, uint16_t>, m);
  CUfunction function = tensor_cores ? driver.mma_f16() : std::is_same_v<T, float> ? driver.gemv_f32() : driver.gemv_f16();
  const Grid grid = grid_for(tensor_cores, n, m);
  driver.check(driver.api().cuLaunchKernel(function, grid.x, grid.y, 1, kWarpsPerBlock * 32, 1, 1, 0,
                                           static_cast<CUstream>(stream), params, nullptr),
               "cuLaunchKernel (SparseMatMul24)");
}

template class DeviceMatmul<float>;
template class DeviceMatmul<uint16_t>;

}  // namespace sparse24::cuda
