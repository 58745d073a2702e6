// The PagedAttention op's attributes (read at kernel creation) and its seven inputs (read and
// checked per call into a paged::Shape and paged::BatchOf<T>), shared by the CPU kernels
// (attention_op.cpp) and the CUDA provider's kernels (cuda_ops.cpp). The checks read only
// shapes, element types and the int32 inputs, which both kernels keep in host memory. The
// pool's element type T (float, or float16 as uint16_t bits) picks the registered op variant.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cmath>
#include <string>
#include <vector>

#include "op_support.h"
#include "paged_attention.h"

namespace {

class AttentionInputs {
 public:
  explicit AttentionInputs(const Ort::ConstKernelInfo& ki) : name_(ki.GetNodeName()) {
    layer_ = ki.GetAttribute<int64_t>("layer");
    shape_.num_heads = ki.GetAttribute<int64_t>("num_heads");
    shape_.kv_heads = ki.GetAttribute<int64_t>("kv_num_heads");
    shape_.window = optional_int(ki, "sliding_window", 0);
    scale_ = optional_float(ki, "scale", 0.0f);
    if (shape_.num_heads <= 0 || shape_.kv_heads <= 0) fail("num_heads and kv_num_heads must be positive");
    if (layer_ < 0) fail("layer must be at least 0");
  }

  // Reads the call's inputs, allocates the output (query's shape) and checks the batch
  // (paged::validate). Pointers are wherever ONNX Runtime placed each input.
  template <class T>
  void read(Ort::KernelContext& context, paged::Shape& shape, paged::BatchOf<T>& batch) const {
    Ort::ConstValue query = context.GetInput(0), key = context.GetInput(1), value = context.GetInput(2);
    Ort::ConstValue pool = context.GetInput(3), tables = context.GetInput(4), past = context.GetInput(5),
                    starts = context.GetInput(6);

    Ort::TensorTypeAndShapeInfo pool_info = pool.GetTensorTypeAndShapeInfo();
    if (pool_info.GetElementType() != Element<T>::kType) {
      fail("kv_pool has element type " + std::to_string(pool_info.GetElementType()) +
           " where this kernel takes " + Element<T>::kName + " (the op accepts float or float16)");
    }
    std::vector<int64_t> pool_shape = pool_info.GetShape();
    if (pool_shape.size() != 5 || pool_shape[1] != 2 || pool_shape[2] != shape_.kv_heads) {
      fail("kv_pool (float or float16) has shape " + dims(pool_shape) + ", expected [num_blocks, 2, " +
           std::to_string(shape_.kv_heads) + ", block_size, head_size]");
    }
    shape = shape_;
    shape.num_blocks = pool_shape[0];
    shape.block_size = pool_shape[3];
    shape.head_size = pool_shape[4];
    shape.scale = scale_ != 0.0f ? scale_ : 1.0f / std::sqrt(static_cast<float>(shape.head_size));

    std::vector<int64_t> q_shape = query.GetTensorTypeAndShapeInfo().GetShape();
    const int64_t tokens = rows_of(query, shape.num_heads * shape.head_size, "query");
    if (rows_of(key, shape.kv_heads * shape.head_size, "key") != tokens ||
        rows_of(value, shape.kv_heads * shape.head_size, "value") != tokens) {
      fail("query, key and value must hold the same number of tokens");
    }
    std::vector<int64_t> table_shape = tables.GetTensorTypeAndShapeInfo().GetShape();
    if (table_shape.size() != 3 || table_shape[0] <= layer_) {
      fail("block_tables must be [layers, num_seqs, blocks] with a slice for layer " + std::to_string(layer_) + ", got " +
           dims(table_shape));
    }
    const int64_t num_seqs = table_shape[1];
    shape.table_cols = table_shape[2];
    if (past.GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{table_shape[0], num_seqs} ||
        starts.GetTensorTypeAndShapeInfo().GetShape() != std::vector<int64_t>{num_seqs + 1}) {
      fail("past_lens must be [" + std::to_string(table_shape[0]) + ", " + std::to_string(num_seqs) + "] and query_starts [" +
           std::to_string(num_seqs + 1) + "]");
    }

    Ort::UnownedValue output = context.GetOutput(0, q_shape);
    batch.q = query.GetTensorData<float>();
    batch.k = key.GetTensorData<float>();
    batch.v = value.GetTensorData<float>();
    batch.pool = const_cast<T*>(pool.GetTensorData<T>());  // written in place: see attention_op.cpp
    batch.tables = tables.GetTensorData<int32_t>() + layer_ * num_seqs * shape.table_cols;
    batch.past_lens = past.GetTensorData<int32_t>() + layer_ * num_seqs;
    batch.query_starts = starts.GetTensorData<int32_t>();
    batch.num_seqs = num_seqs;
    batch.num_tokens = tokens;
    batch.out = output.GetTensorMutableData<float>();
    std::string bad = paged::validate(shape, batch);
    if (!bad.empty()) fail(bad);
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw Ort::Exception("PagedAttention node '" + name_ + "': " + message, ORT_INVALID_ARGUMENT);
  }

 private:
  int64_t rows_of(const Ort::ConstValue& value, int64_t width, const char* what) const {
    std::vector<int64_t> shape = value.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.empty() || shape.back() != width) {
      fail(std::string(what) + " has shape " + dims(shape) + ", expected [..., " + std::to_string(width) + "]");
    }
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    return rows;
  }

  static int64_t optional_int(const Ort::ConstKernelInfo& ki, const char* name, int64_t fallback) {
    int64_t value = fallback;
    Ort::Status status(Ort::GetApi().KernelInfoGetAttribute_int64(ki, name, &value));
    return status.IsOK() ? value : fallback;
  }

  static float optional_float(const Ort::ConstKernelInfo& ki, const char* name, float fallback) {
    float value = fallback;
    Ort::Status status(Ort::GetApi().KernelInfoGetAttribute_float(ki, name, &value));
    return status.IsOK() ? value : fallback;
  }

  paged::Shape shape_;
  int64_t layer_ = 0;
  float scale_ = 0.0f;
  std::string name_;
};

// PagedAttention's signature for kernel K with a kv_pool of element type T (provider and input
// memory: OpOf). ONNX Runtime merges the ops of one name into one schema whose input 3 accepts
// both pool types, and picks the kernel by the tensor fed.
template <class K, class T>
struct AttentionOp : OpOf<AttentionOp<K, T>, K> {
  const char* GetName() const { return "PagedAttention"; }
  size_t GetInputTypeCount() const { return 7; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    if (index == 3) return Element<T>::kType;
    return index >= 4 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace
