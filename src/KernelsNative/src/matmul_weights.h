// The constant inputs of SparseMatMul24 (values, masks, optional bias) and attribute K, read
// and checked once at kernel creation, shared by the CPU kernel (custom_op.cpp) and the CUDA
// provider's kernel (cuda_ops.cpp).
#pragma once

#include <onnxruntime_cxx_api.h>

#include <string>
#include <vector>

#include "op_support.h"

namespace {

template <class T>
class MatmulWeights {
 public:
  // values, masks and bias stay in ONNX Runtime's copy (host memory): the kernel keeps
  // pointers, since custom ops have no PrePack and a repacked copy would double the memory.
  explicit MatmulWeights(const Ort::ConstKernelInfo& ki) : name_(ki.GetNodeName()) {
    weights_.shape.k = ki.GetAttribute<int64_t>("K");
    if (weights_.shape.k <= 0) fail("attribute K must be positive, got " + std::to_string(weights_.shape.k));
    Ort::ConstValue values = constant(ki, 1, "values");
    Ort::ConstValue masks = constant(ki, 2, "masks");
    std::vector<int64_t> vshape = values.GetTensorTypeAndShapeInfo().GetShape();
    if (vshape.size() != 2) fail("values must be 2-D [N, K4/2]");
    weights_.shape.n = vshape[0];
    expect_shape(values, "values", {weights_.shape.n, weights_.shape.value_stride()});
    expect_shape(masks, "masks", {weights_.shape.n, weights_.shape.mask_stride()});
    weights_.values = static_cast<const T*>(values.GetTensorRawData());
    weights_.masks = masks.GetTensorData<uint8_t>();
    if (ki.GetInputCount() > 3) {
      Ort::ConstValue bias = constant(ki, 3, "bias");
      expect_shape(bias, "bias", {weights_.shape.n});
      // N floats; fp16 biases are widened once here rather than on every call.
      const T* raw = static_cast<const T*>(bias.GetTensorRawData());
      for (int64_t i = 0; i < weights_.shape.n; ++i) bias_.push_back(sparse24::detail::value_at(raw, i));
      weights_.bias = bias_.data();
    }
    std::string bad = sparse24::validate_masks(weights_.shape, weights_.masks);
    if (!bad.empty()) fail("masks are not 2:4: " + bad);
  }
  MatmulWeights(const MatmulWeights&) = delete;
  MatmulWeights& operator=(const MatmulWeights&) = delete;

  const sparse24::WeightsOf<T>& get() const { return weights_; }
  const sparse24::Shape& shape() const { return weights_.shape; }

  // One call's A [..., K] and Y [..., N] (allocated here), wherever ONNX Runtime keeps them, and
  // M, the rows of A (every dimension but the last).
  struct Call {
    const T* a;
    T* y;
    int64_t m;
  };

  Call bind(Ort::KernelContext& context) const {
    Ort::ConstValue input = context.GetInput(0);
    std::vector<int64_t> shape = input.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.empty() || shape.back() != weights_.shape.k) {
      fail("input A must end in K = " + std::to_string(weights_.shape.k));
    }
    int64_t m = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) m *= shape[i];
    shape.back() = weights_.shape.n;
    Ort::UnownedValue output = context.GetOutput(0, shape);
    return {static_cast<const T*>(input.GetTensorRawData()), static_cast<T*>(output.GetTensorMutableRawData()), m};
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw Ort::Exception("SparseMatMul24 node '" + name_ + "': " + message, ORT_INVALID_GRAPH);
  }

 private:
  Ort::ConstValue constant(const Ort::ConstKernelInfo& ki, size_t index, const char* what) const {
    int is_constant = 0;
    Ort::ConstValue value = ki.GetTensorConstantInput(index, &is_constant);
    if (!is_constant) fail(std::string(what) + " must be a constant initializer");
    return value;
  }

  void expect_shape(const Ort::ConstValue& value, const char* what, const std::vector<int64_t>& expected) const {
    std::vector<int64_t> shape = value.GetTensorTypeAndShapeInfo().GetShape();
    if (shape != expected) {
      fail(std::string(what) + " has shape " + dims(shape) + ", expected " + dims(expected) +
           " for K = " + std::to_string(weights_.shape.k));
    }
  }

  sparse24::WeightsOf<T> weights_;
  std::vector<float> bias_;
  std::string name_;
};

// SparseMatMul24's signature for kernel K of element type T (provider and input memory: OpOf).
template <class K, class T>
struct MatmulOp : OpOf<MatmulOp<K, T>, K> {
  const char* GetName() const { return "SparseMatMul24"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 2 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : Element<T>::kType;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index == 3 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Element<T>::kType; }
};

}  // namespace
