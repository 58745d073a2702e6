// A stand-in for libcuda.so.1 over host memory: the driver entry points Driver::load resolves,
// one sm_80 device, "device" pointers that are host addresses. For the device pool's tests
// (device_pool_test.cpp): it counts synchronisations and can refuse allocations.
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {
using CUresult = int;
constexpr CUresult kSuccess = 0, kInvalidValue = 1, kOutOfMemory = 2;
int synchronizations = 0;
size_t memory_left = SIZE_MAX;
int context_token = 0, module_token = 0, function_token = 0;
}  // namespace

// The project builds with hidden visibility; a driver exports its entry points.
#pragma GCC visibility push(default)
extern "C" {
CUresult cuInit(unsigned) { return kSuccess; }
CUresult cuGetErrorName(CUresult error, const char** name) {
  *name = error == kOutOfMemory ? "CUDA_ERROR_OUT_OF_MEMORY" : error == kInvalidValue ? "CUDA_ERROR_INVALID_VALUE" : "CUDA_ERROR_UNKNOWN";
  return kSuccess;
}
CUresult cuDeviceGetCount(int* count) {
  *count = 1;
  return kSuccess;
}
CUresult cuDeviceGet(int* device, int ordinal) {
  *device = ordinal;
  return kSuccess;
}
CUresult cuDeviceGetAttribute(int* value, int attribute, int) {
  *value = attribute == 75 ? 8 : 0;  // compute capability 8.0
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRetain(void** context, int) {
  *context = &context_token;
  return kSuccess;
}
CUresult cuDevicePrimaryCtxRelease_v2(int) { return kSuccess; }
CUresult cuCtxSetCurrent(void*) { return kSuccess; }
CUresult cuCtxSynchronize() {
  ++synchronizations;
  return kSuccess;
}
CUresult cuModuleLoadData(void** module, const void*) {
  *module = &module_token;
  return kSuccess;
}
CUresult cuModuleUnload(void*) { return kSuccess; }
CUresult cuModuleGetFunction(void** function, void*, const char*) {
  *function = &function_token;
  return kSuccess;
}
CUresult cuMemAlloc_v2(uint64_t* pointer, size_t bytes) {
  if (bytes > memory_left) return kOutOfMemory;
  memory_left -= bytes;
  *pointer = reinterpret_cast<uintptr_t>(std::malloc(bytes));
  return kSuccess;
}
CUresult cuMemFree_v2(uint64_t pointer) {
  std::free(reinterpret_cast<void*>(pointer));
  return kSuccess;
}
CUresult cuMemcpy(uint64_t target, uint64_t source, size_t bytes) {
  std::memcpy(reinterpret_cast<void*>(target), reinterpret_cast<const void*>(source), bytes);
  return kSuccess;
}
CUresult cuMemcpyHtoD_v2(uint64_t target, const void* source, size_t bytes) { return cuMemcpy(target, reinterpret_cast<uintptr_t>(source), bytes); }
CUresult cuMemcpyHtoDAsync_v2(uint64_t target, const void* source, size_t bytes, void*) { return cuMemcpyHtoD_v2(target, source, bytes); }
CUresult cuLaunchKernel(void*, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void*, void**, void**) {
  return kInvalidValue;  // no kernels run here
}

// For the tests.
int fake_cuda_synchronizations() { return synchronizations; }
void fake_cuda_set_memory(size_t bytes) { memory_left = bytes; }
}
#pragma GCC visibility pop
