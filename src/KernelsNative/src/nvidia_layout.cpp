// Re-layout of the 4-bit keep-masks into NVIDIA's 2-bit index metadata (and back), done
// once when the weights are uploaded to the GPU.
#include <cstring>

#include "sparse24_cuda.h"

namespace sparse24::cuda {

namespace {

constexpr uint16_t kPaddingNibble = 0x4;  // indices 0 and 1

unsigned mask_nibble(const Shape& shape, const uint8_t* masks, int64_t row, int64_t g) {
  return (masks[row * shape.mask_stride() + g / 2] >> ((g % 2) * 4)) & 0xF;
}

// Keep-mask 0b0110 (features 1 and 2) becomes idx0 | idx1 << 2 = 1 | 2 << 2 = 0x9.
uint16_t indices_of(unsigned keep) {
  const unsigned idx0 = static_cast<unsigned>(__builtin_ctz(keep));
  const unsigned idx1 = static_cast<unsigned>(31 - __builtin_clz(keep));
  return static_cast<uint16_t>(idx0 | (idx1 << 2));
}

}  // namespace

int64_t padded_k(int64_t k) { return (k + 31) / 32 * 32; }

std::vector<uint16_t> to_nvidia_metadata(const Shape& shape, const uint8_t* masks) {
  const int64_t stride = padded_k(shape.k) / 16, groups = padded_k(shape.k) / 4;
  std::vector<uint16_t> meta(static_cast<size_t>(shape.n * stride), 0);
  for (int64_t row = 0; row < shape.n; ++row) {
    for (int64_t g = 0; g < groups; ++g) {
      const uint16_t nibble = g < shape.groups() ? indices_of(mask_nibble(shape, masks, row, g)) : kPaddingNibble;
      meta[row * stride + g / 4] |= static_cast<uint16_t>(nibble << ((g % 4) * 4));
    }
  }
  return meta;
}

std::vector<uint8_t> from_nvidia_metadata(const Shape& shape, const uint16_t* meta) {
  const int64_t stride = padded_k(shape.k) / 16;
  std::vector<uint8_t> masks(static_cast<size_t>(shape.n * shape.mask_stride()), 0);
  for (int64_t row = 0; row < shape.n; ++row) {
    for (int64_t g = 0; g < shape.groups(); ++g) {
      const unsigned nibble = (meta[row * stride + g / 4] >> ((g % 4) * 4)) & 0xF;
      const unsigned keep = (1u << (nibble & 3)) | (1u << (nibble >> 2));
      masks[row * shape.mask_stride() + g / 2] |= static_cast<uint8_t>(keep << ((g % 2) * 4));
    }
  }
  return masks;
}

template <class T>
std::vector<T> pad_values(const Shape& shape, const T* values) {
  const int64_t stride = padded_k(shape.k) / 2;
  std::vector<T> out(static_cast<size_t>(shape.n * stride), T{});
  for (int64_t row = 0; row < shape.n; ++row) {
    std::memcpy(out.data() + row * stride, values + row * shape.value_stride(),
                static_cast<size_t>(shape.value_stride()) * sizeof(T));
  }
  return out;
}

template std::vector<float> pad_values<float>(const Shape&, const float*);
template std::vector<uint16_t> pad_values<uint16_t>(const Shape&, const uint16_t*);

}  // namespace sparse24::cuda
