// gpu_check: the GPU check for a machine with an NVIDIA GPU but no .NET, network or ONNX Runtime
// (benchmarks/gpu/native-check.sh builds and runs it). It drives the classes the CUDA ops use
// (DevicePool, DeviceAttention, DeviceMatmul: src/KernelsNative) through the CUDA driver and
// compares them with the CPU kernels on the same inputs, at gemma3-1b's shapes:
//   device-pool                   a 1 GiB pool: a pattern in, one block copied over another, read back
//   attention-{fp32,fp16}-{global,sliding}  two sequences, prefill chunks then 12 decode steps:
//                                 outputs within 1e-4 of the CPU op's kernels, pools bit-equal
//   attention-{fp32,fp16}-time    GPU and CPU µs per call: decode at 512 and 4096, batch 16 at 1024,
//                                 a 512-token chunk over 4096
//   matmul-{fp32,fp16}-KxN-mM     relative error against the CPU kernel; -time: GPU µs per call
// Prints "check NAME: ... PASS|FAIL" per check and "check NAME-time: ..." per timing; exits 1 when
// a check fails or the driver cannot be used ("check gpu: FAILED: <why>").
//   gpu_check [ordinal] [driver]   defaults 0 and libcuda.so.1; the driver argument lets a machine
//                                  without a GPU run it over a stand-in (tests/fake_cuda_driver.cpp)
#ifdef _OPENMP
#include <omp.h>
#else
// Built without OpenMP (CMakeLists.txt warns): the CPU reference runs on one thread, as its lines say.
static int omp_get_max_threads() { return 1; }
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_driver.h"
#include "device_pool.h"
#include "paged_attention.h"
#include "paged_attention_cuda.h"
#include "sparse24.h"
#include "sparse24_cuda.h"

namespace {

using sparse24::cuda::CUdeviceptr;
using sparse24::cuda::Driver;

struct Report {
  int failed = 0;

