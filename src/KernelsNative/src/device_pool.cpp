#include "device_pool.h"

#include <cstdint>
#include <stdexcept>

namespace sparse24::cuda {

std::unique_ptr<DevicePool> DevicePool::create(const char* library, int ordinal, size_t bytes, std::string& why_not) {
  if (bytes == 0) {
    why_not = "a KV pool of 0 bytes";
    return nullptr;
  }
  std::shared_ptr<Driver> driver = Driver::open(library, ordinal, why_not);
  if (!driver) return nullptr;
  try {
    driver->bind();
  } catch (const std::runtime_error& e) {
    why_not = e.what();
    return nullptr;
  }
  CUdeviceptr pointer = 0;
  if (CUresult r = driver->api().cuMemAlloc(&pointer, bytes)) {
    why_not = "cannot allocate a KV pool of " + std::to_string(bytes) + " bytes on device " + std::to_string(ordinal) + ": " +
              driver->error_name(r) + " (lower the KV cache budget)";
    return nullptr;
  }
  return std::unique_ptr<DevicePool>(new DevicePool(std::move(driver), pointer, bytes));
}

DevicePool::~DevicePool() {
  // The pool outlives every session that reads it (the engine disposes the runner first). A
  // context that cannot be made current is gone, and its memory with it.
  if (driver_->make_current() == 0) driver_->api().cuMemFree(pointer_);
}

void DevicePool::check_range(size_t offset, size_t bytes, const char* what) const {
  if (offset > bytes_ || bytes > bytes_ - offset) {
    throw std::out_of_range(std::string(what) + ": bytes [" + std::to_string(offset) + ", " + std::to_string(offset + bytes) +
                            ") are outside the " + std::to_string(bytes_) + "-byte KV pool");
  }
}

void DevicePool::copy_and_wait(CUdeviceptr target, CUdeviceptr source, size_t bytes, const char* what) const {
  if (bytes == 0) return;
  driver_->bind();
  driver_->check(driver_->api().cuMemcpy(target, source, bytes), what);
  // A device-to-device cuMemcpy may return before the copy ends; and it runs on the legacy
  // stream, which the provider's non-blocking stream does not wait for.
  driver_->check(driver_->api().cuCtxSynchronize(), "cuCtxSynchronize");
}

void DevicePool::copy(size_t source, size_t target, size_t bytes) const {
  check_range(source, bytes, "copy source");
  check_range(target, bytes, "copy target");
  if (source < target + bytes && target < source + bytes && bytes > 0) {
    throw std::invalid_argument("copy: the source and target ranges overlap");
  }
  copy_and_wait(pointer_ + target, pointer_ + source, bytes, "cuMemcpy (device to device)");
}

void DevicePool::read(size_t offset, void* host, size_t bytes) const {
  check_range(offset, bytes, "read");
  copy_and_wait(reinterpret_cast<uintptr_t>(host), pointer_ + offset, bytes, "cuMemcpy (device to host)");
}

void DevicePool::write(size_t offset, const void* host, size_t bytes) const {
  check_range(offset, bytes, "write");
  copy_and_wait(pointer_ + offset, reinterpret_cast<uintptr_t>(host), bytes, "cuMemcpy (host to device)");
}

}  // namespace sparse24::cuda
