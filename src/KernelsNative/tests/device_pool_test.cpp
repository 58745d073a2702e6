// The device KV pool (device_pool.h) on a driver over host memory (fake_cuda_driver.cpp): its
// copies land where asked, each waits for the device, and bad ranges and missing memory are
// refused with a reason.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_pool.h"
#include "sparse24_cuda.h"

namespace {

using sparse24::cuda::DevicePool;

struct FakeDriver {
  FakeDriver() : library(dlopen(FAKE_CUDA_DRIVER, RTLD_NOW | RTLD_LOCAL)) {
    synchronizations = reinterpret_cast<int (*)()>(dlsym(library, "fake_cuda_synchronizations"));
    set_memory = reinterpret_cast<void (*)(size_t)>(dlsym(library, "fake_cuda_set_memory"));
  }
  ~FakeDriver() { dlclose(library); }
  void* library;
  int (*synchronizations)();
  void (*set_memory)(size_t);
};

// The pool on the fake driver; null (with the reason checked) in a build without PTX, where
// the driver refuses every device.
std::unique_ptr<DevicePool> fake_pool(size_t bytes, std::string& why_not) {
  std::unique_ptr<DevicePool> pool = DevicePool::create(FAKE_CUDA_DRIVER, 0, bytes, why_not);
  if (!sparse24::cuda::has_ptx()) {
    EXPECT_EQ(pool, nullptr);
    EXPECT_NE(why_not.find("no PTX"), std::string::npos) << why_not;
  }
  return pool;
}

TEST(DevicePool, WithoutADriverIsNullWithAReason) {
  std::string why;
  EXPECT_EQ(DevicePool::create("libserving-no-such-driver.so.1", 0, 4096, why), nullptr);
  EXPECT_NE(why.find("no CUDA driver"), std::string::npos) << why;
}

TEST(DevicePool, CopiesBlocksAndRoundTripsThroughTheHost) {
  FakeDriver fake;
  ASSERT_NE(fake.synchronizations, nullptr);
  std::string why;
  std::unique_ptr<DevicePool> pool = fake_pool(4 * 256, why);
  if (!sparse24::cuda::has_ptx()) return;
  ASSERT_NE(pool, nullptr) << why;
  ASSERT_EQ(pool->bytes(), 1024u);

  std::vector<uint8_t> blocks(1024);
  std::iota(blocks.begin(), blocks.end(), uint8_t{0});
  pool->write(0, blocks.data(), blocks.size());
  const int before = fake.synchronizations();
  pool->copy(256, 768, 256);  // block 1 over block 3
  EXPECT_EQ(fake.synchronizations(), before + 1) << "a device-to-device copy waits for the device";

  std::vector<uint8_t> read(1024);
  pool->read(0, read.data(), read.size());
  for (size_t i = 0; i < 1024; ++i) {
    const uint8_t expected = i >= 768 ? blocks[i - 512] : blocks[i];
    ASSERT_EQ(read[i], expected) << "byte " << i;
  }
  std::vector<uint8_t> part(16);
  pool->read(770, part.data(), part.size());
  EXPECT_EQ(part[0], blocks[258]);
}

TEST(DevicePool, RefusesRangesOutsideThePoolAndOverlappingCopies) {
  std::string why;
  std::unique_ptr<DevicePool> pool = fake_pool(1024, why);
  if (!sparse24::cuda::has_ptx()) return;
  ASSERT_NE(pool, nullptr) << why;
  std::vector<uint8_t> host(64);
  EXPECT_THROW(pool->read(1000, host.data(), 64), std::out_of_range);
  EXPECT_THROW(pool->write(SIZE_MAX - 8, host.data(), 64), std::out_of_range);
  EXPECT_THROW(pool->copy(0, 1000, 64), std::out_of_range);
  EXPECT_THROW(pool->copy(0, 32, 64), std::invalid_argument);
  pool->copy(0, 64, 64);  // adjacent ranges do not overlap
}

TEST(DevicePool, TooLargeForTheDeviceIsNullWithAReason) {
  FakeDriver fake;
  ASSERT_NE(fake.set_memory, nullptr);
  fake.set_memory(1 << 20);
  std::string why;
  std::unique_ptr<DevicePool> pool = fake_pool(size_t{2} << 20, why);
  fake.set_memory(SIZE_MAX);
  if (!sparse24::cuda::has_ptx()) return;
  EXPECT_EQ(pool, nullptr);
  EXPECT_NE(why.find("CUDA_ERROR_OUT_OF_MEMORY"), std::string::npos) << why;
  EXPECT_NE(why.find("2097152 bytes on device 0"), std::string::npos) << why;
}

}  // namespace
