// The decoder's fused element-wise ops (domain ai.serving); DecoderFusions writes them at load.
//
// QkNormRope: the per-head query/key RMSNorm and
// rotary embedding of a Gemma 3 attention layer in one pass over the fused q/k/v projection,
// instead of Split, four Reshapes, two SimplifiedLayerNormalization and two RotaryEmbedding
// nodes (DecoderFusions writes it where that chain stands; each of those nodes cost more to
// dispatch than to compute on one decode token).
//
// Inputs: qkv float [..., T, (num_heads + 2·kv_num_heads)·D] (q, then k, then v, as the
// fused MatMulNBits writes them), q_gamma float [D], k_gamma float [D], position_ids int64
// (one per token, [B, T]), cos_cache and sin_cache float [max_position, D/2].
// Attributes: num_heads, kv_num_heads, epsilon.
// Outputs: q [..., T, num_heads·D] and k [..., T, kv_num_heads·D], each head normalised
// (x / sqrt(mean(x²) + ε) · γ) and then rotated as com.microsoft.RotaryEmbedding does with
// interleaved = 0 (x₁·cos − x₂·sin, x₂·cos + x₁·sin over the two halves of the head, at the
// token's position id); v [..., T, kv_num_heads·D] copied as it is.
//
// GeluGate: Gemma's gated MLP activation over the fused gate/up projection, instead of Split,
// FastGelu and Mul. Input: x float [..., 2·I] (gate, then up). Output: [..., I],
// gelu_tanh(gate) · up with gelu_tanh(g) = 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³))).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "op_support.h"
#include "decoder_ops.h"
#include "fast_exp.h"

namespace {

// One head of D values: RMSNorm with gamma, then the rotation by (cos, sin) of D/2 values each.
inline void norm_rotate(const float* x, const float* gamma, const float* cos, const float* sin, int64_t d, float epsilon,
                        float* out) {
  float sum = 0.0f;
  for (int64_t i = 0; i < d; ++i) sum += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + epsilon);
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i] * inv * gamma[i], b = x[i + half] * inv * gamma[i + half];
    out[i] = a * cos[i] - b * sin[i];
    out[i + half] = b * cos[i] + a * sin[i];
  }
}

class QkNormRopeKernel {
 public:
  explicit QkNormRopeKernel(const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    name_ = ki.GetNodeName();
    num_heads_ = ki.GetAttribute<int64_t>("num_heads");
    kv_heads_ = ki.GetAttribute<int64_t>("kv_num_heads");
    epsilon_ = ki.GetAttribute<float>("epsilon");
    if (num_heads_ <= 0 || kv_heads_ <= 0) fail("num_heads and kv_num_heads must be positive");
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] { Compute(raw); });
  }

 private:
  struct Job {
    const QkNormRopeKernel* self;
    const float* qkv;
    const float* q_gamma;
    const float* k_gamma;
    const int64_t* positions;
    const float* cos;
    const float* sin;
    float* q;
    float* k;
    float* v;
    int64_t d;
    int64_t max_position;
  };

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext context(raw);
    Ort::ConstValue qkv = context.GetInput(0), q_gamma = context.GetInput(1), k_gamma = context.GetInput(2),
                    positions = context.GetInput(3), cos = context.GetInput(4), sin = context.GetInput(5);

    std::vector<int64_t> shape = qkv.GetTensorTypeAndShapeInfo().GetShape();
    std::vector<int64_t> cos_shape = cos.GetTensorTypeAndShapeInfo().GetShape();
    if (cos_shape.size() != 2 || sin.GetTensorTypeAndShapeInfo().GetShape() != cos_shape) {
      fail("cos_cache and sin_cache must both be [max_position, head_size / 2], got " + dims(cos_shape));
    }
    const int64_t d = 2 * cos_shape[1], width = (num_heads_ + 2 * kv_heads_) * d;
    if (shape.empty() || shape.back() != width) {
      fail("qkv has shape " + dims(shape) + ", expected [..., " + std::to_string(width) + "]");
    }
    if (q_gamma.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(d) ||
        k_gamma.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(d)) {
      fail("q_gamma and k_gamma must hold head_size = " + std::to_string(d) + " values");
    }
    int64_t tokens = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) tokens *= shape[i];
    if (positions.GetTensorTypeAndShapeInfo().GetElementCount() != static_cast<size_t>(tokens)) {
      fail("position_ids must hold one position per token (" + std::to_string(tokens) + ")");
    }

    std::vector<int64_t> q_shape = shape, kv_shape = shape;
    q_shape.back() = num_heads_ * d;
    kv_shape.back() = kv_heads_ * d;
    Job job{this,
            qkv.GetTensorData<float>(),
            q_gamma.GetTensorData<float>(),
            k_gamma.GetTensorData<float>(),
            positions.GetTensorData<int64_t>(),
            cos.GetTensorData<float>(),
            sin.GetTensorData<float>(),
            context.GetOutput(0, q_shape).GetTensorMutableData<float>(),
            context.GetOutput(1, kv_shape).GetTensorMutableData<float>(),
            context.GetOutput(2, kv_shape).GetTensorMutableData<float>(),
            d,
            cos_shape[0]};
    for (int64_t t = 0; t < tokens; ++t) {
      if (job.positions[t] < 0 || job.positions[t] >= job.max_position) {
        fail("position id " + std::to_string(job.positions[t]) + " is outside the caches' " + std::to_string(job.max_position) +
             " positions");
      }
    }
    if (tokens == 0) return;
    auto token = [](void* data, size_t index) {
      auto& j = *static_cast<Job*>(data);
      j.self->Token(j, static_cast<int64_t>(index));
    };
    if (tokens == 1) {
      token(&job, 0);
    } else {
      context.ParallelFor(token, static_cast<size_t>(tokens), 0, &job);
    }
  }

  void Token(const Job& j, int64_t t) const {
    const int64_t d = j.d, half = d / 2;
    const float* row = j.qkv + t * (num_heads_ + 2 * kv_heads_) * d;
    const float* cos = j.cos + j.positions[t] * half;
    const float* sin = j.sin + j.positions[t] * half;
    for (int64_t h = 0; h < num_heads_; ++h) {
      norm_rotate(row + h * d, j.q_gamma, cos, sin, d, epsilon_, j.q + (t * num_heads_ + h) * d);
    }
    for (int64_t h = 0; h < kv_heads_; ++h) {
      norm_rotate(row + (num_heads_ + h) * d, j.k_gamma, cos, sin, d, epsilon_, j.k + (t * kv_heads_ + h) * d);
    }
    std::memcpy(j.v + t * kv_heads_ * d, row + (num_heads_ + kv_heads_) * d, sizeof(float) * kv_heads_ * d);
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw Ort::Exception("QkNormRope node '" + name_ + "': " + message, ORT_INVALID_ARGUMENT);
  }

  std::string name_;
  int64_t num_heads_ = 0;
  int64_t kv_heads_ = 0;
  float epsilon_ = 0.0f;
};

