// The ops' kernels for ONNX Runtime's CUDA execution provider (cuda_ops.cpp), registered by
// custom_op.cpp in the same domain as the CPU kernels.
#pragma once

#include <onnxruntime_c_api.h>

#include <vector>

// Session config key: where the session's kv_pool lives, "host" (default) or "device". Only a
// "device" session gets the CUDA PagedAttention kernel (custom_op.cpp).
constexpr const char* kKvPoolConfigKey = "serving.kv_pool";

// For "CUDAExecutionProvider"; they live as long as the process (ONNX Runtime keeps the
// pointers in every session). SparseMatMul24: fp32, then fp16; PagedAttention: kv_pool float,
// then float16.
const std::vector<OrtCustomOp*>& cuda_matmul_custom_ops();
const std::vector<OrtCustomOp*>& cuda_attention_custom_ops();
