// Runs the CUDA kernels of src/cuda/*.cu on the host (a test includes the .cu after this): each warp is 32 host
// threads (one per lane) that meet at a barrier for every warp-collective operation (the
// shuffle sum and mma.sp). The mma.sp model below is the PTX ISA's fragment layout for
// sparse m16n8k32 .f16 written from the matrix's side (which lane holds element (r, k)),
// the kernel is written from the lane's side (what do I load); agreement checks the
// kernel's indexing against that reading of the ISA, not the ISA itself.
#pragma once

#define SPARSE24_WARP_EMULATION 1

#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "sparse24.h"

#define __global__
#define __device__
#define __forceinline__ inline

struct EmulatedDim {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmulatedDim threadIdx, blockIdx;

namespace warp_emulator {

constexpr int kLanes = 32;

class Warp {
 public:
  // Every lane deposits its registers, then reads everyone's: two barriers per operation.
  float exchange(int lane, float value, int partner) {
    floats_[lane] = value;
    wait();
    const float other = floats_[partner];
    wait();
    return other;
  }

  void mma_sp(int lane, float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e) {
    std::memcpy(a_[lane], a, sizeof a);
    std::memcpy(b_[lane], b, sizeof b);
    e_[lane] = e;
    wait();
    const int group = lane / 4, quad = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = group + 8 * (i / 2), col = 2 * quad + i % 2;
      float sum = d[i];
      for (int c = 0; c < 8; ++c) {  // the 8 groups of 4 features of row `row`
        // Metadata: lane quad 0 holds groups 0-3, quad 1 groups 4-7; rows 8-15 in the high half.
        const unsigned nibble = (e_[4 * (row % 8) + c / 4] >> (16 * (row / 8) + 4 * (c % 4))) & 0xF;
        // Compressed columns 2c, 2c + 1: quad c % 4, register row / 8 (+ 2 for groups 4-7).
        const uint32_t kept = a_[4 * (row % 8) + c % 4][row / 8 + 2 * (c / 4)];
        sum += half(kept & 0xFFFF) * b_value(4 * c + (nibble & 3), col);
        sum += half(kept >> 16) * b_value(4 * c + (nibble >> 2), col);
      }
      d[i] = sum;
    }
    wait();
  }

 private:
  static float half(uint32_t bits) { return sparse24::half_to_float(static_cast<uint16_t>(bits)); }

  // B (32 × 8, column `col` = lane group): feature k in quad (k % 8) / 2, register k / 8, half k % 2.
  float b_value(int k, int col) const {
    const uint32_t pair = b_[4 * col + (k % 8) / 2][k / 8];
    return half(k % 2 ? pair >> 16 : pair & 0xFFFF);
  }

  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const unsigned generation = generation_;
    if (++arrived_ == kLanes) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  unsigned generation_ = 0;
  float floats_[kLanes] = {};
  uint32_t a_[kLanes][4] = {}, b_[kLanes][4] = {}, e_[kLanes] = {};
};

inline thread_local Warp* current = nullptr;

// Runs kernel(args...) over grid_x × grid_y blocks of warps_per_block warps, one warp at a time.
template <class Kernel, class... Args>
void launch(Kernel kernel, unsigned grid_x, unsigned grid_y, int warps_per_block, Args... args) {
  for (unsigned by = 0; by < grid_y; ++by) {
    for (unsigned bx = 0; bx < grid_x; ++bx) {
      for (int w = 0; w < warps_per_block; ++w) {
        Warp warp;
        std::vector<std::thread> lanes;
        for (int lane = 0; lane < kLanes; ++lane) {
          lanes.emplace_back([&, lane] {
            threadIdx = {static_cast<unsigned>(w * kLanes + lane), 0, 0};
            blockIdx = {bx, by, 0};
            current = &warp;
            kernel(args...);
          });
        }
        for (auto& t : lanes) t.join();
      }
    }
  }
}

}  // namespace warp_emulator

namespace device {

inline float half_to_float(uint16_t bits) { return sparse24::half_to_float(bits); }
inline uint16_t float_to_half(float value) { return sparse24::float_to_half(value); }

inline float warp_sum(float value) {
  const int lane = static_cast<int>(threadIdx.x) % warp_emulator::kLanes;
  for (int offset = 16; offset > 0; offset >>= 1) value += warp_emulator::current->exchange(lane, value, lane ^ offset);
  return value;
}

inline float exp2(float x) { return std::exp2(x); }

inline float load(const float* p) { return *p; }
inline float load(const uint16_t* p) { return half_to_float(*p); }
inline uint32_t load_pair(const uint16_t* p) { return p[0] | (static_cast<uint32_t>(p[1]) << 16); }
inline void store(float* p, float value) { *p = value; }
inline void store(uint16_t* p, float value) { *p = float_to_half(value); }

inline void mma_sp_m16n8k32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e) {
  warp_emulator::current->mma_sp(static_cast<int>(threadIdx.x) % warp_emulator::kLanes, d, a, b, e);
}

}  // namespace device