struct QkNormRopeOp : Ort::CustomOpBase<QkNormRopeOp, QkNormRopeKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new QkNormRopeKernel(info); });
  }
  const char* GetName() const { return "QkNormRope"; }
  size_t GetInputTypeCount() const { return 6; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

inline void gelu_gate_row(const float* gate, const float* up, int64_t width, float* out) {
  for (int64_t i = 0; i < width; ++i) {
    const float g = gate[i];
    const float y = 0.7978845608f * (g + 0.044715f * g * g * g);
    const float tanh = 1.0f - 2.0f / (fastexp::exp_clamped(2.0f * y) + 1.0f);
    out[i] = 0.5f * g * (1.0f + tanh) * up[i];
  }
}

class GeluGateKernel {
 public:
  explicit GeluGateKernel(const OrtKernelInfo* info) { name_ = Ort::ConstKernelInfo(info).GetNodeName(); }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] { Compute(raw); });
  }

 private:
  struct Job {
    const float* x;
    float* y;
    int64_t width;
  };

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext context(raw);
    Ort::ConstValue x = context.GetInput(0);
    std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.empty() || shape.back() % 2 != 0) {
      throw Ort::Exception("GeluGate node '" + name_ + "': x has shape " + dims(shape) + ", expected [..., 2·I]",
                           ORT_INVALID_ARGUMENT);
    }
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
    shape.back() /= 2;
    Job job{x.GetTensorData<float>(), context.GetOutput(0, shape).GetTensorMutableData<float>(), shape.back()};
    auto row = [](void* data, size_t index) {
      auto& j = *static_cast<Job*>(data);
      const float* in = j.x + static_cast<int64_t>(index) * 2 * j.width;
      gelu_gate_row(in, in + j.width, j.width, j.y + static_cast<int64_t>(index) * j.width);
    };
    if (rows == 1) {
      row(&job, 0);
    } else if (rows > 1) {
      context.ParallelFor(row, static_cast<size_t>(rows), 0, &job);
    }
  }

  std::string name_;
};

struct GeluGateOp : Ort::CustomOpBase<GeluGateOp, GeluGateKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new GeluGateKernel(info); });
  }
  const char* GetName() const { return "GeluGate"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

OrtCustomOp* gelu_gate_custom_op() {
  static GeluGateOp op;
  return &op;
}

OrtCustomOp* qk_norm_rope_custom_op() {
  static QkNormRopeOp op;
  return &op;
}