  void check(const std::string& name, const std::string& detail, bool ok) {
    std::printf("check %s: %s %s\n", name.c_str(), detail.c_str(), ok ? "PASS" : "FAIL");
    std::fflush(stdout);
    if (!ok) ++failed;
  }
  void timing(const std::string& name, const std::string& detail) {
    std::printf("check %s-time: %s\n", name.c_str(), detail.c_str());
    std::fflush(stdout);
  }
  // Runs a check; an exception (a launch the driver refused, a failed copy) is its failure.
  template <class F>
  void guard(const std::string& name, F run) {
    try {
      run();
    } catch (const std::exception& e) {
      check(name, std::string("threw: ") + e.what(), false);
    }
  }
};

std::string format(const char* pattern, double a, double b = 0, double c = 0) {
  char text[256];
  std::snprintf(text, sizeof text, pattern, a, b, c);
  return text;
}

// Device memory from the driver's primary context, freed at scope exit.
class DeviceBuffer {
 public:
  DeviceBuffer(const Driver& driver, size_t bytes) : driver_(driver), bytes_(bytes) {
    driver.check(driver.api().cuMemAlloc(&pointer_, bytes), "cuMemAlloc");
  }
  template <class T>
  DeviceBuffer(const Driver& driver, const std::vector<T>& host) : DeviceBuffer(driver, host.size() * sizeof(T)) {
    driver.check(driver.api().cuMemcpyHtoD(pointer_, host.data(), bytes_), "cuMemcpyHtoD");
  }
  ~DeviceBuffer() { driver_.api().cuMemFree(pointer_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <class T>
  T* as() const { return reinterpret_cast<T*>(pointer_); }
  // Waits for the device (every launch here is on the legacy stream), then copies all of it back.
  template <class T>
  void download(std::vector<T>& host) const {
    host.resize(bytes_ / sizeof(T));
    driver_.check(driver_.api().cuCtxSynchronize(), "cuCtxSynchronize");
    driver_.check(driver_.api().cuMemcpy(reinterpret_cast<uintptr_t>(host.data()), pointer_, bytes_), "cuMemcpy (to host)");
  }

 private:
  const Driver& driver_;
  size_t bytes_;
  CUdeviceptr pointer_ = 0;
};

std::vector<float> normals(std::mt19937& rng, size_t count) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(count);
  for (float& x : out) x = normal(rng);
  return out;
}

// fp32 values as T holds them: as is, or rounded to fp16 (nearest even), and back.
template <class T>
std::vector<T> stored(const std::vector<float>& values) {
  if constexpr (std::is_same_v<T, float>) {
    return values;
  } else {
    std::vector<uint16_t> halves(values.size());
    for (size_t i = 0; i < values.size(); ++i) halves[i] = sparse24::float_to_half(values[i]);
    return halves;
  }
}
float widen(float x) { return x; }
float widen(uint16_t x) { return sparse24::half_to_float(x); }
template <class T>
std::vector<float> widened(const std::vector<T>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = widen(values[i]);
  return out;
}
template <class T>
const char* type_name() { return std::is_same_v<T, float> ? "fp32" : "fp16"; }

// Best of `rounds` rounds of `calls` calls, in µs per call, `wait` closing each round.
template <class F, class W>
double best_us(int rounds, int calls, F call, W wait) {
  double best = INFINITY;
  for (int r = 0; r < rounds; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int c = 0; c < calls; ++c) call();
    wait();
    best = std::min(best, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / calls);
  }
  return best;
}

// ---- the device pool ------------------------------------------------------------------------

void check_device_pool(Report& report, const char* library, int ordinal) {
  constexpr size_t kBytes = size_t{1} << 30, kBlock = size_t{1} << 20, kSource = 3, kTarget = 1000;
  std::string why;
  std::unique_ptr<sparse24::cuda::DevicePool> pool = sparse24::cuda::DevicePool::create(library, ordinal, kBytes, why);
  if (!pool) return report.check("device-pool", "no 1 GiB pool: " + why, false);
  std::vector<uint32_t> pattern(kBytes / 4), back(kBytes / 4);
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<uint32_t>(i * 2654435761u);
  const auto start = std::chrono::steady_clock::now();
  pool->write(0, pattern.data(), kBytes);
  const double write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  pool->copy(kSource * kBlock, kTarget * kBlock, kBlock);
  pool->read(0, back.data(), kBytes);
  size_t wrong = 0;
  const size_t target_begin = kTarget * kBlock / 4, target_end = target_begin + kBlock / 4, shift = (kTarget - kSource) * kBlock / 4;
  for (size_t i = 0; i < back.size(); ++i) {
    const uint32_t expected = i >= target_begin && i < target_end ? pattern[i - shift] : pattern[i];
    wrong += back[i] != expected;
  }
  report.check("device-pool", format("1 GiB written (%.1f GB/s from pageable memory), 1 MiB block 3 copied over block 1000, "
                                     "read back: %.0f words differ",
                                     kBytes / write_s / 1e9, static_cast<double>(wrong)),
               wrong == 0);
}

// ---- PagedAttention -------------------------------------------------------------------------

// One layer of gemma3-1b's attention (4 query heads, 1 KV head, head_size 256, 16-slot blocks):
// a pool of random keys and values, and each sequence a shuffled run of blocks.
template <class T>
struct Layer {
  paged::Shape shape;
  std::vector<T> pool;
  std::vector<int32_t> tables;
};

template <class T>
Layer<T> make_layer(std::mt19937& rng, int64_t window, int64_t num_seqs, int64_t max_slots) {
  Layer<T> layer;
  paged::Shape& s = layer.shape;
  s.num_heads = 4;
  s.kv_heads = 1;
  s.head_size = 256;
  s.block_size = 16;
  s.window = window;
  s.scale = 1.0f / 16.0f;
  s.table_cols = (max_slots + s.block_size - 1) / s.block_size;
  s.num_blocks = num_seqs * s.table_cols + 3;
  layer.pool = stored<T>(normals(rng, static_cast<size_t>(s.num_blocks * s.block_elements())));
  std::vector<int32_t> blocks(static_cast<size_t>(s.num_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  layer.tables.assign(blocks.begin(), blocks.begin() + num_seqs * s.table_cols);
  return layer;
}

// One call's host inputs: `counts[s]` new tokens for sequence s after `past[s]` slots.
struct Call {
  std::vector<float> q, k, v;
  std::vector<int32_t> past, starts{0};
};

Call make_call(std::mt19937& rng, const paged::Shape& s, const std::vector<int64_t>& past, const std::vector<int64_t>& counts) {
  Call c;
  for (size_t seq = 0; seq < past.size(); ++seq) {
    c.past.push_back(static_cast<int32_t>(past[seq]));
    c.starts.push_back(c.starts.back() + static_cast<int32_t>(counts[seq]));
  }
  const size_t tokens = static_cast<size_t>(c.starts.back());
  c.q = normals(rng, tokens * s.num_heads * s.head_size);
  c.k = normals(rng, tokens * s.kv_heads * s.head_size);
  c.v = normals(rng, tokens * s.kv_heads * s.head_size);
  return c;
}

template <class T>
paged::BatchOf<T> batch_of(const Layer<T>& layer, const Call& c, const float* q, const float* k, const float* v, T* pool,
                           float* out) {
  paged::BatchOf<T> b;
  b.q = q;
  b.k = k;
  b.v = v;
  b.pool = pool;
  b.tables = layer.tables.data();
  b.past_lens = c.past.data();
  b.query_starts = c.starts.data();
  b.num_seqs = static_cast<int64_t>(c.past.size());
  b.num_tokens = c.starts.back();
  b.out = out;
  return b;
}

// The CPU op's call (attention_op.cpp): the plan split over this machine's threads, its tasks
// in parallel (OpenMP here, ONNX Runtime's pool there), the split tasks merged, the KV write.
template <class T>
void cpu_attention(const paged::Shape& s, paged::BatchOf<T> b, const paged::KernelsOf<T>& kernels) {
  std::vector<paged::Task> tasks;
  const int64_t slots = paged::plan(s, b, tasks, omp_get_max_threads());
  std::vector<float> partials(static_cast<size_t>(paged::partial_floats(s, slots)));
  b.partials = partials.data();
  const int64_t count = static_cast<int64_t>(tasks.size());
#pragma omp parallel
  {
    std::vector<float> scratch(static_cast<size_t>(paged::scratch_floats<T>(s)));
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < count; ++i) kernels.tile(s, b, tasks[i], scratch.data());
  }
  if (slots > 0) paged::merge_partials(s, b, tasks);
  kernels.write_new(s, b);
}

// Largest |a − b|, infinite when either holds a NaN.
double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
  }
  return worst;
}

