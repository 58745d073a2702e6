// ONNX Runtime custom op PagedAttention (domain ai.serving): causal grouped-query attention
// over a pool of KV blocks, read in place (layout and semantics in paged_attention.h).
//
// Inputs: query float [..., T, num_heads·D] (post-RoPE), key and value float [..., T, kv·D]
// (key post-RoPE), kv_pool float [num_blocks, 2, kv, block_size, D], block_tables int32
// [layers, num_seqs, cols], past_lens int32 [layers, num_seqs], query_starts int32
// [num_seqs + 1]. Every layer's node reads the same pool, tables and lengths, and takes its
// own slice of the last two. Attributes: layer, num_heads, kv_num_heads, scale (default
// 1/sqrt(D)), sliding_window (0 = global).
// Output: float, the shape of query.
//
// The op stores the new keys and values into kv_pool: the pool is the engine's own native
// memory, fed as a graph input (never an initializer, which ONNX Runtime may copy), so the
// write lands in the engine's blocks and no present output exists. Each layer's node writes
// only the blocks of its own tables, after reading its past.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cmath>
#include <string>
#include <vector>

#include "attention_op.h"
#include "op_support.h"
#include "paged_attention.h"

namespace {

class AttentionKernel {
 public:
  explicit AttentionKernel(const OrtKernelInfo* info) : tile_(paged::tile_kernel(choose_kernels().isa)) {
    Ort::ConstKernelInfo ki(info);
    name_ = ki.GetNodeName();
    layer_ = ki.GetAttribute<int64_t>("layer");
    shape_.num_heads = ki.GetAttribute<int64_t>("num_heads");
    shape_.kv_heads = ki.GetAttribute<int64_t>("kv_num_heads");
    shape_.window = optional_int(ki, "sliding_window", 0);
    scale_ = optional_float(ki, "scale", 0.0f);
    if (shape_.num_heads <= 0 || shape_.kv_heads <= 0) fail("num_heads and kv_num_heads must be positive");
    if (layer_ < 0) fail("layer must be at least 0");
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] { Compute(raw); });
  }

 private:
  struct Job {
    const AttentionKernel* self;
    const paged::Shape* shape;
    const paged::Batch* batch;
    const std::vector<paged::Task>* tasks;
  };

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext context(raw);
    Ort::ConstValue query = context.GetInput(0), key = context.GetInput(1), value = context.GetInput(2);
    Ort::ConstValue pool = context.GetInput(3), tables = context.GetInput(4), past = context.GetInput(5),
                    starts = context.GetInput(6);

    std::vector<int64_t> pool_shape = pool.GetTensorTypeAndShapeInfo().GetShape();
    if (pool_shape.size() != 5 || pool_shape[1] != 2 || pool_shape[2] != shape_.kv_heads) {
      fail("kv_pool has shape " + dims(pool_shape) + ", expected [num_blocks, 2, " + std::to_string(shape_.kv_heads) +
           ", block_size, head_size]");
    }
    paged::Shape shape = shape_;
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
    paged::Batch batch;
    batch.q = query.GetTensorData<float>();
    batch.k = key.GetTensorData<float>();
    batch.v = value.GetTensorData<float>();
    batch.pool = const_cast<float*>(pool.GetTensorData<float>());  // written in place: see the file comment
    batch.tables = tables.GetTensorData<int32_t>() + layer_ * num_seqs * shape.table_cols;
    batch.past_lens = past.GetTensorData<int32_t>() + layer_ * num_seqs;
    batch.query_starts = starts.GetTensorData<int32_t>();
    batch.num_seqs = num_seqs;
    batch.num_tokens = tokens;
    batch.out = output.GetTensorMutableData<float>();
    std::string bad = paged::validate(shape, batch);
    if (!bad.empty()) fail(bad);
    if (tokens == 0) return;

    thread_local std::vector<paged::Task> tasks;
    paged::plan(shape, batch, tasks);
    Job job{this, &shape, &batch, &tasks};
    context.ParallelFor(
        [](void* data, size_t index) {
          auto& j = *static_cast<Job*>(data);
          thread_local std::vector<float> scratch;
          scratch.resize(static_cast<size_t>(paged::scratch_floats(*j.shape)));
          j.self->tile_(*j.shape, *j.batch, (*j.tasks)[index], scratch.data());
        },
        tasks.size(), 0, &job);
    paged::write_new(shape, batch);
  }

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

  [[noreturn]] void fail(const std::string& message) const {
    throw Ort::Exception("PagedAttention node '" + name_ + "': " + message, ORT_INVALID_ARGUMENT);
  }

  paged::TileFn tile_;
  paged::Shape shape_;
  int64_t layer_ = 0;
  float scale_ = 0.0f;
  std::string name_;
};

struct AttentionOp : Ort::CustomOpBase<AttentionOp, AttentionKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new AttentionKernel(info); });
  }
  const char* GetName() const { return "PagedAttention"; }
  size_t GetInputTypeCount() const { return 7; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index >= 4 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

OrtCustomOp* paged_attention_custom_op() {
  static AttentionOp op;
  return &op;
}
