// DeviceMatmul: weights uploaded once in the kernels' layout, then per call A → device,
// one kernel launch, Y → host (synchronous copies on the default stream).
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

// Grows a per-kernel device buffer; calls on one node are serialized by the caller's mutex.
void reserve(const Driver& driver, CUdeviceptr& pointer, size_t& capacity, size_t bytes) {
  if (bytes <= capacity) return;
  if (pointer != 0) driver.api().cuMemFree(pointer);
  pointer = 0;
  capacity = 0;
  driver.check(driver.api().cuMemAlloc(&pointer, bytes), "cuMemAlloc");
  capacity = bytes;
}

}  // namespace

template <class T>
std::unique_ptr<DeviceMatmul<T>> DeviceMatmul<T>::create(const WeightsOf<T>& weights, const char* library,
                                                         std::string& why_not) {
  const Shape& shape = weights.shape;
  if (padded_k(shape.k) > INT_MAX || shape.n > INT_MAX) {
    why_not = "K or N does not fit the kernels' 32-bit sizes";
    return nullptr;
  }
  std::shared_ptr<Driver> driver = Driver::open(library, why_not);
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
  for (CUdeviceptr pointer : {values_, meta_, bias_, a_, y_}) {
    if (pointer != 0) driver_->api().cuMemFree(pointer);
  }
}

template <class T>
void DeviceMatmul<T>::run(const T* a, int64_t m, T* y) {
  if (m > INT_MAX) throw std::runtime_error("SparseMatMul24 on CUDA: too many rows of A");
  std::lock_guard<std::mutex> lock(mutex_);
  const Driver& driver = *driver_;
  driver.bind();
  const size_t a_bytes = static_cast<size_t>(m * shape_.k) * sizeof(T), y_bytes = static_cast<size_t>(m * shape_.n) * sizeof(T);
  reserve(driver, a_, a_bytes_, a_bytes);
  reserve(driver, y_, y_bytes_, y_bytes);
  driver.check(driver.api().cuMemcpyHtoD(a_, a, a_bytes), "cuMemcpyHtoD (A)");

  int k = static_cast<int>(shape_.k), n = static_cast<int>(shape_.n), rows = static_cast<int>(m);
  void* params[] = {&values_, &meta_, &bias_, &a_, &y_, &k, &n, &rows};  // device addresses are 64-bit values
  const bool tensor_cores = uses_tensor_cores(std::is_same_v<T, uint16_t>, m);
  CUfunction function = tensor_cores ? driver.mma_f16() : std::is_same_v<T, float> ? driver.gemv_f32() : driver.gemv_f16();
  const Grid grid = grid_for(tensor_cores, n, m);
  driver.check(driver.api().cuLaunchKernel(function, grid.x, grid.y, 1, kWarpsPerBlock * 32, 1, 1, 0, nullptr, params, nullptr),
               "cuLaunchKernel");
  // Waits for the kernel (legacy default stream) and reports its faults.
  driver.check(driver.api().cuMemcpyDtoH(y, y_, y_bytes), "cuMemcpyDtoH (Y)");
}

template class DeviceMatmul<float>;
template class DeviceMatmul<uint16_t>;

}  // namespace sparse24::cuda