// Prefill in chunks (130 and 47 tokens, then 60 and 1), then 12 decode steps of both sequences,
// each call on the CPU and on the GPU, each side on its own copy of the pool. A sliding layer
// drops the blocks that left the window from the tables after each call, as the engine frees them.
template <class T>
void check_attention(Report& report, const Driver& driver, paged::cuda::DeviceAttention& attention, const std::string& name,
                     int64_t window) {
  std::vector<std::vector<int64_t>> steps = {{130, 47}, {60, 1}};
  steps.resize(14, {1, 1});
  std::mt19937 rng(static_cast<uint32_t>(window + sizeof(T)));
  Layer<T> layer = make_layer<T>(rng, window, 2, 130 + 60 + 12);
  const paged::Shape& s = layer.shape;
  const paged::KernelsOf<T> kernels = paged::kernels_for(sparse24::detect_isa()).of(static_cast<T*>(nullptr));
  DeviceBuffer device_pool(driver, layer.pool);
  std::vector<int64_t> done(2, 0);
  double worst = 0;
  size_t pool_differences = 0;
  for (const std::vector<int64_t>& counts : steps) {
    const Call c = make_call(rng, s, done, counts);
    std::vector<float> cpu_out(c.starts.back() * s.num_heads * s.head_size, NAN), gpu_out(cpu_out);
    const paged::BatchOf<T> cpu = batch_of(layer, c, c.q.data(), c.k.data(), c.v.data(), layer.pool.data(), cpu_out.data());
    const std::string bad = paged::validate(s, cpu);
    if (!bad.empty()) throw std::invalid_argument(bad);
    cpu_attention(s, cpu, kernels);

    DeviceBuffer q(driver, c.q), k(driver, c.k), v(driver, c.v), out(driver, gpu_out);
    attention.run(s, batch_of(layer, c, q.as<float>(), k.as<float>(), v.as<float>(), device_pool.as<T>(), out.as<float>()), nullptr);
    out.download(gpu_out);
    worst = std::max(worst, max_difference(cpu_out, gpu_out));
    std::vector<T> pool_back;
    device_pool.download(pool_back);
    for (size_t i = 0; i < pool_back.size(); ++i) pool_differences += std::memcmp(&pool_back[i], &layer.pool[i], sizeof(T)) != 0;

    for (size_t seq = 0; seq < done.size(); ++seq) {
      done[seq] += counts[seq];
      for (int64_t col = 0; window > 0 && (col + 1) * s.block_size <= done[seq] - (window - 1); ++col) {
        layer.tables[seq * s.table_cols + col] = -1;
      }
    }
  }
  report.check(name, format("window %.0f, %.0f calls: max |gpu - cpu| %.2e (< 1e-4)", static_cast<double>(window),
                            static_cast<double>(steps.size()), worst) +
                         ", pool elements differing after the KV writes (bits): " + std::to_string(pool_differences),
               worst < 1e-4 && pool_differences == 0);
}

