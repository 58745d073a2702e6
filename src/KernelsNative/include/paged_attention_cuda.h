// The CUDA side of PagedAttention: the op's attention and KV write as two launches on the
// caller's stream (ONNX Runtime's CUDA provider), over device tensors. Kernels:
// src/cuda/paged_attention_kernels.cu; launch layout: src/cuda/attention_launch.h.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "paged_attention.h"

namespace sparse24::cuda {
class Driver;
}

namespace paged::cuda {

// Largest head_size the kernels take (each lane keeps head_size / 32 accumulators).
int64_t max_head_size();

class DeviceAttention {
 public:
  // Null, with `why_not` filled, when the driver, device `ordinal` (sm_80 or newer) or this
  // build's PTX is missing. `library`: libcuda.so.1 (tests pass others).
  static std::unique_ptr<DeviceAttention> create(const char* library, int ordinal, std::string& why_not);
  ~DeviceAttention();
  DeviceAttention(const DeviceAttention&) = delete;
  DeviceAttention& operator=(const DeviceAttention&) = delete;

  // batch.q, k, v, pool and out are device pointers; tables, past_lens and query_starts are
  // host memory, already checked by paged::validate. Copies those three (a few hundred bytes
  // per layer) to the device and launches attention, then the KV write, on `stream`: the
  // _f32 kernels for a float pool, the _f16 ones for a float16 pool (T = uint16_t).
  template <class T>
  void run(const Shape& shape, const BatchOf<T>& batch, void* stream);

 private:
  explicit DeviceAttention(std::shared_ptr<sparse24::cuda::Driver> driver);

  std::shared_ptr<sparse24::cuda::Driver> driver_;
  // Device copy of (tables, past_lens, query_starts), grown to the largest call. Calls are
  // serialized here and ordered on the session's one compute stream, so a later call's copy
  // lands after the earlier call's kernels have read it.
  std::mutex mutex_;
  unsigned long long indices_ = 0;
  size_t indices_bytes_ = 0;
};

}  // namespace paged::cuda
