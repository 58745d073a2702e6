// ONNX Runtime custom op SparseMatMul24 (domain ai.serving): Y = A · W (+ bias), W in the
// 2:4 compressed format of sparse24.h. Inputs: A T [..., K], values T [N, K4/2], masks uint8
// [N, ceil(K4/8)], optional bias T [N]; attribute K; output Y T [..., N]; T = float or float16
// (registered as two ops of the same name). values, masks and bias must be initializers:
// the kernel keeps pointers to ONNX Runtime's copy (custom ops have no PrePack, and a
// repacked copy would double the weight memory). fp16 is computed in fp32. With
// SERVING_SPARSE24_DEVICE=cuda and a GPU, the CUDA kernels run instead (sparse24_cuda.h).
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_op.h"
#include "decoder_ops.h"
#include "op_support.h"

namespace {

using sparse24::Kernels;

// 64 output columns per task: ~1152 rows of gemma3-1b give 18 tasks for 2–16 threads.
constexpr int64_t kColumnsPerTask = 64;
// GEMM: up to 4 blocks of A rows (256 rows on AVX-512) per task, which share one decoding
// of the task's keep-masks; more rows split into more tasks.
constexpr int64_t kBlocksPerTask = 4;

template <class T>
struct Element;
template <>
struct Element<float> {
  static constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
};
template <>
struct Element<uint16_t> {
  static constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
};

template <class T>
class Kernel {
 public:
  explicit Kernel(const OrtKernelInfo* info) : kernels_(choose_kernels()) {
    Ort::ConstKernelInfo ki(info);
    name_ = ki.GetNodeName();
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
    device_ = choose_device(weights_);
  }

  OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
    return guarded([&] { Compute(raw); });
  }

 private:
  struct Job {
    const Kernel* self;
    const float* a;
    int64_t m;
    float* y;
    int64_t column_tasks;
    float* packed = nullptr;                   // GEMM: blocks of A transposed; GEMV: A chunked or null
    const sparse24::GemmPlan* plan = nullptr;  // GEMM: its segments of blocks
    int64_t first_runs = 0;                    // GEMM: runs of blocks in the first segment
  };

