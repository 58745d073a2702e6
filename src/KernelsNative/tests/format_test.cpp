#include <gtest/gtest.h>

#include "test_data.h"

namespace {

int nibble(const Packed& p, int64_t row, int64_t g) {
  return (p.masks[row * p.shape.mask_stride() + g / 2] >> ((g % 2) * 4)) & 0xF;
}

TEST(Format, PackKeepsTheTwoLargestMagnitudesOfEveryGroup) {
  // K = 4, N = 1: column [1, -5, 3, 0.5] keeps -5 and 3 (indices 1 and 2).
  sparse24::Shape shape{4, 1};
  const float dense[4] = {1.0f, -5.0f, 3.0f, 0.5f};
  float values[2];
  uint8_t masks[1];
  sparse24::pack(shape, dense, values, masks);
  EXPECT_EQ(masks[0], 0x6);
  EXPECT_EQ(values[0], -5.0f);
  EXPECT_EQ(values[1], 3.0f);
}

TEST(Format, EveryMaskKeepsTwoOfFourAndValidates) {
  for (int64_t k : {4, 7, 33, 130}) {
    Packed p = random_packed(k, 9, static_cast<uint32_t>(k));
    for (int64_t row = 0; row < 9; ++row)
      for (int64_t g = 0; g < p.shape.groups(); ++g) EXPECT_EQ(__builtin_popcount(nibble(p, row, g)), 2);
    EXPECT_EQ(sparse24::validate_masks(p.shape, p.masks.data()), "") << "K = " << k;
  }
}

TEST(Format, UnpackThenPackRoundTrips) {
  Packed p = random_packed(37, 11, 3);
  std::vector<float> values(p.values.size());
  std::vector<uint8_t> masks(p.masks.size());
  sparse24::pack(p.shape, p.dense.data(), values.data(), masks.data());
  EXPECT_EQ(values, p.values);
  EXPECT_EQ(masks, p.masks);
}

TEST(Format, PrunedDenseHasHalfTheWeightsOfEveryGroup) {
  Packed p = random_packed(16, 5, 4);
  for (int64_t n = 0; n < 5; ++n) {
    for (int64_t g = 0; g < 4; ++g) {
      int zeros = 0;
      for (int i = 0; i < 4; ++i) zeros += p.dense[(4 * g + i) * 5 + n] == 0.0f;
      EXPECT_EQ(zeros, 2);
    }
  }
}

TEST(Format, ValidationNamesTheBadNibble) {
  Packed p = random_packed(8, 3, 5);
  p.masks[1 * p.shape.mask_stride()] = 0x37;  // row 1, group 0 keeps 3 weights
  EXPECT_EQ(sparse24::validate_masks(p.shape, p.masks.data()),
            "row 1, group 0: keep-mask 0x7 does not keep exactly 2 of 4 weights");
}

TEST(Format, ValidationRejectsAnUnusedNibbleThatIsNotZero) {
  Packed p = random_packed(4, 1, 6);  // one group: the high nibble is padding
  p.masks[0] |= 0x30;
  EXPECT_EQ(sparse24::validate_masks(p.shape, p.masks.data()),
            "row 0: the padding nibble after the last group is not 0");
}

TEST(Format, HalfConversionsRoundTripEveryFiniteHalf) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    uint16_t half = static_cast<uint16_t>(bits);
    if ((half & 0x7C00) == 0x7C00) continue;  // inf and nan: not weights
    ASSERT_EQ(sparse24::float_to_half(sparse24::half_to_float(half)), half) << std::hex << bits;
  }
  EXPECT_EQ(sparse24::float_to_half(1.0f), 0x3C00);
  EXPECT_EQ(sparse24::float_to_half(1.0f + 1.0f / 4096), 0x3C00);  // halfway below: to even
  EXPECT_EQ(sparse24::float_to_half(70000.0f), 0x7C00);
  EXPECT_EQ(sparse24::half_to_float(0x0001), 5.9604644775390625e-8f);
}

}  // namespace
