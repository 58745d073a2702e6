// SparseMatMul24 and PagedAttention as kernels of ONNX Runtime's CUDA execution provider.
// ONNX Runtime places a node on the CUDA provider when the session has it and a kernel is
// registered for it (these), so a model's activations stay on the device: the kernels get
// device pointers, launch on the provider's compute stream (KernelContext_GetGPUComputeStream)
// and never synchronize, like the provider's own kernels.
//
// Inputs ONNX Runtime keeps on the host (OrtMemTypeCPUInput): the 2:4 weights (re-laid out
// for mma.sp and uploaded once, at kernel creation, to the provider's device) and the
// attention's block tables, lengths and query starts (checked on the host like the CPU op,
// then copied to the device per call). Everything else is device memory, the KV pool included,
// so PagedAttention's CUDA kernel is registered only for sessions that declare a device pool
// (serving.kv_pool = device, cuda_ops.h).
//
// The driver API is opened at run time (libcuda.so.1), so the library builds and loads
// without CUDA; kernel creation fails with the reason when the driver, an sm_80+ device or
// this build's PTX is missing.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <memory>
#include <stdexcept>
#include <string>

#include "attention_inputs.h"
#include "cuda_ops.h"
#include "matmul_weights.h"
#include "op_support.h"
#include "paged_attention_cuda.h"
#include "sparse24_cuda.h"

namespace {

constexpr const char* kCudaProvider = "CUDAExecutionProvider";
constexpr const char* kDriver = "libcuda.so.1";

// The device ordinal of the provider that owns this kernel: its default allocator's memory info.
int device_of(const OrtKernelInfo* info) {
  OrtAllocator* raw = nullptr;
  Ort::ThrowOnError(Ort::GetApi().KernelInfoGetAllocator(info, OrtMemTypeDefault, &raw));
  Ort::Allocator allocator(raw);
  return allocator.GetInfo().GetDeviceId();
}

void* stream_of(Ort::KernelContext& context) {
  void* stream = context.GetGPUComputeStream();
  if (stream == nullptr) throw std::runtime_error("the CUDA provider gave no compute stream");
  return stream;
}

template <class T>
class CudaMatmulKernel {
 public:
  static constexpr const char* kProvider = kCudaProvider;
  // values, masks, bias: host initializers, uploaded once below; A: device.
  static OrtMemType memory_type(size_t index) { return index == 0 ? OrtMemTypeDefault : OrtMemTypeCPUInput; }

  explicit CudaMatmulKernel(const OrtKernelInfo* info) : matmul_(Ort::ConstKernelInfo(info)) {
    std::string why_not;
    device_ = sparse24::cuda::DeviceMatmul<T>::create(matmul_.get(), kDriver, device_of(info), why_not);
    if (!device_) matmul_.fail("cannot run on CUDA: " + why_not);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] {
      Ort::KernelContext context(raw);
      const auto [a, y, m] = matmul_.bind(context);
      if (m > 0) device_->run(a, m, y, stream_of(context));
    });
  }

 private:
  MatmulWeights<T> matmul_;
  std::unique_ptr<sparse24::cuda::DeviceMatmul<T>> device_;
};

// T: the pool's element type (float, or uint16_t for float16).
template <class T>
class CudaAttentionKernel {
 public:
  static constexpr const char* kProvider = kCudaProvider;
  // query, key, value, kv_pool: device; block_tables, past_lens, query_starts: host.
  static OrtMemType memory_type(size_t index) { return index < 4 ? OrtMemTypeDefault : OrtMemTypeCPUInput; }

  explicit CudaAttentionKernel(const OrtKernelInfo* info) : inputs_(Ort::ConstKernelInfo(info)) {
    std::string why_not;
    device_ = paged::cuda::DeviceAttention::create(kDriver, device_of(info), why_not);
    if (!device_) inputs_.fail("cannot run on CUDA: " + why_not);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] {
      Ort::KernelContext context(raw);
      paged::Shape shape;
      paged::BatchOf<T> batch;
      inputs_.read(context, shape, batch);
      if (shape.head_size > paged::cuda::max_head_size()) {
        inputs_.fail("head_size " + std::to_string(shape.head_size) + " is above the CUDA kernel's " +
                     std::to_string(paged::cuda::max_head_size()));
      }
      device_->run(shape, batch, stream_of(context));
    });
  }

 private:
  AttentionInputs inputs_;
  std::unique_ptr<paged::cuda::DeviceAttention> device_;
};

}  // namespace

const std::vector<OrtCustomOp*>& cuda_matmul_custom_ops() {
  static MatmulOp<CudaMatmulKernel<float>, float> fp32;
  static MatmulOp<CudaMatmulKernel<uint16_t>, uint16_t> fp16;
  static const std::vector<OrtCustomOp*> ops{&fp32, &fp16};
  return ops;
}

const std::vector<OrtCustomOp*>& cuda_attention_custom_ops() {
  static AttentionOp<CudaAttentionKernel<float>, float> fp32;
  static AttentionOp<CudaAttentionKernel<uint16_t>, uint16_t> fp16;
  static const std::vector<OrtCustomOp*> ops{&fp32, &fp16};
  return ops;
}