// A global layer's call, timed on both sides: `seqs` sequences of `context` past slots, `tokens` new ones each.
template <class T>
void time_attention(Report& report, const Driver& driver, paged::cuda::DeviceAttention& attention, const std::string& name,
                    const char* what, int64_t seqs, int64_t context, int64_t tokens) {
  std::mt19937 rng(7);
  Layer<T> layer = make_layer<T>(rng, 0, seqs, context + tokens);
  const paged::Shape& s = layer.shape;
  const Call c = make_call(rng, s, std::vector<int64_t>(seqs, context), std::vector<int64_t>(seqs, tokens));
  std::vector<float> out(c.starts.back() * s.num_heads * s.head_size, 0.0f);
  DeviceBuffer pool(driver, layer.pool), q(driver, c.q), k(driver, c.k), v(driver, c.v), device_out(driver, out);
  const paged::BatchOf<T> gpu = batch_of(layer, c, q.as<float>(), k.as<float>(), v.as<float>(), pool.as<T>(), device_out.as<float>());
  const paged::BatchOf<T> cpu = batch_of(layer, c, c.q.data(), c.k.data(), c.v.data(), layer.pool.data(), out.data());
  const paged::KernelsOf<T> kernels = paged::kernels_for(sparse24::detect_isa()).of(static_cast<T*>(nullptr));
  const double gpu_us = best_us(
      5, 20, [&] { attention.run(s, gpu, nullptr); },
      [&] { driver.check(driver.api().cuCtxSynchronize(), "cuCtxSynchronize"); });
  const double cpu_us = best_us(3, tokens > 1 ? 2 : 10, [&] { cpu_attention(s, cpu, kernels); }, [] {});
  report.timing(name, std::string(what) + format(": gpu %.1f us, cpu %.1f us per call (%.0f threads)", gpu_us, cpu_us,
                                                 omp_get_max_threads()));
}

template <class T>
void attention_checks(Report& report, const Driver& driver, paged::cuda::DeviceAttention& attention) {
  const std::string name = std::string("attention-") + type_name<T>();
  report.guard(name + "-global", [&] { check_attention<T>(report, driver, attention, name + "-global", 0); });
  // gemma3-1b slides over 512 tokens; 64 makes the window cut into these 202-token sequences.
  report.guard(name + "-sliding", [&] { check_attention<T>(report, driver, attention, name + "-sliding", 64); });
  report.guard(name + "-time", [&] {
    time_attention<T>(report, driver, attention, name, "decode b1 ctx512", 1, 512, 1);
    time_attention<T>(report, driver, attention, name, "decode b1 ctx4096", 1, 4096, 1);
    time_attention<T>(report, driver, attention, name, "decode b16 ctx1024", 16, 1024, 1);
    time_attention<T>(report, driver, attention, name, "prefill 512 over 4096", 1, 4096, 512);
  });
}

// ---- SparseMatMul24 -------------------------------------------------------------------------

// ‖y − reference‖₂ / ‖reference‖₂.
double relative_error(const std::vector<float>& y, const std::vector<float>& reference) {
  double difference = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double d = static_cast<double>(y[i]) - reference[i];
    difference += d * d;
    norm += static_cast<double>(reference[i]) * reference[i];
  }
  return std::isnan(difference) ? INFINITY : std::sqrt(difference / norm);
}

