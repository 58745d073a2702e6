// The engine's KV pool in device memory: one allocation on a CUDA device (the primary context
// ONNX Runtime's CUDA provider runs in), and the copies the engine makes outside the model's
// calls: block to block (copy-on-write of a shared prefix block) and device to host and back
// (KV compression reads keys on the host and writes the compacted blocks back). Every copy
// waits for the device before it returns, so the next call of the model, on the provider's own
// non-blocking stream, sees it, and the host sees what the model's last call wrote (ONNX
// Runtime synchronises its stream at the end of every run).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "cuda_driver.h"

namespace sparse24::cuda {

class DevicePool {
 public:
  // A pool of `bytes` on device `ordinal` through the driver `library`; null with `why_not`
  // filled when the driver, the device or the memory is missing.
  static std::unique_ptr<DevicePool> create(const char* library, int ordinal, size_t bytes, std::string& why_not);
  ~DevicePool();
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  CUdeviceptr pointer() const { return pointer_; }
  size_t bytes() const { return bytes_; }

  // Copies `bytes` from offset `source` to offset `target` of the pool (ranges may not overlap).
  void copy(size_t source, size_t target, size_t bytes) const;
  // Copies `bytes` from offset `offset` of the pool to host memory.
  void read(size_t offset, void* host, size_t bytes) const;
  // Copies `bytes` of host memory to offset `offset` of the pool.
  void write(size_t offset, const void* host, size_t bytes) const;

 private:
  DevicePool(std::shared_ptr<Driver> driver, CUdeviceptr pointer, size_t bytes)
      : driver_(std::move(driver)), pointer_(pointer), bytes_(bytes) {}
  // Throws std::out_of_range unless [offset, offset + bytes) lies in the pool.
  void check_range(size_t offset, size_t bytes, const char* what) const;
  void copy_and_wait(CUdeviceptr target, CUdeviceptr source, size_t bytes, const char* what) const;

  std::shared_ptr<Driver> driver_;
  CUdeviceptr pointer_;
  size_t bytes_;
};

}  // namespace sparse24::cuda
