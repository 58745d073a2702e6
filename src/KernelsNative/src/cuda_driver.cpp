// Opens libcuda.so.1, the primary context of one device, and the module of the embedded PTX.
#include "cuda_driver.h"

#include <dlfcn.h>

#include <map>
#include <mutex>
#include <stdexcept>

#include "cuda/attention_launch.h"
#include "cuda/launch_shape.h"
#include "sparse24_cuda.h"

namespace sparse24::cuda {

namespace {

constexpr int kComputeCapabilityMajor = 75;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
constexpr int kComputeCapabilityMinor = 76;

template <class F>
bool resolve(void* library, const char* symbol, F& function) {
  function = reinterpret_cast<F>(dlsym(library, symbol));
  return function != nullptr;
}

}  // namespace

std::shared_ptr<Driver> Driver::open(const char* library, int ordinal, std::string& why_not) {
  // One driver per library and device for the process: every op kernel on that device shares
  // the context and module.
  static std::mutex mutex;
  static std::map<std::pair<std::string, int>, std::weak_ptr<Driver>> opened;
  std::lock_guard<std::mutex> lock(mutex);
  const std::pair<std::string, int> key{library, ordinal};
  if (auto existing = opened[key].lock()) return existing;
  std::shared_ptr<Driver> driver(new Driver());
  why_not = driver->load(library, ordinal);
  if (!why_not.empty()) return nullptr;
  opened[key] = driver;
  return driver;
}

std::string Driver::load(const char* library, int ordinal) {
  library_ = dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (library_ == nullptr) {
    const char* error = dlerror();
    return std::string("no CUDA driver: cannot open ") + library + (error ? std::string(" (") + error + ")" : "");
  }
  const std::pair<const char*, bool> symbols[] = {
      {"cuInit", resolve(library_, "cuInit", api_.cuInit)},
      {"cuGetErrorName", resolve(library_, "cuGetErrorName", api_.cuGetErrorName)},
      {"cuDeviceGetCount", resolve(library_, "cuDeviceGetCount", api_.cuDeviceGetCount)},
      {"cuDeviceGet", resolve(library_, "cuDeviceGet", api_.cuDeviceGet)},
      {"cuDeviceGetAttribute", resolve(library_, "cuDeviceGetAttribute", api_.cuDeviceGetAttribute)},
      {"cuDevicePrimaryCtxRetain", resolve(library_, "cuDevicePrimaryCtxRetain", api_.cuDevicePrimaryCtxRetain)},
      {"cuDevicePrimaryCtxRelease_v2", resolve(library_, "cuDevicePrimaryCtxRelease_v2", api_.cuDevicePrimaryCtxRelease)},
      {"cuCtxSetCurrent", resolve(library_, "cuCtxSetCurrent", api_.cuCtxSetCurrent)},
      {"cuModuleLoadData", resolve(library_, "cuModuleLoadData", api_.cuModuleLoadData)},
      {"cuModuleUnload", resolve(library_, "cuModuleUnload", api_.cuModuleUnload)},
      {"cuModuleGetFunction", resolve(library_, "cuModuleGetFunction", api_.cuModuleGetFunction)},
      {"cuMemAlloc_v2", resolve(library_, "cuMemAlloc_v2", api_.cuMemAlloc)},
      {"cuMemFree_v2", resolve(library_, "cuMemFree_v2", api_.cuMemFree)},
      {"cuMemcpyHtoD_v2", resolve(library_, "cuMemcpyHtoD_v2", api_.cuMemcpyHtoD)},
      {"cuMemcpyHtoDAsync_v2", resolve(library_, "cuMemcpyHtoDAsync_v2", api_.cuMemcpyHtoDAsync)},
      {"cuMemcpy", resolve(library_, "cuMemcpy", api_.cuMemcpy)},
      {"cuCtxSynchronize", resolve(library_, "cuCtxSynchronize", api_.cuCtxSynchronize)},
      {"cuLaunchKernel", resolve(library_, "cuLaunchKernel", api_.cuLaunchKernel)},
  };
  for (const auto& [name, found] : symbols) {
    if (!found) return std::string(library) + " has no " + name + ": not a CUDA driver, or one older than CUDA 11";
  }
  if (CUresult r = api_.cuInit(0)) return "cuInit failed: " + error_name(r);
  int count = 0;
  if (CUresult r = api_.cuDeviceGetCount(&count)) return "cuDeviceGetCount failed: " + error_name(r);
  if (count == 0) return "the CUDA driver reports no device";
  if (ordinal < 0 || ordinal >= count) {
    return "device " + std::to_string(ordinal) + " does not exist (the driver reports " + std::to_string(count) + ")";
  }
  if (CUresult r = api_.cuDeviceGet(&device_, ordinal)) return "cuDeviceGet failed: " + error_name(r);
  int major = 0, minor = 0;
  api_.cuDeviceGetAttribute(&major, kComputeCapabilityMajor, device_);
  api_.cuDeviceGetAttribute(&minor, kComputeCapabilityMinor, device_);
  if (major < 8) {
    return "device " + std::to_string(ordinal) + " is sm_" + std::to_string(major) + std::to_string(minor) + "; the kernels need sm_80 (mma.sp)";
  }
  if (!has_ptx()) return "this build has no PTX (clang was not found when src/KernelsNative was built)";
  if (CUresult r = api_.cuDevicePrimaryCtxRetain(&context_, device_)) return "cuDevicePrimaryCtxRetain failed: " + error_name(r);
  if (CUresult r = api_.cuCtxSetCurrent(context_)) return "cuCtxSetCurrent failed: " + error_name(r);
  // The driver JIT-compiles the PTX for the device here (no ptxas at build time).
  if (CUresult r = api_.cuModuleLoadData(&module_, kPtx)) return "cuModuleLoadData (the embedded PTX) failed: " + error_name(r);
  const std::pair<const char*, CUfunction*> functions[] = {{sparse24_launch::kGemvF32, &gemv_f32_},
                                                           {sparse24_launch::kGemvF16, &gemv_f16_},
                                                           {sparse24_launch::kMmaF16, &mma_f16_},
                                                           {paged_launch::kAttentionF32, &attention_f32_},
                                                           {paged_launch::kWriteKvF32, &write_kv_f32_},
                                                           {paged_launch::kAttentionF16, &attention_f16_},
                                                           {paged_launch::kWriteKvF16, &write_kv_f16_}};
  for (const auto& [name, function] : functions) {
    if (CUresult r = api_.cuModuleGetFunction(function, module_, name)) {
      return std::string("cuModuleGetFunction(") + name + ") failed: " + error_name(r);
    }
  }
  return {};
}

Driver::~Driver() {
  if (module_ != nullptr) api_.cuModuleUnload(module_);
  if (context_ != nullptr) api_.cuDevicePrimaryCtxRelease(device_);
  if (library_ != nullptr) dlclose(library_);
}

void Driver::bind() const { check(api_.cuCtxSetCurrent(context_), "cuCtxSetCurrent"); }

void Driver::check(CUresult result, const char* what) const {
  if (result != 0) throw std::runtime_error(std::string(what) + " failed: " + error_name(result));
}

std::string Driver::error_name(CUresult result) const {
  const char* name = nullptr;
  if (api_.cuGetErrorName != nullptr && api_.cuGetErrorName(result, &name) == 0 && name != nullptr) return name;
  return "CUresult " + std::to_string(result);
}

bool has_ptx() { return kPtx[0] != '\0'; }

std::string probe_driver(const char* library, int ordinal) {
  std::string why_not;
  Driver::open(library, ordinal, why_not);
  return why_not;
}

}  // namespace sparse24::cuda