// Random 2:4 weights [k → n] with a bias, on the GPU (DeviceMatmul<T>: A and Y device tensors in
// T) against the CPU kernel on the same weights and the same (rounded) A, for M = 1 and 512.
template <class T>
void check_matmul(Report& report, const Driver& driver, const char* library, int ordinal, int64_t k, int64_t n) {
  // fp32: both sides sum in fp32 in different orders (≈ 4e-6 at K = 6912); fp16: Y is rounded to
  // halves (2.8e-4 RMS relative).
  const double tolerance = std::is_same_v<T, float> ? 2e-5 : 1e-3;
  const std::string shape_name = std::string("matmul-") + type_name<T>() + "-" + std::to_string(k) + "x" + std::to_string(n);
  std::mt19937 rng(static_cast<uint32_t>(k * 31 + n));
  const sparse24::Shape shape{k, n};
  const std::vector<float> dense = normals(rng, static_cast<size_t>(k * n)), bias = normals(rng, static_cast<size_t>(n));
  std::vector<float> values(static_cast<size_t>(n * shape.value_stride()));
  std::vector<uint8_t> masks(static_cast<size_t>(n * shape.mask_stride()));
  sparse24::pack(shape, dense.data(), values.data(), masks.data());
  const std::vector<T> weights = stored<T>(values);
  const sparse24::WeightsOf<T> w{shape, weights.data(), masks.data(), bias.data()};
  std::string why;
  std::unique_ptr<sparse24::cuda::DeviceMatmul<T>> gpu = sparse24::cuda::DeviceMatmul<T>::create(w, library, ordinal, why);
  if (!gpu) return report.check(shape_name, "no DeviceMatmul: " + why, false);
  const sparse24::Kernels cpu_kernels = sparse24::kernels_for(sparse24::detect_isa());
  for (const int64_t m : {int64_t{1}, int64_t{512}}) {
    const std::string name = shape_name + "-m" + std::to_string(m);
    report.guard(name, [&] {
      const std::vector<T> a = stored<T>(normals(rng, static_cast<size_t>(m * k)));
      DeviceBuffer a_device(driver, a), y_device(driver, static_cast<size_t>(m * n) * sizeof(T));
      gpu->run(a_device.as<T>(), m, y_device.as<T>(), nullptr);
      std::vector<T> y;
      y_device.download(y);
      std::vector<float> reference(static_cast<size_t>(m * n));
      sparse24::matmul(cpu_kernels, w, widened(a).data(), m, reference.data());
      const double error = relative_error(widened(y), reference);
      report.check(name, format("relative error %.2e (< %.0e)", error, tolerance), error < tolerance);
      const double us = best_us(
          5, 20, [&] { gpu->run(a_device.as<T>(), m, y_device.as<T>(), nullptr); },
          [&] { driver.check(driver.api().cuCtxSynchronize(), "cuCtxSynchronize"); });
      report.timing(name, format("gpu %.1f us per call (%.2f dense-equivalent TFLOP/s)", us, 2.0 * m * k * n / us / 1e6));
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  char* end = nullptr;
  const long ordinal = argc > 1 ? std::strtol(argv[1], &end, 10) : 0;
  if (argc > 1 && (*end != '\0' || ordinal < 0)) {
    std::printf("check gpu: FAILED: '%s' is not a device ordinal (usage: gpu_check [ordinal] [driver])\n", argv[1]);
    return 1;
  }
  const char* library = argc > 2 ? argv[2] : "libcuda.so.1";
  std::string why;
  const std::shared_ptr<Driver> driver = Driver::open(library, static_cast<int>(ordinal), why);
  if (!driver) {
    std::printf("check gpu: FAILED: %s\n", why.c_str());
    return 1;
  }
  driver->bind();
  std::printf("check gpu: device %ld through %s, PTX of %zu bytes; CPU reference: %s kernels, %d threads\n", ordinal, library,
              std::strlen(sparse24::cuda::kPtx), sparse24::isa_name(sparse24::detect_isa()), omp_get_max_threads());
  Report report;
  report.guard("device-pool", [&] { check_device_pool(report, library, static_cast<int>(ordinal)); });
  const std::unique_ptr<paged::cuda::DeviceAttention> attention =
      paged::cuda::DeviceAttention::create(library, static_cast<int>(ordinal), why);
  if (!attention) {
    report.check("attention", "no DeviceAttention: " + why, false);
  } else {
    attention_checks<float>(report, *driver, *attention);
    attention_checks<uint16_t>(report, *driver, *attention);
  }
  // gemma3-1b's linear layers: hidden 1152 → q 1024, → k / v 256, → gate / up 6912, down 6912 → 1152.
  const std::pair<int64_t, int64_t> shapes[] = {{1152, 1024}, {1152, 256}, {1152, 6912}, {6912, 1152}};
  for (const auto& [k, n] : shapes) {
    report.guard("matmul-fp32", [&] { check_matmul<float>(report, *driver, library, static_cast<int>(ordinal), k, n); });
    report.guard("matmul-fp16", [&] { check_matmul<uint16_t>(report, *driver, library, static_cast<int>(ordinal), k, n); });
  }
  std::printf("check gpu_check: %d failed\n", report.failed);
  return report.failed == 0 ? 0 : 1;
}
