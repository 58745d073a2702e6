// DeviceAttention: the block tables, lengths and query starts to the device, then the
// attention kernel and the KV write, both on the caller's stream.
#include <climits>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "cuda/attention_launch.h"
#include "cuda_driver.h"
#include "paged_attention_cuda.h"

namespace paged::cuda {

using sparse24::cuda::CUdeviceptr;
using sparse24::cuda::CUfunction;
using sparse24::cuda::CUstream;
using sparse24::cuda::Driver;

int64_t max_head_size() { return paged_launch::kMaxHeadSize; }

std::unique_ptr<DeviceAttention> DeviceAttention::create(const char* library, int ordinal, std::string& why_not) {
  std::shared_ptr<Driver> driver = Driver::open(library, ordinal, why_not);
  if (!driver) return nullptr;
  return std::unique_ptr<DeviceAttention>(new DeviceAttention(std::move(driver)));
}

DeviceAttention::DeviceAttention(std::shared_ptr<Driver> driver) : driver_(std::move(driver)) {}

DeviceAttention::~DeviceAttention() {
  if (indices_ != 0) driver_->api().cuMemFree(indices_);
}

template <class T>
void DeviceAttention::run(const Shape& s, const BatchOf<T>& b, void* stream) {
  if (s.head_size > paged_launch::kMaxHeadSize) {
    throw std::invalid_argument("head_size " + std::to_string(s.head_size) + " is above the CUDA kernels' " +
                                std::to_string(paged_launch::kMaxHeadSize));
  }
  if (b.num_tokens > INT_MAX || s.table_cols * b.num_seqs > INT_MAX) {
    throw std::invalid_argument("the batch does not fit the CUDA kernels' 32-bit sizes");
  }
  if (b.num_tokens == 0) return;
  const size_t table_ints = static_cast<size_t>(b.num_seqs * s.table_cols), seqs = static_cast<size_t>(b.num_seqs);
  std::vector<int32_t> host(table_ints + 2 * seqs + 1);
  std::copy(b.tables, b.tables + table_ints, host.begin());
  std::copy(b.past_lens, b.past_lens + seqs, host.begin() + static_cast<std::ptrdiff_t>(table_ints));
  std::copy(b.query_starts, b.query_starts + seqs + 1, host.begin() + static_cast<std::ptrdiff_t>(table_ints + seqs));

  std::lock_guard<std::mutex> lock(mutex_);
  const Driver& driver = *driver_;
  driver.bind();
  const size_t bytes = host.size() * sizeof(int32_t);
  if (bytes > indices_bytes_) {
    if (indices_ != 0) driver.api().cuMemFree(indices_);
    indices_ = 0;
    indices_bytes_ = 0;
    driver.check(driver.api().cuMemAlloc(&indices_, bytes), "cuMemAlloc (block tables)");
    indices_bytes_ = bytes;
  }
  CUstream on = static_cast<CUstream>(stream);
  // From pageable memory the driver stages the bytes before returning, so `host` may go.
  driver.check(driver.api().cuMemcpyHtoDAsync(indices_, host.data(), bytes, on), "cuMemcpyHtoDAsync (block tables)");

  CUdeviceptr q = reinterpret_cast<CUdeviceptr>(b.q), k = reinterpret_cast<CUdeviceptr>(b.k),
              v = reinterpret_cast<CUdeviceptr>(b.v), pool = reinterpret_cast<CUdeviceptr>(b.pool),
              out = reinterpret_cast<CUdeviceptr>(b.out);
  CUdeviceptr tables = indices_, past = indices_ + table_ints * sizeof(int32_t),
              starts = past + seqs * sizeof(int32_t);
  int num_seqs = static_cast<int>(b.num_seqs), num_heads = static_cast<int>(s.num_heads),
      kv_heads = static_cast<int>(s.kv_heads), head_size = static_cast<int>(s.head_size),
      block_size = static_cast<int>(s.block_size), table_cols = static_cast<int>(s.table_cols),
      window = static_cast<int>(s.window);
  float scale = s.scale;
  const unsigned tokens = static_cast<unsigned>(b.num_tokens);
  constexpr bool half_pool = std::is_same_v<T, uint16_t>;
  const CUfunction attend = half_pool ? driver.attention_f16() : driver.attention_f32();
  const CUfunction store = half_pool ? driver.write_kv_f16() : driver.write_kv_f32();
  void* attention[] = {&q, &k, &v, &pool, &tables, &past, &starts, &out, &num_seqs, &num_heads,
                       &kv_heads, &head_size, &block_size, &table_cols, &window, &scale};
  driver.check(driver.api().cuLaunchKernel(attend, tokens, static_cast<unsigned>(num_heads), 1, 32, 1, 1, 0, on, attention, nullptr),
               "cuLaunchKernel (PagedAttention)");
  void* write[] = {&k, &v, &pool, &tables, &past, &starts, &num_seqs, &kv_heads, &head_size, &block_size, &table_cols};
  driver.check(driver.api().cuLaunchKernel(store, tokens, static_cast<unsigned>(kv_heads), 1, 32, 1, 1, 0, on, write, nullptr),
               "cuLaunchKernel (PagedAttention KV write)");
}

template void DeviceAttention::run<float>(const Shape&, const BatchOf<float>&, void*);
template void DeviceAttention::run<uint16_t>(const Shape&, const BatchOf<uint16_t>&, void*);

}  // namespace paged::cuda
