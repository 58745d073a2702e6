// Helpers of the ONNX Runtime op (custom_op.cpp): ISA choice, error wrapping, fp16 staging.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nibbles.h"
#include "sparse24.h"

namespace {

constexpr const char* kDomain = "ai.serving";

// SERVING_SPARSE24_ISA=portable|avx2|avx512 forces a kernel (tests, benchmarks); it can
// only lower the choice below what the CPU supports.
inline sparse24::Kernels choose_kernels() {
  const char* forced = std::getenv("SERVING_SPARSE24_ISA");
  if (forced == nullptr || *forced == '\0') return sparse24::kernels_for(sparse24::detect_isa());
  for (auto isa : {sparse24::Isa::Portable, sparse24::Isa::Avx2, sparse24::Isa::Avx512}) {
    if (std::strcmp(forced, sparse24::isa_name(isa)) == 0) return sparse24::kernels_for(isa);
  }
  throw std::invalid_argument(std::string("SERVING_SPARSE24_ISA='") + forced + "' is not portable, avx2 or avx512");
}

// Runs body; an exception becomes the OrtStatus that ONNX Runtime reports to the caller.
template <class F>
OrtStatusPtr guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

// What every op of ours shares, for kernel K (CRTP: Op is the op type): K is created through
// guarded, names its execution provider (kProvider, null = CPU) and where each input lives
// (memory_type).
template <class Op, class K>
struct OpOf : Ort::CustomOpBase<Op, K, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new K(info); });
  }
  const char* GetExecutionProviderType() const { return K::kProvider; }
  OrtMemType GetInputMemoryType(size_t index) const { return K::memory_type(index); }
};

// The ONNX element type of a kernel's C++ element type (fp16 as its uint16_t bits).
template <class T>
struct Element;
template <>
struct Element<float> {
  static constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  static constexpr const char* kName = "float";
};
template <>
struct Element<uint16_t> {
  static constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  static constexpr const char* kName = "float16";
};

inline std::string dims(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// A and Y as fp32 for the kernels: fp32 tensors are used in place; fp16 ones are widened
// into per-thread buffers (M·K and M·N floats, reused across calls) and Y narrowed back
// by commit().
template <class T>
class Fp32View;

template <>
class Fp32View<float> {
 public:
  Fp32View(const float* a, int64_t, float* y, int64_t) : a_(a), y_(y) {}
  const float* a() const { return a_; }
  float* y() const { return y_; }
  void commit() const {}

 private:
  const float* a_;
  float* y_;
};

template <>
class Fp32View<uint16_t> {
 public:
  Fp32View(const uint16_t* a, int64_t a_count, uint16_t* y, int64_t y_count) : y_(y), y_count_(y_count) {
    a_buffer().resize(static_cast<size_t>(a_count));
    y_buffer().resize(static_cast<size_t>(y_count));
    for (int64_t i = 0; i < a_count; ++i) a_buffer()[i] = sparse24::half_to_float(a[i]);
  }
  const float* a() const { return a_buffer().data(); }
  float* y() const { return y_buffer().data(); }
  // Narrows the fp32 result into the fp16 output tensor.
  void commit() const {
    for (int64_t i = 0; i < y_count_; ++i) y_[i] = sparse24::float_to_half(y_buffer()[i]);
  }

 private:
  static std::vector<float>& a_buffer() {
    thread_local std::vector<float> buffer;
    return buffer;
  }
  static std::vector<float>& y_buffer() {
    thread_local std::vector<float> buffer;
    return buffer;
  }
  uint16_t* y_;
  int64_t y_count_;
};

}  // namespace
