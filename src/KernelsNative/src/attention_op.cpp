// ONNX Runtime custom op PagedAttention (domain ai.serving): causal grouped-query attention
// over a pool of KV blocks, read in place (layout and semantics in paged_attention.h).
//
// Inputs: query float [..., T, num_heads·D] (post-RoPE), key and value float [..., T, kv·D]
// (key post-RoPE), kv_pool float or float16 [num_blocks, 2, kv, block_size, D] (registered as
// two ops of the same name; an fp16 pool's keys and values are rounded to nearest even when
// stored and widened to fp32 when read, and the math stays fp32), block_tables int32
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

#include <algorithm>
#include <thread>
#include <vector>

#include "attention_inputs.h"
#include "attention_op.h"
#include "op_support.h"
#include "paged_attention.h"

namespace {

// T: the pool's element type (float, or uint16_t for float16).
template <class T>
class AttentionKernel {
 public:
  static constexpr const char* kProvider = nullptr;  // the CPU provider
  static OrtMemType memory_type(size_t) { return OrtMemTypeDefault; }

  explicit AttentionKernel(const OrtKernelInfo* info)
      : kernels_(paged::kernels_for(choose_kernels().isa).of(static_cast<T*>(nullptr))),
        inputs_(Ort::ConstKernelInfo(info)) {}

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] { Compute(raw); });
  }

 private:
  struct Job {
    const AttentionKernel* self;
    const paged::Shape* shape;
    const paged::BatchOf<T>* batch;
    const std::vector<paged::Task>* tasks;
  };

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext context(raw);
    paged::Shape shape;
    paged::BatchOf<T> batch;
    inputs_.read(context, shape, batch);
    if (batch.num_tokens == 0) return;

    // Fewer tasks than cores (decode of a few sequences): split their keys so every core works.
    static const int64_t threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
    thread_local std::vector<paged::Task> tasks;
    thread_local std::vector<float> partials;
    const int64_t slots = paged::plan(shape, batch, tasks, threads);
    partials.resize(static_cast<size_t>(paged::partial_floats(shape, slots)));
    batch.partials = partials.data();
    Job job{this, &shape, &batch, &tasks};
    context.ParallelFor(
        [](void* data, size_t index) {
          auto& j = *static_cast<Job*>(data);
          thread_local std::vector<float> scratch;
          scratch.resize(static_cast<size_t>(paged::scratch_floats<T>(*j.shape)));
          j.self->kernels_.tile(*j.shape, *j.batch, (*j.tasks)[index], scratch.data());
        },
        tasks.size(), 0, &job);
    if (slots > 0) paged::merge_partials(shape, batch, tasks);
    kernels_.write_new(shape, batch);
  }

  paged::KernelsOf<T> kernels_;
  AttentionInputs inputs_;
};

}  // namespace

const std::vector<OrtCustomOp*>& paged_attention_custom_ops() {
  static AttentionOp<AttentionKernel<float>, float> fp32;
  static AttentionOp<AttentionKernel<uint16_t>, uint16_t> fp16;
  static const std::vector<OrtCustomOp*> ops{&fp32, &fp16};
  return ops;
}
