// The CUDA driver API, opened at run time with dlopen: the dozen entry points the ops use,
// declared here (no CUDA SDK at build time), the primary context of one device (the one
// ONNX Runtime's CUDA provider runs on: its runtime API uses the same primary context) and
// the module built from the embedded PTX.
#pragma once

#include <memory>
#include <string>

namespace sparse24::cuda {

using CUresult = int;  // 0 = CUDA_SUCCESS
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;

struct DriverApi {
  CUresult (*cuInit)(unsigned int flags);
  CUresult (*cuGetErrorName)(CUresult error, const char** name);
  CUresult (*cuDeviceGetCount)(int* count);
  CUresult (*cuDeviceGet)(CUdevice* device, int ordinal);
  CUresult (*cuDeviceGetAttribute)(int* value, int attribute, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* context, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice device);  // the _v2 symbol
  CUresult (*cuCtxSetCurrent)(CUcontext context);
  CUresult (*cuModuleLoadData)(CUmodule* module, const void* image);
  CUresult (*cuModuleUnload)(CUmodule module);
  CUresult (*cuModuleGetFunction)(CUfunction* function, CUmodule module, const char* name);
  CUresult (*cuMemAlloc)(CUdeviceptr* pointer, size_t bytes);  // _v2
  CUresult (*cuMemFree)(CUdeviceptr pointer);                   // _v2
  CUresult (*cuMemcpyHtoD)(CUdeviceptr destination, const void* source, size_t bytes);  // _v2
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr destination, const void* source, size_t bytes, CUstream stream);  // _v2
  // Any direction under unified addressing (host pointers are addresses too).
  CUresult (*cuMemcpy)(CUdeviceptr destination, CUdeviceptr source, size_t bytes);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuLaunchKernel)(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z,
                             unsigned block_x, unsigned block_y, unsigned block_z, unsigned shared_bytes,
                             CUstream stream, void** params, void** extra);
};

class Driver {
 public:
  // The process-wide driver for `library` and device `ordinal`, opened once; null with
  // `why_not` filled when the library, a symbol, the device, compute capability >= 8.0 or
  // the PTX is missing.
  static std::shared_ptr<Driver> open(const char* library, int ordinal, std::string& why_not);
  ~Driver();

  const DriverApi& api() const { return api_; }
  CUfunction gemv_f32() const { return gemv_f32_; }
  CUfunction gemv_f16() const { return gemv_f16_; }
  CUfunction mma_f16() const { return mma_f16_; }
  CUfunction attention_f32() const { return attention_f32_; }
  CUfunction write_kv_f32() const { return write_kv_f32_; }
  CUfunction attention_f16() const { return attention_f16_; }
  CUfunction write_kv_f16() const { return write_kv_f16_; }

  // Makes the primary context current on the calling thread (ORT runs nodes on its pool).
  void bind() const;
  // The same without throwing: the driver's result (destructors use it).
  CUresult make_current() const noexcept { return api_.cuCtxSetCurrent(context_); }
  // Throws std::runtime_error("<what>: CUDA_ERROR_...") unless result is CUDA_SUCCESS.
  void check(CUresult result, const char* what) const;
  // CUDA_ERROR_... for `result`.
  std::string error_name(CUresult result) const;

 private:
  Driver() = default;
  std::string load(const char* library, int ordinal);

  void* library_ = nullptr;
  DriverApi api_{};
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
  CUmodule module_ = nullptr;
  CUfunction gemv_f32_ = nullptr, gemv_f16_ = nullptr, mma_f16_ = nullptr;
  CUfunction attention_f32_ = nullptr, write_kv_f32_ = nullptr;
  CUfunction attention_f16_ = nullptr, write_kv_f16_ = nullptr;
};

}  // namespace sparse24::cuda
