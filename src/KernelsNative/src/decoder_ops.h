// The decoder's fused element-wise ops (decoder_ops.cpp), registered by custom_op.cpp beside
// SparseMatMul24 and PagedAttention. Each lives as long as the process: ONNX Runtime keeps
// the pointer in every session.
#pragma once

#include <onnxruntime_c_api.h>

OrtCustomOp* qk_norm_rope_custom_op();
OrtCustomOp* gelu_gate_custom_op();
