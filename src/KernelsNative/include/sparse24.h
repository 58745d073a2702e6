// 2:4 sparse weights for Y = A · W: the compressed format, its validation, and the CPU
// kernels behind the ONNX Runtime op SparseMatMul24 (domain ai.serving).
//
// Format, for a dense W of shape [K, N] (ONNX MatMul layout) stored per output column n:
//   K4     = K rounded up to a multiple of 4 (padding features read as zero)
//   values [N, K4/2]        the 2 kept weights of every group of 4 features, ascending index
//   masks  [N, ceil(K4/8)]  uint8, one 4-bit keep-mask per group: group g of row n is the
//                           low nibble of byte g/2 when g is even, the high nibble when odd;
//                           bit i set = feature 4g+i kept. Exactly 2 bits per nibble; the
//                           unused high nibble of an odd group count must be 0.
// The nibbles map straight onto AVX-512 vexpandps masks (16 features = 2 bytes).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

namespace sparse24 {

struct Shape {
  int64_t k = 0;  // dense reduction size
  int64_t n = 0;  // output features

  int64_t groups() const { return (k + 3) / 4; }
  int64_t value_stride() const { return groups() * 2; }
  int64_t mask_stride() const { return (groups() + 1) / 2; }
};

// Borrowed views of the constant initializers: the kernels never copy W. Values are fp32
// (float) or fp16 (uint16_t bits, widened to fp32 in registers); the bias is always fp32.
template <class T>
struct WeightsOf {
  Shape shape;
  const T* values = nullptr;       // [n, value_stride]
  const uint8_t* masks = nullptr;  // [n, mask_stride]
  const float* bias = nullptr;     // [n] or null
};
using Weights = WeightsOf<float>;
using Weights16 = WeightsOf<uint16_t>;

float half_to_float(uint16_t half);
uint16_t float_to_half(float value);  // round to nearest even

// Empty when every mask byte is valid; otherwise a message naming row, group and nibble.
std::string validate_masks(const Shape& shape, const uint8_t* masks);

// Reference conversions used by tests and tools: dense is [K, N] row-major.
void pack(const Shape& shape, const float* dense, float* values, uint8_t* masks);
void unpack(const Shape& shape, const float* values, const uint8_t* masks, float* dense);

enum class Isa { Portable, Avx2, Avx512 };
Isa detect_isa();
const char* isa_name(Isa isa);

// GEMV for m <= kGemvMaxRows rows of A ([m, k], row stride k): y[r, n] for n in
// [n_begin, n_end), y row stride shape.n. Memory-bound: every weight byte read once.
// From kGemvChunkedRows rows, the SIMD kernels read A as `chunked` (chunk_a's copy, made
// once per call; null below): one stream of A instead of M streams a row of A apart.
constexpr int64_t kGemvMaxRows = 8;
constexpr int64_t kGemvChunkedRows = 5;
template <class T>
using GemvFnOf = void (*)(const WeightsOf<T>&, const float* a, const float* chunked, int64_t m, float* y,
                          int64_t n_begin, int64_t n_end);

// A ([m, k]) as whole 16-feature chunks of all m rows side by side:
// chunked[(c * m + i) * 16 + j] = A[i, 16c + j] for c < k / 16 (k / 16 · m · 16 floats).
void chunk_a(const float* a, int64_t m, int64_t k, float* chunked);

// GEMM on packed A: blocks of `lanes` rows of A ([m, k]) transposed, block b at
// packed + b * K4 * lanes holding at[k * lanes + j] = A[b * lanes + j, k] for k < K4
// (zero-padded; see pack_a_block). Computes Y ([m, n]) rows of blocks [b_begin, b_end),
// columns [n_begin, n_end).
template <class T>
using GemmFnOf = void (*)(const WeightsOf<T>&, const float* packed, int64_t m, float* y, int64_t b_begin,
                          int64_t b_end, int64_t n_begin, int64_t n_end);

// GEMM kernels come in 1..4 vectors of A rows per block (lanes = vectors · width), so a
// 16-row prefill on AVX-512 fills one 16-lane block instead of a quarter of a 64-lane one.
constexpr int kMaxGemmVectors = 4;

// One run of same-width blocks of the GEMM path: rows [m0, m0 + rows) of A in `blocks` blocks
// of `lanes` = vectors · width rows, packed from `packed_offset` floats on, each block
// `block_floats` = K4 · lanes floats; computed by gemm[vectors - 1].
struct GemmSegment {
  int vectors = 0;
  int64_t m0 = 0, rows = 0, lanes = 0, blocks = 0, block_floats = 0, packed_offset = 0;
};

// How the GEMM path covers M rows: blocks of the widest kernel, then the rows left over in one
// block of just enough vectors, so 65 rows on AVX-512 compute 64 + 16 lanes rather than 128.
struct GemmPlan {
  GemmSegment segments[2];
  int count = 0;
  int64_t packed_floats = 0;  // the packed buffer's size

  int64_t total_blocks() const { return segments[0].blocks + (count > 1 ? segments[1].blocks : 0); }
  // Packs block `index` (counting through the segments in order) of A ([m, k]) into `packed`.
  void pack(const float* a, int64_t k, float* packed, int64_t index) const;
};

template <class T>
struct KernelSet {
  GemvFnOf<T> gemv;
  GemmFnOf<T> gemm[kMaxGemmVectors];  // gemm[v - 1] handles blocks of v vectors
};

struct Kernels {
  Isa isa;
  KernelSet<float> fp32;
  KernelSet<uint16_t> fp16;
  int64_t width;  // floats per vector

  int gemm_vectors(int64_t m) const {
    int64_t v = (m + width - 1) / width;
    return static_cast<int>(v < kMaxGemmVectors ? v : kMaxGemmVectors);
  }

  GemmPlan gemm_plan(int64_t m, int64_t k) const;

  const KernelSet<float>& set(const float*) const { return fp32; }
  const KernelSet<uint16_t>& set(const uint16_t*) const { return fp16; }
};

Kernels kernels_for(Isa isa);  // isa must be supported by the CPU

// Floats on a 64-byte boundary (one cache line, one AVX-512 vector), uninitialised: packed
// A and the GEMM's partial sums. Misaligned, every vector load of the GEMM split two cache
// lines and its FMA loop ran ~1.4x slower on Zen 4.
struct FreeFloats {
  void operator()(float* p) const { std::free(p); }
};
using AlignedFloats = std::unique_ptr<float[], FreeFloats>;
AlignedFloats aligned_floats(size_t count);

// Reusable aligned scratch (one per thread, as a thread_local), grown to the largest request;
// the contents are not kept across a growth.
class Scratch {
 public:
  float* get(size_t floats) {
    if (capacity_ < floats) {
      data_.reset();
      data_ = aligned_floats(floats);
      capacity_ = floats;
    }
    return data_.get();
  }

 private:
  AlignedFloats data_;
  size_t capacity_ = 0;
};

// Transposes rows [m0, m0 + lanes) of A ([m, k]) into `at` (k4 * lanes floats), zero-padding.
void pack_a_block(const float* a, int64_t m, int64_t k, int64_t m0, int64_t lanes, float* at);

// Y = A · W (+ bias) on the calling thread; the op splits the same work across ORT's pool.
template <class T>
void matmul(const Kernels& kernels, const WeightsOf<T>& w, const float* a, int64_t m, float* y);

}  // namespace sparse24