  void Compute(OrtKernelContext* raw) {
    Ort::KernelContext context(raw);
    Ort::ConstValue input = context.GetInput(0);
    std::vector<int64_t> shape = input.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.empty() || shape.back() != weights_.shape.k) {
      fail("input A must end in K = " + std::to_string(weights_.shape.k));
    }
    int64_t m = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) m *= shape[i];
    shape.back() = weights_.shape.n;
    Ort::UnownedValue output = context.GetOutput(0, shape);
    if (m == 0) return;
    if (device_) {
      device_->run(static_cast<const T*>(input.GetTensorRawData()), m, static_cast<T*>(output.GetTensorMutableRawData()));
      return;
    }
    Fp32View<T> view(static_cast<const T*>(input.GetTensorRawData()), m * weights_.shape.k,
                     static_cast<T*>(output.GetTensorMutableRawData()), m * weights_.shape.n);
    if (m <= sparse24::kGemvMaxRows) {
      gemv(context, view.a(), m, view.y());
    } else {
      gemm(context, view.a(), m, view.y());
    }
    view.commit();
  }

  // From kGemvChunkedRows rows, A is first copied as whole chunks (once per call, into the
  // calling thread's buffer) for every task to read.
  void gemv(Ort::KernelContext& context, const float* a, int64_t m, float* y) const {
    Job job{this, a, m, y, column_tasks()};
    if (m >= sparse24::kGemvChunkedRows) {
      job.packed = thread_buffer(weights_.shape.k / 16 * m * 16);
      sparse24::chunk_a(a, m, weights_.shape.k, job.packed);
    }
    context.ParallelFor(
        [](void* data, size_t task) {
          auto& j = *static_cast<Job*>(data);
          auto [begin, end] = j.self->columns(static_cast<int64_t>(task));
          j.self->kernels_.set(j.self->weights_.values).gemv(j.self->weights_, j.a, j.packed, j.m, j.y, begin, end);
        },
        static_cast<size_t>(job.column_tasks), 0, &job);
  }

  // Packs every block of A once into the calling thread's buffer (full-width blocks, then one
  // narrower block for the rows left over), then splits column ranges × runs of blocks of
  // each segment across the pool.
  void gemm(Ort::KernelContext& context, const float* a, int64_t m, float* y) const {
    const sparse24::GemmPlan plan = kernels_.gemm_plan(m, weights_.shape.k);
    auto runs = [](const sparse24::GemmSegment& s) { return (s.blocks + kBlocksPerTask - 1) / kBlocksPerTask; };
    const int64_t first_runs = runs(plan.segments[0]), all_runs = first_runs + (plan.count > 1 ? runs(plan.segments[1]) : 0);
    Job job{this, a, m, y, column_tasks(), thread_buffer(plan.packed_floats), &plan, first_runs};
    context.ParallelFor(
        [](void* data, size_t block) {
          auto& j = *static_cast<Job*>(data);
          j.plan->pack(j.a, j.self->weights_.shape.k, j.packed, static_cast<int64_t>(block));
        },
        static_cast<size_t>(plan.total_blocks()), 0, &job);
    context.ParallelFor(
        [](void* data, size_t task) {
          auto& j = *static_cast<Job*>(data);
          const int64_t run = static_cast<int64_t>(task) / j.column_tasks;
          const sparse24::GemmSegment& s = j.plan->segments[run < j.first_runs ? 0 : 1];
          const int64_t b_begin = (run < j.first_runs ? run : run - j.first_runs) * kBlocksPerTask;
          auto [begin, end] = j.self->columns(static_cast<int64_t>(task) % j.column_tasks);
          j.self->kernels_.set(j.self->weights_.values).gemm[s.vectors - 1](
              j.self->weights_, j.packed + s.packed_offset, s.rows, j.y + s.m0 * j.self->weights_.shape.n, b_begin,
              std::min(b_begin + kBlocksPerTask, s.blocks), begin, end);
        },
        static_cast<size_t>(all_runs * job.column_tasks), 0, &job);
  }

  // Packed or chunked A: M·K floats (plus padding), kept by the thread that runs the session
  // and grown to its largest call, so prefill calls do not pay fresh pages each time. With the
  // engine's default 512-token prefill step that is at most 14 MB (K = 6912: gemma3-1b's
  // down_proj).
  static float* thread_buffer(int64_t floats) {
    thread_local sparse24::Scratch buffer;
    return buffer.get(static_cast<size_t>(floats));
  }

  int64_t column_tasks() const { return (weights_.shape.n + kColumnsPerTask - 1) / kColumnsPerTask; }

  std::pair<int64_t, int64_t> columns(int64_t task) const {
    const int64_t begin = task * kColumnsPerTask;
    return {begin, std::min(begin + kColumnsPerTask, weights_.shape.n)};
  }

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

  [[noreturn]] void fail(const std::string& message) const {
    throw Ort::Exception("SparseMatMul24 node '" + name_ + "': " + message, ORT_INVALID_GRAPH);
  }

  Kernels kernels_;
  sparse24::WeightsOf<T> weights_;
  std::vector<float> bias_;
  std::string name_;
  std::unique_ptr<sparse24::cuda::DeviceMatmul<T>> device_;  // null: the CPU kernels
};

template <class T>
struct Op : Ort::CustomOpBase<Op<T>, Kernel<T>, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new Kernel<T>(info); });
  }

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

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    // A runtime older than these headers: version 1 of the API can still carry the message.
    return api_base->GetApi(1)->CreateStatus(ORT_FAIL, "SparseMatMul24 was built for a newer ONNX Runtime API");
  }
  Ort::InitApi(api);
  // Domain and ops live as long as the process: ORT keeps pointers to them in every session.
  static Op<float> fp32;
  static Op<uint16_t> fp16;
  static Ort::CustomOpDomain domain{kDomain};
  static bool added = [] {
    domain.Add(&fp32);
    domain.Add(&fp16);
    domain.Add(paged_attention_custom_op());
    domain.Add(qk_norm_rope_custom_op());
    domain.Add(gelu_gate_custom_op());
    return true;
  }();
  (void)added;
  return guarded([&] { Ort::UnownedSessionOptions(options).Add(domain); });
}

// The ISA the op's kernels use in this process (SERVING_SPARSE24_ISA and the CPU), for the
// server's metrics; "invalid" when SERVING_SPARSE24_ISA names none (sessions then fail to load).
extern "C" __attribute__((visibility("default"))) const char* ServingSparse24Isa() {
  try {
    return sparse24::isa_name(choose_kernels().isa);
  } catch (const std::exception&) {
    return "invalid";
  }
}
