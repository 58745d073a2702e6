// ONNX Runtime custom op SparseMatMul24 (domain ai.serving): Y = A · W (+ bias), W in the
// 2:4 compressed format of sparse24.h. Inputs: A T [..., K], values T [N, K4/2], masks uint8
// [N, ceil(K4/8)], optional bias T [N]; attribute K; output Y T [..., N]; T = float or float16
// (registered as two ops of the same name). values, masks and bias must be initializers:
// the kernel keeps pointers to ONNX Runtime's copy (custom ops have no PrePack, and a
// repacked copy would double the weight memory). fp16 is computed in fp32. The same ops
// are registered for ONNX Runtime's CUDA provider too (cuda_ops.cpp): a session with that
// provider runs them on the GPU, one without it runs these.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_op.h"
#include "cuda_ops.h"
#include "decoder_ops.h"
#include "device_pool.h"
#include "matmul_weights.h"
#include "op_support.h"
#include "sparse24_cuda.h"

namespace {

using sparse24::Kernels;

// 64 output columns per task: ~1152 rows of gemma3-1b give 18 tasks for 2–16 threads.
constexpr int64_t kColumnsPerTask = 64;
// GEMM: up to 4 blocks of A rows (256 rows on AVX-512) per task, which share one decoding
// of the task's keep-masks; more rows split into more tasks.
constexpr int64_t kBlocksPerTask = 4;

template <class T>
class Kernel {
 public:
  static constexpr const char* kProvider = nullptr;  // the CPU provider
  static OrtMemType memory_type(size_t) { return OrtMemTypeDefault; }

  explicit Kernel(const OrtKernelInfo* info) : kernels_(choose_kernels()), matmul_(Ort::ConstKernelInfo(info)) {}

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
    const auto [a, y, m] = matmul_.bind(context);
    if (m == 0) return;
    Fp32View<T> view(a, m * weights_.shape.k, y, m * weights_.shape.n);
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

  Kernels kernels_;
  MatmulWeights<T> matmul_;
  const sparse24::WeightsOf<T>& weights_ = matmul_.get();
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
  // Domains and ops live as long as the process: ORT keeps pointers to them in every session.
  // The CUDA provider's PagedAttention reads and writes kv_pool as device memory; a CUDA
  // session whose pool is host memory (one-op test sessions) must not get it, or ONNX Runtime
  // would copy the pool in for every call and drop the op's writes. So the session says which:
  // serving.kv_pool = host (default) or device (the engine's paged sessions on CUDA).
  static MatmulOp<Kernel<float>, float> fp32;
  static MatmulOp<Kernel<uint16_t>, uint16_t> fp16;
  static Ort::CustomOpDomain host_pool{kDomain}, device_pool{kDomain};
  static bool added = [] {
    for (Ort::CustomOpDomain* domain : {&host_pool, &device_pool}) {
      domain->Add(&fp32);
      domain->Add(&fp16);
      for (OrtCustomOp* op : paged_attention_custom_ops()) domain->Add(op);
      domain->Add(cuda_matmul_custom_ops()[0]);
      domain->Add(cuda_matmul_custom_ops()[1]);
      // CPU kernels only: on a CUDA session ONNX Runtime runs them on the CPU provider.
      domain->Add(qk_norm_rope_custom_op());
      domain->Add(gelu_gate_custom_op());
    }
    for (OrtCustomOp* op : cuda_attention_custom_ops()) device_pool.Add(op);
    return true;
  }();
  (void)added;
  return guarded([&] {
    Ort::UnownedSessionOptions session(options);
    const std::string pool = session.GetConfigEntryOrDefault(kKvPoolConfigKey, "host");
    if (pool != "host" && pool != "device") {
      throw std::invalid_argument(std::string(kKvPoolConfigKey) + " is '" + pool + "', not host or device");
    }
    session.Add(pool == "device" ? device_pool : host_pool);
  });
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

// Why the ops' CUDA kernels cannot run on device `ordinal` (no driver, no such device, one
// older than sm_80, no PTX in this build), or "" when they can; for the server's device
// choice. The text stays valid until the calling thread's next call.
extern "C" __attribute__((visibility("default"))) const char* ServingCudaProbe(int ordinal) {
  thread_local std::string why_not;
  why_not = sparse24::cuda::probe_driver("libcuda.so.1", ordinal);
  return why_not.c_str();
}

// The engine's KV pool in device memory (device_pool.h), for src/Runtime's CudaKvPool. Each
// function returns null on success or the reason it failed (valid until the calling thread's
// next call); Create hands back the pool and its device address.
namespace {
thread_local std::string pool_error;

template <class F>
const char* pool_call(F&& call) {
  try {
    call();
    return nullptr;
  } catch (const std::exception& e) {
    pool_error = e.what();
    return pool_error.c_str();
  }
}
}  // namespace

extern "C" __attribute__((visibility("default"))) const char* ServingDevicePoolCreate(int ordinal, uint64_t bytes, void** pool,
                                                                                      uint64_t* pointer) {
  std::unique_ptr<sparse24::cuda::DevicePool> created =
      sparse24::cuda::DevicePool::create("libcuda.so.1", ordinal, static_cast<size_t>(bytes), pool_error);
  if (!created) return pool_error.c_str();
  *pointer = created->pointer();
  *pool = created.release();
  return nullptr;
}

extern "C" __attribute__((visibility("default"))) const char* ServingDevicePoolCopy(void* pool, uint64_t source, uint64_t target,
                                                                                    uint64_t bytes) {
  return pool_call([&] { static_cast<sparse24::cuda::DevicePool*>(pool)->copy(source, target, bytes); });
}

extern "C" __attribute__((visibility("default"))) const char* ServingDevicePoolRead(void* pool, uint64_t offset, void* host,
                                                                                    uint64_t bytes) {
  return pool_call([&] { static_cast<sparse24::cuda::DevicePool*>(pool)->read(offset, host, bytes); });
}

extern "C" __attribute__((visibility("default"))) const char* ServingDevicePoolWrite(void* pool, uint64_t offset, const void* host,
                                                                                     uint64_t bytes) {
  return pool_call([&] { static_cast<sparse24::cuda::DevicePool*>(pool)->write(offset, host, bytes); });
}

extern "C" __attribute__((visibility("default"))) void ServingDevicePoolFree(void* pool) {
  delete static_cast<sparse24::cuda::DevicePool*>(pool);
}
